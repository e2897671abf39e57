//! The daemon's own Flatpak installation, laid out the way Flatpak reads it
//! (`../shared/reference/flatpak-installation.md`).
//!
//! Owns: registering the installation in `installations.d` with a disabled
//! origin remote (so `flatpak update` leaves flatipfs deploys alone); writing
//! a release's deploy directory (`deploy`, local `metadata` and `export/`, an
//! empty `files/` mount point) under a 64-hex id; and switching `active` and
//! `current` atomically under the installation's lock, with the exports farm
//! (only the deploy's checked files, never another app's names, stale links
//! removed) and `.changed` kept up to date. Knows nothing of IPFS or D-Bus: callers
//! hand it validated content.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::process::Command;

use flatipfs_format::exports::{self, ExportContext};

use crate::deploy_data::DeployData;
use crate::release::{Kind, Manifest};
use crate::subprocess::SubprocessError;

/// Name of the disabled origin remote every flatipfs deploy names.
pub const ORIGIN: &str = "flatipfs";

/// Failures writing the installation.
#[derive(Debug, thiserror::Error)]
pub enum InstallationError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`flatpak {args}` failed: {stderr}")]
    Flatpak { args: String, stderr: String },
    #[error("cannot run flatpak ({0}); install the Debian package `flatpak`")]
    Spawn(std::io::Error),
    #[error(transparent)]
    TimedOut(SubprocessError),
}

impl From<SubprocessError> for InstallationError {
    fn from(e: SubprocessError) -> Self {
        match e {
            SubprocessError::Spawn { source, .. } => InstallationError::Spawn(source),
            e => InstallationError::TimedOut(e),
        }
    }
}

/// How long a `flatpak` call on the installation may take.
pub const FLATPAK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallationError + '_ {
    move |source| InstallationError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One file of `metadata` or `export/`, fetched and checked by the caller.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Relative to the deploy directory: `metadata` or `export/…`.
    pub path: String,
    pub data: Vec<u8>,
    /// Only the executable bit is kept: files are written 0644 or 0755.
    pub executable: bool,
}

/// A Flatpak installation owned by flatipfsd.
#[derive(Debug, Clone)]
pub struct Installation {
    /// The installation id in `installations.d` (`flatipfs`).
    pub id: String,
    /// Where it lives (under the state directory by default).
    pub path: PathBuf,
    /// Flatpak's configuration directory (`/etc/flatpak`).
    pub config_dir: PathBuf,
}

/// Whether `id` can name an installation in `installations.d`.
pub fn valid_installation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The 64-hex deploy directory name of a release: sha256 of its root CID.
pub fn deploy_id(release: &str) -> String {
    let digest = Sha256::digest(release.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `data` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), InstallationError> {
    let dir = path.parent().expect("a file in a directory");
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    let mut file = fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(data).map_err(io(&tmp))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    crate::durable::rename(&tmp, path).map_err(io(path))
}

/// Points `link` at `target` atomically (a new link renamed over the old).
fn replace_symlink(target: &Path, link: &Path) -> Result<(), InstallationError> {
    let dir = link.parent().expect("a link in a directory");
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        link.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(io(&tmp))?;
    crate::durable::rename(&tmp, link).map_err(io(link))
}

impl Installation {
    /// Creates the installation if needed: its directory, its entry in
    /// `installations.d`, and the disabled origin remote.
    pub async fn register(&self) -> Result<(), InstallationError> {
        fs::create_dir_all(&self.path).map_err(io(&self.path))?;
        let conf = self
            .config_dir
            .join("installations.d")
            .join(format!("{}.conf", self.id));
        let text = self.registration();
        if fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
            write_atomic(&conf, text.as_bytes(), 0o644)?;
        }
        let installation = format!("--installation={}", self.id);
        self.flatpak(&[
            "remote-add",
            &installation,
            "--if-not-exists",
            "--no-gpg-verify",
            "--disable",
            "--no-enumerate",
            "--no-use-for-deps",
            ORIGIN,
            "file:///nonexistent",
        ])
        .await
    }

    /// The text of `installations.d/<id>.conf` (the Debian package ships
    /// the default one, `packaging/debian/installations.d-flatipfs.conf`).
    pub fn registration(&self) -> String {
        format!(
            "# Written by flatipfsd: apps installed from IPFS.\n[Installation \"{}\"]\nPath={}\nDisplayName=flatipfs (IPFS)\n",
            self.id,
            self.path.display()
        )
    }

    async fn flatpak(&self, args: &[&str]) -> Result<(), InstallationError> {
        let mut command = Command::new("flatpak");
        command
            .args(args)
            .env("FLATPAK_CONFIG_DIR", &self.config_dir);
        let output = crate::subprocess::output(&mut command, FLATPAK_TIMEOUT).await?;
        if !output.status.success() {
            return Err(InstallationError::Flatpak {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// `app/ID/ARCH/BRANCH` (or `runtime/…`) of a manifest.
    pub fn ref_dir(&self, manifest: &Manifest) -> PathBuf {
        let kind = match manifest.kind {
            Kind::App => "app",
            Kind::Runtime => "runtime",
        };
        self.path
            .join(kind)
            .join(&manifest.id)
            .join(&manifest.arch)
            .join(&manifest.branch)
    }

    /// Writes the deploy directory of `release` (complete, with an empty
    /// `files/` for the mount) and returns it. Written under a temporary
    /// name and renamed into place, so a crash never leaves half of one.
    pub fn write_deploy(
        &self,
        manifest: &Manifest,
        release: &str,
        local: &[LocalFile],
    ) -> Result<PathBuf, InstallationError> {
        let ref_dir = self.ref_dir(manifest);
        let id = deploy_id(release);
        let dir = ref_dir.join(&id);
        if dir.join("deploy").is_file() {
            return Ok(dir);
        }
        let tmp = ref_dir.join(format!(".{id}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(tmp.join("files")).map_err(io(&tmp))?;
        for file in local {
            let mode = if file.executable { 0o755 } else { 0o644 };
            write_atomic(&tmp.join(&file.path), &file.data, mode)?;
        }
        let deploy = DeployData {
            origin: ORIGIN.into(),
            commit: id.clone(),
            installed_size: manifest.totals.bytes,
            timestamp: manifest.published,
            runtime: manifest.runtime.clone(),
        };
        write_atomic(&tmp.join("deploy"), &deploy.encode(), 0o644)?;
        crate::durable::rename(&tmp, &dir).map_err(io(&dir))?;
        Ok(dir)
    }

    /// Makes the deploy of `release` the active one of its ref (and, for
    /// apps, the current branch), refreshes the exports and touches
    /// `.changed`, all under the installation lock.
    pub fn activate(&self, manifest: &Manifest, release: &str) -> Result<(), InstallationError> {
        let _lock = self.lock()?;
        let ref_dir = self.ref_dir(manifest);
        let switched = fs::read_link(ref_dir.join("active")).ok().as_deref()
            != Some(Path::new(&deploy_id(release)));
        replace_symlink(Path::new(&deploy_id(release)), &ref_dir.join("active"))?;
        if manifest.kind == Kind::App {
            let app_dir = ref_dir
                .parent()
                .and_then(Path::parent)
                .expect("app/ID/ARCH/BRANCH");
            replace_symlink(
                &Path::new(&manifest.arch).join(&manifest.branch),
                &app_dir.join("current"),
            )?;
            let export = ref_dir.join(deploy_id(release)).join("export");
            let relinked = self.link_exports(&manifest.id, &export)?;
            // As Flatpak after a deploy: the desktop's caches follow (not
            // when a start-up activates what was active already).
            if switched || relinked {
                crate::triggers::run(&self.path);
            }
        }
        let changed = self.path.join(".changed");
        fs::File::create(&changed).map_err(io(&changed))?;
        Ok(())
    }

    /// The deploy directory of `release` of `manifest`'s ref.
    pub fn deploy_dir(&self, manifest: &Manifest, release: &str) -> PathBuf {
        self.ref_dir(manifest).join(deploy_id(release))
    }

    /// The deploy directory of `release` of ref `KIND/ID/ARCH/BRANCH`.
    pub fn deploy_dir_of(
        &self,
        kind: Kind,
        id: &str,
        arch: &str,
        branch: &str,
        release: &str,
    ) -> PathBuf {
        self.path
            .join(kind.as_str())
            .join(id)
            .join(arch)
            .join(branch)
            .join(deploy_id(release))
    }

    /// Every ref directory present (`app/ID/ARCH/BRANCH`, `runtime/…`),
    /// as `(kind, id, arch, branch)`.
    pub fn refs(&self) -> Vec<(Kind, String, String, String)> {
        let names = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| e.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut out = Vec::new();
        for kind in [Kind::App, Kind::Runtime] {
            let top = self.path.join(kind.as_str());
            for id in names(&top) {
                for arch in names(&top.join(&id)) {
                    for branch in names(&top.join(&id).join(&arch)) {
                        out.push((kind, id.clone(), arch.clone(), branch));
                    }
                }
            }
        }
        out
    }

    /// Removes every deploy of a ref except those of `keep` (release root
    /// CIDs), and leftovers of interrupted writes. With nothing kept, the
    /// ref goes entirely: `active`, `current` if it names this branch, the
    /// exports pointing into it, and its directories. Under the lock;
    /// `.changed` is touched. Mounts must be detached before.
    pub fn prune_ref(
        &self,
        kind: Kind,
        id: &str,
        arch: &str,
        branch: &str,
        keep: &[String],
    ) -> Result<(), InstallationError> {
        let _lock = self.lock()?;
        let id_dir = self.path.join(kind.as_str()).join(id);
        let ref_dir = id_dir.join(arch).join(branch);
        let kept: Vec<String> = keep.iter().map(|r| deploy_id(r)).collect();
        if let Ok(entries) = fs::read_dir(&ref_dir) {
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if is_dir && !kept.contains(&name) {
                    fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                }
            }
        }
        if kept.is_empty() {
            let _ = fs::remove_file(ref_dir.join("active"));
            let _ = fs::remove_dir(&ref_dir);
            let current = id_dir.join("current");
            if fs::read_link(&current).is_ok_and(|t| t == Path::new(arch).join(branch)) {
                let _ = fs::remove_file(&current);
            }
            let _ = fs::remove_dir(id_dir.join(arch));
            let _ = fs::remove_dir(&id_dir);
            self.prune_exports();
            if kind == Kind::App {
                crate::triggers::run(&self.path);
            }
        }
        let changed = self.path.join(".changed");
        fs::File::create(&changed).map_err(io(&changed))?;
        Ok(())
    }

    /// Links the files of `export` (a deploy's `export/`, written by the
    /// daemon from what passed its checks) into `exports/` for `app`, and
    /// removes `app`'s links to files this deploy no longer has. A name
    /// another app holds is left to it (logged), unless its link is
    /// dangling or `app` is the more specific owner (its id is the longer
    /// prefix of the name: `org.a.App.Plugin` wins its own files back from
    /// `org.a.App`); anything that is not a link is never replaced.
    /// Returns whether any link was made or removed.
    fn link_exports(&self, app: &str, export: &Path) -> Result<bool, InstallationError> {
        let exports = self.path.join("exports");
        let mut wanted = Vec::new();
        collect_files(export, Path::new(""), &mut wanted);
        // Deploys are written from checked files; a deploy an older daemon
        // wrote is held to the same names here.
        let own_names = deployed_own_names(export);
        let ctx = ExportContext {
            app_id: app,
            arch: "",
            branch: "",
            own_names: &own_names,
        };
        let wrapper = Path::new("bin").join(app);
        wanted.retain(|rel| {
            let ok = *rel == wrapper
                || rel
                    .to_str()
                    .is_some_and(|r| exports::classify(&ctx, r, 0o644).is_ok());
            if !ok {
                tracing::warn!(%app, export = %rel.display(), "export not linked: not a name Flatpak exports");
            }
            ok
        });
        let mut changed = false;
        for rel in &wanted {
            let link = exports.join(rel);
            let depth = rel.components().count();
            let target = PathBuf::from("../".repeat(depth))
                .join("app")
                .join(app)
                .join("current/active/export")
                .join(rel);
            match fs::symlink_metadata(&link) {
                Err(_) => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    let current = fs::read_link(&link).unwrap_or_default();
                    if current == target {
                        continue;
                    }
                    match export_owner(&current) {
                        Some(owner) if owner == app => {}
                        _ if !link.exists() => {}
                        Some(owner) if app.len() > owner.len() => {
                            tracing::info!(%app, %owner, export = %rel.display(), "the export goes to the more specific app");
                        }
                        owner => {
                            tracing::warn!(%app, owner = owner.unwrap_or("?"), export = %rel.display(), "export not linked: another app's export has this name");
                            continue;
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!(%app, export = %rel.display(), "export not linked: something that is not a link has this name");
                    continue;
                }
            }
            replace_symlink(&target, &link)?;
            changed = true;
        }
        let mut present = Vec::new();
        collect_links(&exports, Path::new(""), &mut present);
        for (rel, target) in present {
            if export_owner(&target) == Some(app) && !wanted.contains(&rel) {
                changed |= fs::remove_file(exports.join(&rel)).is_ok();
            }
        }
        self.prune_exports();
        Ok(changed)
    }

    /// Removes export links whose target is gone, and emptied directories.
    fn prune_exports(&self) {
        fn walk(dir: &Path) -> bool {
            let Ok(entries) = fs::read_dir(dir) else {
                return false;
            };
            let mut empty = true;
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_symlink() && !path.exists() => {
                        let _ = fs::remove_file(&path);
                    }
                    Ok(t) if t.is_dir() => {
                        if walk(&path) {
                            let _ = fs::remove_dir(&path);
                        } else {
                            empty = false;
                        }
                    }
                    _ => empty = false,
                }
            }
            empty
        }
        walk(&self.path.join("exports"));
    }

    /// The installation lock, as Flatpak takes it: an open-file-description
    /// write lock on the whole `lock` file (never replaced or deleted).
    fn lock(&self) -> Result<fs::File, InstallationError> {
        let path = self.path.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let flock = nix::libc::flock {
            l_type: nix::libc::F_WRLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_OFD_SETLKW(&flock)).map_err(
            |e| InstallationError::Io {
                path: path.clone(),
                source: e.into(),
            },
        )?;
        Ok(file)
    }
}

/// The regular files below `dir` (relative to `base`), never following a
/// symlink.
fn collect_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir.join(rel)) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let child = rel.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_files(dir, &child, out),
            Ok(t) if t.is_file() => out.push(child),
            _ => {}
        }
    }
}

/// The symlinks below `dir` (relative to it) and their targets.
fn collect_links(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir.join(rel)) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let child = rel.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_links(dir, &child, out),
            Ok(t) if t.is_symlink() => {
                if let Ok(target) = fs::read_link(entry.path()) {
                    out.push((child, target));
                }
            }
            _ => {}
        }
    }
}

/// The app an export link points into (`../…/app/ID/current/active/export/…`).
fn export_owner(target: &Path) -> Option<&str> {
    let mut parts = target
        .components()
        .skip_while(|c| matches!(c, std::path::Component::ParentDir))
        .map(|c| c.as_os_str().to_str());
    match (parts.next(), parts.next()) {
        (Some(Some("app")), Some(Some(id))) => Some(id),
        _ => None,
    }
}

/// The session bus names the `metadata` next to a deploy's `export`
/// lets the app own (D-Bus service files for them are exported): none if
/// it cannot be read or does not parse (it was checked when deployed).
fn deployed_own_names(export: &Path) -> Vec<String> {
    use std::io::Read as _;
    let Some(path) = export.parent().map(|d| d.join("metadata")) else {
        return Vec::new();
    };
    let mut data = Vec::new();
    let read = fs::File::open(&path).and_then(|f| {
        f.take(flatipfs_format::metadata::MAX_SIZE as u64 + 1)
            .read_to_end(&mut data)
    });
    match read
        .ok()
        .and_then(|_| flatipfs_format::metadata::parse(&data).ok())
    {
        Some(metadata) => exports::own_names(&metadata),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An installation in a temporary directory with `app`'s active
    /// deploy exporting `files` (paths under `export/`).
    fn with_deploy(dir: &Path, app: &str, deploy: &str, files: &[&str]) -> PathBuf {
        let export = dir
            .join("app")
            .join(app)
            .join("x86_64/master")
            .join(deploy)
            .join("export");
        let _ = fs::remove_dir_all(&export);
        for f in files {
            let path = export.join(f);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, app).unwrap();
        }
        let app_dir = dir.join("app").join(app);
        let _ = fs::remove_file(app_dir.join("current"));
        symlink("x86_64/master", app_dir.join("current")).unwrap();
        let _ = fs::remove_file(app_dir.join("x86_64/master/active"));
        symlink(deploy, app_dir.join("x86_64/master/active")).unwrap();
        export
    }

    fn installation(dir: &Path) -> Installation {
        Installation {
            id: "test".into(),
            path: dir.to_owned(),
            config_dir: dir.join("etc"),
        }
    }

    /// What `exports/REL` shows (following the farm's links), if anything.
    fn shown(dir: &Path, rel: &str) -> Option<String> {
        fs::read_to_string(dir.join("exports").join(rel)).ok()
    }

    const HELLO_DESKTOP: &str = "share/applications/org.test.Hello.desktop";
    const EXTRA_DESKTOP: &str = "share/applications/org.test.Hello.Extra.desktop";

    #[test]
    fn exports_are_linked_and_stale_ones_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let inst = installation(dir);
        let icon = "share/icons/hicolor/scalable/apps/org.test.Hello.svg";
        let export = with_deploy(
            dir,
            "org.test.Hello",
            "a",
            &[HELLO_DESKTOP, icon, "bin/org.test.Hello"],
        );
        inst.link_exports("org.test.Hello", &export).unwrap();
        assert_eq!(shown(dir, HELLO_DESKTOP).as_deref(), Some("org.test.Hello"));
        assert_eq!(shown(dir, icon).as_deref(), Some("org.test.Hello"));
        assert_eq!(
            shown(dir, "bin/org.test.Hello").as_deref(),
            Some("org.test.Hello")
        );
        assert_eq!(
            fs::read_link(dir.join("exports").join(HELLO_DESKTOP)).unwrap(),
            Path::new("../../../app/org.test.Hello/current/active/export").join(HELLO_DESKTOP)
        );
        // A new release without the icon: its link goes, with its emptied directories.
        let export = with_deploy(dir, "org.test.Hello", "b", &[HELLO_DESKTOP]);
        inst.link_exports("org.test.Hello", &export).unwrap();
        assert!(fs::symlink_metadata(dir.join("exports").join(icon)).is_err());
        assert!(!dir.join("exports/share/icons").exists());
        assert!(!dir.join("exports/bin").exists());
        assert_eq!(shown(dir, HELLO_DESKTOP).as_deref(), Some("org.test.Hello"));
    }

    #[test]
    fn another_apps_export_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let inst = installation(dir);
        let extra = with_deploy(dir, "org.test.Hello.Extra", "a", &[EXTRA_DESKTOP]);
        inst.link_exports("org.test.Hello.Extra", &extra).unwrap();
        // org.test.Hello may name files org.test.Hello.Extra.* (Flatpak's
        // prefix rule) but cannot take the one org.test.Hello.Extra has.
        let hello = with_deploy(dir, "org.test.Hello", "a", &[HELLO_DESKTOP, EXTRA_DESKTOP]);
        inst.link_exports("org.test.Hello", &hello).unwrap();
        assert_eq!(
            shown(dir, EXTRA_DESKTOP).as_deref(),
            Some("org.test.Hello.Extra")
        );
        assert_eq!(shown(dir, HELLO_DESKTOP).as_deref(), Some("org.test.Hello"));
        // Nor does a later release of org.test.Hello remove it as stale.
        let hello = with_deploy(dir, "org.test.Hello", "b", &[HELLO_DESKTOP]);
        inst.link_exports("org.test.Hello", &hello).unwrap();
        assert_eq!(
            shown(dir, EXTRA_DESKTOP).as_deref(),
            Some("org.test.Hello.Extra")
        );
        // A file that is not a link is left alone.
        let own = dir.join("exports/share/applications/org.test.Hello.Own.desktop");
        fs::write(&own, "admin's").unwrap();
        let hello = with_deploy(
            dir,
            "org.test.Hello",
            "c",
            &["share/applications/org.test.Hello.Own.desktop"],
        );
        inst.link_exports("org.test.Hello", &hello).unwrap();
        assert_eq!(fs::read_to_string(&own).unwrap(), "admin's");
    }

    #[test]
    fn the_more_specific_app_wins_its_own_names_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let inst = installation(dir);
        let hello = with_deploy(dir, "org.test.Hello", "a", &[EXTRA_DESKTOP]);
        inst.link_exports("org.test.Hello", &hello).unwrap();
        assert_eq!(shown(dir, EXTRA_DESKTOP).as_deref(), Some("org.test.Hello"));
        let extra = with_deploy(dir, "org.test.Hello.Extra", "a", &[EXTRA_DESKTOP]);
        inst.link_exports("org.test.Hello.Extra", &extra).unwrap();
        assert_eq!(
            shown(dir, EXTRA_DESKTOP).as_deref(),
            Some("org.test.Hello.Extra")
        );
        inst.link_exports("org.test.Hello", &hello).unwrap();
        assert_eq!(
            shown(dir, EXTRA_DESKTOP).as_deref(),
            Some("org.test.Hello.Extra")
        );
    }

    #[test]
    fn service_files_for_owned_bus_names_are_linked_by_the_deploys_metadata() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let inst = installation(dir);
        let owned = "share/dbus-1/services/org.mpris.MediaPlayer2.hello.service";
        let talked = "share/dbus-1/services/org.freedesktop.Notifications.service";
        let export = with_deploy(dir, "org.test.Hello", "a", &[owned, talked]);
        fs::write(
            export.parent().unwrap().join("metadata"),
            "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n\
             [Session Bus Policy]\norg.mpris.MediaPlayer2.hello=own\n\
             org.freedesktop.Notifications=talk\n",
        )
        .unwrap();
        inst.link_exports("org.test.Hello", &export).unwrap();
        assert_eq!(shown(dir, owned).as_deref(), Some("org.test.Hello"));
        assert_eq!(shown(dir, talked), None);
        // A later deploy whose metadata no longer owns the name loses it.
        let export = with_deploy(dir, "org.test.Hello", "b", &[owned]);
        inst.link_exports("org.test.Hello", &export).unwrap();
        assert_eq!(shown(dir, owned), None);
    }

    #[test]
    fn names_flatpak_would_not_export_are_not_linked_from_old_deploys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let inst = installation(dir);
        let export = with_deploy(
            dir,
            "org.test.Hello",
            "a",
            &[
                HELLO_DESKTOP,
                "share/applications/org.other.App.desktop",
                "share/dbus-1/system-services/org.test.Hello.service",
                "etc/profile.d/org.test.Hello.sh",
                "bin/sh",
            ],
        );
        symlink(
            "/etc/shadow",
            export.join("share/applications/org.test.Hello.Link.desktop"),
        )
        .unwrap();
        inst.link_exports("org.test.Hello", &export).unwrap();
        assert!(shown(dir, HELLO_DESKTOP).is_some());
        for rel in [
            "share/applications/org.other.App.desktop",
            "share/dbus-1/system-services/org.test.Hello.service",
            "etc/profile.d/org.test.Hello.sh",
            "bin/sh",
            "share/applications/org.test.Hello.Link.desktop",
        ] {
            assert!(
                fs::symlink_metadata(dir.join("exports").join(rel)).is_err(),
                "{rel}"
            );
        }
    }

    #[test]
    fn deploy_ids_are_64_hex() {
        let id = deploy_id("bafybeihw2l5dbupktvzyxuildm2sk7l3zr3oajz46uvsj6d6zo2av4mgva");
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(id, deploy_id("bafkqaaa"));
    }
}

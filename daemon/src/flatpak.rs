//! What the daemon needs from Flatpak when publishing: deploying a ref from a
//! Flatpak repository (what `flatpak build-export` writes) into a scratch
//! installation with the real `flatpak` binary, and reading `metadata`.

use std::path::{Path, PathBuf};

use crate::release::Kind;

/// A Flatpak ref, `app/ID/ARCH/BRANCH` or `runtime/ID/ARCH/BRANCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatpakRef {
    pub kind: Kind,
    pub id: String,
    pub arch: String,
    pub branch: String,
}

impl FlatpakRef {
    /// Parses a full ref.
    pub fn parse(text: &str) -> Option<FlatpakRef> {
        let parts: Vec<&str> = text.split('/').collect();
        let [kind, id, arch, branch] = parts.as_slice() else {
            return None;
        };
        let kind = match *kind {
            "app" => Kind::App,
            "runtime" => Kind::Runtime,
            _ => return None,
        };
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !crate::release::valid_app_id(id) || !plain(arch) || !plain(branch) {
            return None;
        }
        Some(FlatpakRef {
            kind,
            id: id.to_string(),
            arch: arch.to_string(),
            branch: branch.to_string(),
        })
    }

    pub fn to_ref_string(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.kind.as_str(),
            self.id,
            self.arch,
            self.branch
        )
    }
}

/// What `metadata` says about a deploy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: Kind,
    pub id: String,
    /// `[Application] runtime=` for apps.
    pub runtime: Option<String>,
}

/// Failures of the Flatpak side of publishing.
#[derive(Debug, thiserror::Error)]
pub enum FlatpakError {
    #[error("{0} is not a Flatpak repository (no {0}/config)")]
    NotARepo(PathBuf),
    #[error("ref {reference} is not in the repository {repo}")]
    NoSuchRef { repo: PathBuf, reference: String },
    #[error("{0} has no Flatpak `metadata` file: not a deploy directory")]
    NoMetadata(PathBuf),
    #[error("{path}: {what}")]
    BadMetadata { path: PathBuf, what: String },
    #[error("`flatpak {args}` failed: {stderr}")]
    Command { args: String, stderr: String },
    #[error("cannot run flatpak ({0}); install the Debian package `flatpak`")]
    Spawn(std::io::Error),
    #[error(transparent)]
    TimedOut(crate::subprocess::SubprocessError),
}

/// How long deploying a ref into the scratch installation may take (it
/// copies the whole build).
pub const DEPLOY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Reads the `metadata` file of a scanned deploy directory through the
/// scan's descriptors (a symlink there, or one swapped in, is refused) and
/// parses it with the parser installing clients use
/// (`flatipfs_format::metadata`, strict GKeyFile, at most
/// `metadata::MAX_SIZE` bytes), so that what clients would refuse is
/// refused here, before anything is published.
pub fn read_metadata(tree: &crate::tree::Tree) -> Result<Metadata, FlatpakError> {
    use flatipfs_format::metadata;
    let entry = tree
        .entries
        .iter()
        .find(|e| e.path == "metadata" && e.kind == crate::release::EntryKind::File)
        .ok_or_else(|| FlatpakError::NoMetadata(tree.path.clone()))?;
    let path = entry.source.clone();
    let bad = |what: String| FlatpakError::BadMetadata {
        path: path.clone(),
        what,
    };
    let data = tree
        .read(entry, metadata::MAX_SIZE as u64)
        .map_err(|e| bad(e.to_string()))?;
    let parsed = metadata::parse(&data).map_err(|e| {
        bad(format!(
            "{e} (installing clients refuse this metadata; fix it and build again)"
        ))
    })?;
    if !crate::release::valid_app_id(&parsed.name) {
        return Err(bad(format!("invalid id {:?}", parsed.name)));
    }
    Ok(Metadata {
        kind: parsed.kind,
        id: parsed.name,
        runtime: parsed.runtime,
    })
}

/// Deploys `reference` from the repository `repo` into a scratch user
/// installation at `scratch` and returns its deploy directory, in the form
/// Flatpak itself lays out (rewritten desktop files, `export/`).
pub async fn deploy_from_repo(
    repo: &Path,
    reference: &FlatpakRef,
    scratch: &Path,
) -> Result<PathBuf, FlatpakError> {
    if !repo.join("config").is_file() {
        return Err(FlatpakError::NotARepo(repo.to_owned()));
    }
    let ref_string = reference.to_ref_string();
    if !repo.join("refs/heads").join(&ref_string).is_file() {
        return Err(FlatpakError::NoSuchRef {
            repo: repo.to_owned(),
            reference: ref_string,
        });
    }
    let url = format!("file://{}", repo.display());
    flatpak(
        scratch,
        &[
            "--user",
            "remote-add",
            "--if-not-exists",
            "--no-gpg-verify",
            "source",
            &url,
        ],
    )
    .await?;
    flatpak(
        scratch,
        &[
            "--user",
            "install",
            "-y",
            "--noninteractive",
            "--no-deps",
            "--no-related",
            "source",
            &ref_string,
        ],
    )
    .await?;
    let kind_dir = match reference.kind {
        Kind::App => "app",
        Kind::Runtime => "runtime",
    };
    let active = scratch
        .join(kind_dir)
        .join(&reference.id)
        .join(&reference.arch)
        .join(&reference.branch)
        .join("active");
    std::fs::canonicalize(&active).map_err(|e| FlatpakError::Command {
        args: format!("install {ref_string}"),
        stderr: format!("no deploy directory at {}: {e}", active.display()),
    })
}

async fn flatpak(scratch: &Path, args: &[&str]) -> Result<(), FlatpakError> {
    use crate::subprocess::SubprocessError;
    let mut command = tokio::process::Command::new("flatpak");
    command.args(args).env("FLATPAK_USER_DIR", scratch);
    let output = crate::subprocess::output(&mut command, DEPLOY_TIMEOUT)
        .await
        .map_err(|e| match e {
            SubprocessError::Spawn { source, .. } => FlatpakError::Spawn(source),
            e => FlatpakError::TimedOut(e),
        })?;
    if !output.status.success() {
        return Err(FlatpakError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_strictly() {
        let r = FlatpakRef::parse("app/org.test.Hello/x86_64/master").unwrap();
        assert_eq!(r.kind, Kind::App);
        assert_eq!(r.to_ref_string(), "app/org.test.Hello/x86_64/master");
        assert!(FlatpakRef::parse("runtime/org.test.Platform/x86_64/master").is_some());
        for bad in [
            "org.test.Hello",
            "app/org.test.Hello/x86_64",
            "app/../x86_64/master",
            "app/org.test.Hello/x86_64/a/b",
            "foo/org.test.Hello/x86_64/master",
        ] {
            assert!(FlatpakRef::parse(bad).is_none(), "{bad}");
        }
    }

    fn read(dir: &Path) -> Result<Metadata, FlatpakError> {
        let limits = crate::tree::Limits {
            max_file_size: 1 << 20,
            max_entries: 100,
        };
        read_metadata(&crate::tree::scan(dir, limits).unwrap())
    }

    #[test]
    fn metadata_of_apps_and_runtimes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metadata"),
            "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n",
        )
        .unwrap();
        let m = read(dir.path()).unwrap();
        assert_eq!(
            (m.kind, m.id.as_str(), m.runtime.as_deref()),
            (
                Kind::App,
                "org.test.Hello",
                Some("org.test.Platform/x86_64/master")
            )
        );
        std::fs::write(
            dir.path().join("metadata"),
            "[Runtime]\nname=org.test.Platform\n",
        )
        .unwrap();
        assert_eq!(read(dir.path()).unwrap().kind, Kind::Runtime);
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(empty.path()),
            Err(FlatpakError::NoMetadata(_))
        ));
        // What installing clients refuse is refused when publishing, with
        // the parser's reason.
        for (text, reason) in [
            (
                "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n\
                 [Context]\nshared=network;\n[Context]\nfilesystems=host;\n",
                "group [Context] appears twice",
            ),
            (
                "[Application]\nname=org.test.Hello\nname=org.test.Other\n\
                 runtime=org.test.Platform/x86_64/master\n",
                "key name appears twice",
            ),
            (
                "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n\
                 [Session Bus Policy]\norg.x.Y=maybe\n",
                "unknown bus policy",
            ),
            (
                "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n\
                 [Context]\nfilesystems=../etc;\n",
                "filesystems",
            ),
            ("[Application]\nname=org.test.Hello\n", "no runtime="),
            ("[Runtime]\nname=org..bad\n", "invalid id"),
        ] {
            std::fs::write(dir.path().join("metadata"), text).unwrap();
            match read(dir.path()) {
                Err(e @ FlatpakError::BadMetadata { .. }) => {
                    assert!(e.to_string().contains(reason), "{e}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Over the clients' size limit: refused unread.
        let big = format!(
            "[Runtime]\nname=org.test.Platform\n#{}\n",
            "x".repeat(flatipfs_format::metadata::MAX_SIZE)
        );
        std::fs::write(dir.path().join("metadata"), big).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(FlatpakError::BadMetadata { .. })
        ));
        std::fs::write(
            dir.path().join("metadata"),
            "[Runtime]\nname=org.test.Platform\n",
        )
        .unwrap();
        let linked = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path().join("metadata"), linked.path().join("metadata"))
            .unwrap();
        assert!(matches!(
            read(linked.path()),
            Err(FlatpakError::NoMetadata(_))
        ));
    }
}

//! What a deploy keeps on local disk, fetched from Kubo bounded and
//! streamed: the release's `metadata`, and the exports the daemon builds
//! from the release's `export/` (never the release's files as they are).
//!
//! Every file under `export/` goes through `flatipfs_format::exports`:
//! first its path and mode decide whether it can be exported at all (a
//! refused file is never fetched), then the limits of `[limits]` (size per
//! file, total size, file count) are checked against the size the manifest
//! declares, again before anything is read; the bytes are then fetched with
//! that bound (a file larger than declared is refused) and rewritten.
//! Refused files are skipped, logged and returned to the caller, as
//! Flatpak skips exports that do not conform; symlinks are never followed
//! or copied. Apps get the `bin/ID` wrapper the daemon writes itself;
//! runtimes export nothing.

use std::time::Duration;

use flatipfs_format::exports::{self, ExportContext, ExportError, ExportKind};
use tracing::warn;

use crate::config::LimitsConfig;
use crate::install::InstallError;
use crate::installation::LocalFile;
use crate::kubo::{Client, KuboError};
use crate::release::{Entry, EntryKind, Kind, Manifest};
use crate::source::SourceError;

/// Bounds on what a deploy keeps locally (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct LocalLimits {
    pub max_metadata_size: u64,
    pub max_export_file_size: u64,
    pub max_exports_size: u64,
    pub max_export_files: usize,
}

impl From<&LimitsConfig> for LocalLimits {
    fn from(l: &LimitsConfig) -> Self {
        LocalLimits {
            max_metadata_size: l.max_metadata_size,
            max_export_file_size: l.max_export_file_size,
            max_exports_size: l.max_exports_size,
            max_export_files: l.max_export_files,
        }
    }
}

/// A file under `export/` that was not exported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Relative to the release's `deploy/` (`export/…`).
    pub path: String,
    pub reason: String,
}

/// Shown with control characters escaped (paths come from the network
/// and end up on a terminal).
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in format!("{}: {}", self.path, self.reason).chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// What [`local_files`] returns: the files to write, and the refused ones.
#[derive(Debug, Clone, Default)]
pub struct LocalFiles {
    pub files: Vec<LocalFile>,
    pub refused: Vec<Refused>,
}

/// Fetches `metadata` and builds the exports of `manifest`'s release.
pub async fn local_files(
    kubo: &Client,
    manifest: &Manifest,
    limits: LocalLimits,
    timeout: Duration,
) -> Result<LocalFiles, InstallError> {
    let invalid = |what: &str, reason: String| -> InstallError {
        SourceError::Invalid {
            what: what.to_string(),
            reason,
        }
        .into()
    };
    let metadata = manifest
        .entries
        .iter()
        .find(|e| e.path == "metadata" && e.kind == EntryKind::File)
        .ok_or_else(|| {
            invalid(
                &format!("release of {}", manifest.id),
                "it has no metadata file".into(),
            )
        })?;
    if metadata.size > limits.max_metadata_size {
        return Err(invalid(
            "metadata",
            format!(
                "it is {} bytes, over the limit of {} bytes (limits.max_metadata_size)",
                metadata.size, limits.max_metadata_size
            ),
        ));
    }
    let mut out = LocalFiles::default();
    out.files.push(LocalFile {
        path: "metadata".into(),
        data: fetch_exact(kubo, metadata, timeout).await?,
        executable: false,
    });
    // The bus names the app may own may have D-Bus service files too. A
    // metadata that does not parse grants none (install and update refuse
    // it before this: `permissions`).
    let own_names = flatipfs_format::metadata::parse(&out.files[0].data)
        .map(|m| exports::own_names(&m))
        .unwrap_or_default();
    let ctx = ExportContext {
        app_id: &manifest.id,
        arch: &manifest.arch,
        branch: &manifest.branch,
        own_names: &own_names,
    };
    let (chosen, mut refused) = choose(&ctx, manifest.kind, &manifest.entries, limits);
    let mut written = 0u64;
    for chosen in chosen {
        let data = fetch_exact(kubo, chosen.entry, timeout).await?;
        let exported = exports::rewrite(&ctx, chosen.path, chosen.kind, &data)
            .map_err(|e| e.to_string())
            .and_then(|exported| {
                admit(&mut written, exported.data.len(), limits)?;
                Ok(exported)
            });
        match exported {
            Ok(exported) => out.files.push(LocalFile {
                path: format!("export/{}", exported.path),
                data: exported.data,
                executable: exported.executable,
            }),
            Err(reason) => refused.push(Refused {
                path: chosen.entry.path.clone(),
                reason,
            }),
        }
    }
    if manifest.kind == Kind::App {
        let wrapper = exports::wrapper(&ctx);
        out.files.push(LocalFile {
            path: format!("export/{}", wrapper.path),
            data: wrapper.data,
            executable: wrapper.executable,
        });
    }
    for r in &refused {
        warn!(app = %manifest.id, path = %r.path, "export refused: {}", r.reason);
    }
    out.refused = refused;
    Ok(out)
}

/// A file of `export/` to fetch, and what it is.
#[derive(Debug)]
struct Chosen<'m> {
    entry: &'m Entry,
    /// Relative to `export/`.
    path: &'m str,
    kind: ExportKind,
}

/// Decides from the manifest alone (paths, types, modes, declared sizes)
/// which files of `export/` are fetched, in manifest order; the others are
/// refused with their reason, so that nothing refused is ever read.
fn choose<'m>(
    ctx: &ExportContext<'_>,
    kind: Kind,
    entries: &'m [Entry],
    limits: LocalLimits,
) -> (Vec<Chosen<'m>>, Vec<Refused>) {
    let (mut chosen, mut refused) = (Vec::new(), Vec::new());
    let mut total = 0u64;
    for entry in entries {
        let Some(path) = entry.path.strip_prefix("export/") else {
            continue;
        };
        let verdict = match entry.kind {
            EntryKind::Directory => continue,
            EntryKind::Symlink => Err("a symlink; exports are never taken from links".to_string()),
            EntryKind::File if kind == Kind::Runtime => Err(ExportError::Runtime.to_string()),
            EntryKind::File => match exports::classify(ctx, path, entry.mode) {
                // The wrapper a publisher's deploy has; the daemon writes its own.
                Err(ExportError::Bin(_)) if path == format!("bin/{}", ctx.app_id) => continue,
                Err(e) => Err(e.to_string()),
                Ok(_) if entry.size > limits.max_export_file_size => Err(format!(
                    "{} bytes, over the limit of {} bytes (limits.max_export_file_size)",
                    entry.size, limits.max_export_file_size
                )),
                Ok(_) if chosen.len() >= limits.max_export_files => Err(format!(
                    "more than {} exported files (limits.max_export_files)",
                    limits.max_export_files
                )),
                Ok(_) if total.saturating_add(entry.size) > limits.max_exports_size => {
                    Err(format!(
                        "the exports would pass {} bytes in all (limits.max_exports_size)",
                        limits.max_exports_size
                    ))
                }
                Ok(kind) => Ok(kind),
            },
        };
        match verdict {
            Ok(kind) => {
                total += entry.size;
                chosen.push(Chosen { entry, path, kind });
            }
            Err(reason) => refused.push(Refused {
                path: entry.path.clone(),
                reason,
            }),
        }
    }
    (chosen, refused)
}

/// Counts a rewritten file of `len` bytes into `written`, or says why it is
/// not written: a rewrite adds an `Exec=` line per group, so the result is
/// held to the same limits as what was fetched.
fn admit(written: &mut u64, len: usize, limits: LocalLimits) -> Result<(), String> {
    let len = len as u64;
    if len > limits.max_export_file_size {
        return Err(format!(
            "rewritten, it would be {len} bytes, over the limit of {} bytes \
             (limits.max_export_file_size)",
            limits.max_export_file_size
        ));
    }
    if written.saturating_add(len) > limits.max_exports_size {
        return Err(format!(
            "rewritten, the exports would pass {} bytes in all (limits.max_exports_size)",
            limits.max_exports_size
        ));
    }
    *written += len;
    Ok(())
}

/// The bytes of `entry`, read with its declared size as the bound: a file
/// that turns out larger or smaller than the manifest says is an error.
async fn fetch_exact(
    kubo: &Client,
    entry: &Entry,
    timeout: Duration,
) -> Result<Vec<u8>, InstallError> {
    let path = format!("/ipfs/{}", entry.cid);
    let read = kubo.cat_bounded(&path, entry.size);
    let data = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| KuboError::Stalled {
            what: format!("fetching {}", entry.path),
            after: timeout,
        })??;
    if data.len() as u64 != entry.size {
        return Err(SourceError::Invalid {
            what: entry.path.clone(),
            reason: if data.len() as u64 > entry.size {
                format!(
                    "it is larger than the {} bytes the manifest says",
                    entry.size
                )
            } else {
                format!(
                    "{} bytes arrived, the manifest says {}",
                    data.len(),
                    entry.size
                )
            },
        }
        .into());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LocalLimits = LocalLimits {
        max_metadata_size: 1000,
        max_export_file_size: 100,
        max_exports_size: 250,
        max_export_files: 3,
    };

    const CTX: ExportContext<'static> = ExportContext {
        app_id: "org.test.Hello",
        arch: "x86_64",
        branch: "master",
        own_names: &[],
    };

    fn entry(path: &str, kind: EntryKind, mode: u32, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            size,
            target: (kind == EntryKind::Symlink).then(|| "/etc/shadow".into()),
            cid: "bafkqaaa".into(),
        }
    }

    fn file(name: &str, size: u64) -> Entry {
        entry(
            &format!("export/share/applications/{name}"),
            EntryKind::File,
            0o644,
            size,
        )
    }

    /// (chosen paths, refused paths with a word of their reason).
    fn chosen(kind: Kind, entries: &[Entry]) -> (Vec<String>, Vec<(String, String)>) {
        let (chosen, refused) = choose(&CTX, kind, entries, LIMITS);
        (
            chosen.iter().map(|c| c.entry.path.clone()).collect(),
            refused.into_iter().map(|r| (r.path, r.reason)).collect(),
        )
    }

    #[test]
    fn only_what_can_be_exported_within_the_limits_is_fetched() {
        let entries = [
            entry("export", EntryKind::Directory, 0o755, 0),
            entry("export/bin/org.test.Hello", EntryKind::File, 0o755, 10),
            entry("export/bin/evil", EntryKind::File, 0o755, 10),
            entry(
                "export/etc/profile.d/org.test.Hello.sh",
                EntryKind::File,
                0o644,
                10,
            ),
            entry(
                "export/share/applications/org.test.Hello.Link.desktop",
                EntryKind::Symlink,
                0o777,
                0,
            ),
            file("org.test.Hello.A.desktop", 100),
            file("org.test.Hello.Big.desktop", 101),
            file("org.other.App.desktop", 10),
            file("org.test.Hello.B.desktop", 100),
            file("org.test.Hello.C.desktop", 60),
            file("org.test.Hello.D.desktop", 40),
            file("org.test.Hello.E.desktop", 1),
            entry("files/bin/hello.sh", EntryKind::File, 0o4755, 10),
        ];
        let (fetched, refused) = chosen(Kind::App, &entries);
        let prefix = "export/share/applications/org.test.Hello";
        assert_eq!(
            fetched,
            [
                format!("{prefix}.A.desktop"),
                format!("{prefix}.B.desktop"),
                format!("{prefix}.D.desktop")
            ]
        );
        let reason = |path: &str| {
            refused
                .iter()
                .find(|(p, _)| p.ends_with(path))
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| panic!("{path} not refused: {refused:?}"))
        };
        assert!(reason("bin/evil").contains("bin/"));
        assert!(reason("profile.d/org.test.Hello.sh").contains("not a directory"));
        assert!(reason("Link.desktop").contains("symlink"));
        assert!(reason("Big.desktop").contains("limits.max_export_file_size"));
        assert!(reason("org.other.App.desktop").contains("not named for the app"));
        assert!(reason("C.desktop").contains("limits.max_exports_size"));
        assert!(reason("E.desktop").contains("limits.max_export_files"));
        // The publisher's wrapper is neither fetched nor reported.
        assert!(!refused
            .iter()
            .any(|(p, _)| p == "export/bin/org.test.Hello"));
        assert_eq!(refused.len(), 7, "{refused:?}");
    }

    #[test]
    fn runtimes_export_nothing() {
        let (fetched, refused) = chosen(Kind::Runtime, &[file("org.test.Hello.desktop", 10)]);
        assert!(fetched.is_empty());
        assert_eq!(refused.len(), 1);
    }

    #[test]
    fn rewritten_files_are_held_to_the_same_limits() {
        let mut written = 0;
        assert!(admit(&mut written, 100, LIMITS).is_ok());
        let too_big = admit(&mut written, 101, LIMITS).unwrap_err();
        assert!(too_big.contains("limits.max_export_file_size"), "{too_big}");
        assert!(admit(&mut written, 100, LIMITS).is_ok());
        let too_much = admit(&mut written, 60, LIMITS).unwrap_err();
        assert!(too_much.contains("limits.max_exports_size"), "{too_much}");
        assert_eq!(written, 200);
        // A desktop file of many empty groups grows past the limit when
        // each group gets its Exec=: refused, not written.
        let groups: String = "[Desktop Entry]\nName=x\n".to_string()
            + &('a'..='o').map(|g| format!("[{g}]\n")).collect::<String>();
        assert!(groups.len() <= 100);
        let path = "share/applications/org.test.Hello.desktop";
        let out = exports::rewrite(&CTX, path, ExportKind::Desktop, groups.as_bytes()).unwrap();
        assert!(admit(&mut 0, out.data.len(), LIMITS).is_err());
    }

    #[test]
    fn refusals_are_shown_without_control_characters() {
        let r = Refused {
            path: "export/share/applications/\u{1b}[2Jx\n.desktop".into(),
            reason: "bad".into(),
        };
        let shown = r.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2Jx\\u{a}.desktop: bad"), "{shown}");
    }
}

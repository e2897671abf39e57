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

use flatipfs_format::exports::{self, ExportContext};
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
    let ctx = ExportContext {
        app_id: &manifest.id,
        arch: &manifest.arch,
        branch: &manifest.branch,
    };
    let (mut count, mut total) = (0usize, 0u64);
    for entry in &manifest.entries {
        let Some(path) = entry.path.strip_prefix("export/") else {
            continue;
        };
        let mut refuse = |reason: String| {
            warn!(app = %manifest.id, path = %entry.path, "export refused: {reason}");
            out.refused.push(Refused {
                path: entry.path.clone(),
                reason,
            });
        };
        match entry.kind {
            EntryKind::Directory => continue,
            EntryKind::Symlink => {
                refuse("a symlink; exports are never taken from links".into());
                continue;
            }
            EntryKind::File => {}
        }
        if manifest.kind == Kind::Runtime {
            refuse(exports::ExportError::Runtime.to_string());
            continue;
        }
        let kind = match exports::classify(&ctx, path, entry.mode) {
            Ok(kind) => kind,
            Err(exports::ExportError::Bin(_)) if path == format!("bin/{}", manifest.id) => {
                // The wrapper a publisher's deploy has; replaced by ours below.
                continue;
            }
            Err(e) => {
                refuse(e.to_string());
                continue;
            }
        };
        if entry.size > limits.max_export_file_size {
            refuse(format!(
                "{} bytes, over the limit of {} bytes (limits.max_export_file_size)",
                entry.size, limits.max_export_file_size
            ));
            continue;
        }
        if count >= limits.max_export_files {
            refuse(format!(
                "more than {} exported files (limits.max_export_files)",
                limits.max_export_files
            ));
            continue;
        }
        if total.saturating_add(entry.size) > limits.max_exports_size {
            refuse(format!(
                "the exports would pass {} bytes in all (limits.max_exports_size)",
                limits.max_exports_size
            ));
            continue;
        }
        count += 1;
        total += entry.size;
        let data = fetch_exact(kubo, entry, timeout).await?;
        match exports::rewrite(&ctx, path, kind, &data) {
            Ok(exported) => out.files.push(LocalFile {
                path: format!("export/{}", exported.path),
                data: exported.data,
                executable: exported.executable,
            }),
            Err(e) => refuse(e.to_string()),
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
    Ok(out)
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

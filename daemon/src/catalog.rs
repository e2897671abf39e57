//! The catalogs of trusted remotes: what each offers, for browsing.
//!
//! On `Refresh` and on the scheduler's checks every trusted remote's store
//! index is resolved and, when it names a catalog (`appstream`) other than
//! the one cached, `catalog.xml` is fetched (at most
//! `appstream::MAX_CATALOG_BYTES`, within the document timeout), parsed
//! with limits (`flatipfs_format::appstream::parse_catalog`: only apps of
//! the same index, each once) and its icons fetched bounded, decoded and
//! re-encoded. A refused catalog leaves the cache as it was. The cache is
//! `<state_directory>/catalogs/<remote>/`: `catalog.json` (the validated
//! components with the index's versions) and `icons/<size>x<size>/<id>.png`,
//! replaced whole by a rename. Listing and searching read only the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flatipfs_format::appstream::{self, AppstreamError, Component};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::index::{IndexLimits, StoreIndex};
use crate::kubo::{Client, KuboError};
use crate::manager::Manager;
use crate::release::{self, Kind};
use crate::store::{Phase, State};

/// Why a catalog could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no remote named {0:?}")]
    NoSuchRemote(String),
    #[error("remote {0:?} has no catalog yet; refresh first (`flatipfsctl update --check`)")]
    NotCached(String),
    #[error("{id} offers no {size}x{size} icon in remote {remote:?}")]
    NoIcon {
        remote: String,
        id: String,
        size: u32,
    },
    #[error("the catalog of remote {remote:?} ({cid}) is refused: {reason}")]
    Invalid {
        remote: String,
        cid: String,
        reason: String,
    },
    #[error("the catalog of remote {remote:?} cannot be fetched: {source}")]
    Fetch {
        remote: String,
        #[source]
        source: KuboError,
    },
    #[error("the catalog cache {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A cached catalog.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cached {
    /// The catalog's CID ("" when the index names none).
    pub cid: String,
    /// Components, with the version the index lists.
    pub components: Vec<Component>,
}

/// One app a remote offers, as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub remote: String,
    pub component: Component,
    /// The installed version, when this id is installed (from any source).
    pub installed: Option<String>,
}

/// The catalog cache directory.
fn root(manager: &Manager) -> PathBuf {
    manager.config().state_directory.join("catalogs")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads remote `remote`'s cached catalog.
fn load(dir: &Path, remote: &str) -> Result<Option<Cached>, CatalogError> {
    let path = dir.join(remote).join("catalog.json");
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| io(&path)(std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Fetches and checks the catalog `cid` of `remote`'s `index`; returns the
/// components and their sanitized icons.
async fn fetch(
    kubo: &Client,
    remote: &str,
    cid: &str,
    index: &StoreIndex,
    timeout: Duration,
) -> Result<(Vec<Component>, Vec<(String, u32, Vec<u8>)>), CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        remote: remote.to_string(),
        cid: cid.to_string(),
        reason,
    };
    let fetch_err = |source| CatalogError::Fetch {
        remote: remote.to_string(),
        source,
    };
    let bounded = |path: String, limit: u64| async move {
        match tokio::time::timeout(timeout, kubo.cat_bounded(&path, limit)).await {
            Ok(r) => r,
            Err(_) => Err(KuboError::Stalled {
                what: format!("fetching {path}"),
                after: timeout,
            }),
        }
    };
    let data = bounded(
        format!("/ipfs/{cid}/{}", appstream::CATALOG_NAME),
        appstream::MAX_CATALOG_BYTES,
    )
    .await
    .map_err(fetch_err)?;
    let max = IndexLimits::default().max_apps;
    let mut components = appstream::parse_catalog(&data, max, |id| {
        index.apps.get(id).is_some_and(|e| e.kind == Kind::App)
    })
    .map_err(|e| invalid(e.to_string()))?;
    let mut icons = Vec::new();
    for c in &mut components {
        let entry = &index.apps[&c.id];
        // The index is what installs follow: its version wins; a size for
        // another version is not this release's.
        if c.version.as_deref() != Some(entry.version.as_str()) {
            c.download_size = None;
        }
        c.version = Some(entry.version.clone());
        let mut kept = Vec::new();
        for size in c.icons.clone() {
            let path = format!("/ipfs/{cid}/{}", appstream::icon_path(&c.id, size));
            let icon = match bounded(path, appstream::MAX_ICON_BYTES).await {
                Ok(data) => appstream::sanitize_icon(&data, size),
                Err(e) => Err(AppstreamError::BadIcon(e.to_string())),
            };
            match icon {
                Ok(png) => {
                    icons.push((c.id.clone(), size, png));
                    kept.push(size);
                }
                Err(e) => warn!(%remote, id = %c.id, size, "catalog: icon refused: {e}"),
            }
        }
        c.icons = kept;
    }
    Ok((components, icons))
}

/// Writes a remote's cache whole: a new directory renamed over the old.
fn store(
    dir: &Path,
    remote: &str,
    cached: &Cached,
    icons: &[(String, u32, Vec<u8>)],
) -> Result<(), CatalogError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let fresh = dir.join(format!(".{remote}.new"));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(io(&fresh))?;
    for (id, size, png) in icons {
        let path = fresh.join(appstream::icon_path(id, *size));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, png).map_err(io(&path))?;
    }
    let json = fresh.join("catalog.json");
    std::fs::write(&json, serde_json::to_vec(cached).expect("serializes")).map_err(io(&json))?;
    let target = dir.join(remote);
    let old = dir.join(format!(".{remote}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old).map_err(io(&target))?;
    }
    crate::durable::rename(&fresh, &target).map_err(io(&target))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Brings remote `remote`'s cache up to `index`.
pub async fn refresh_remote(
    manager: &Manager,
    kubo: &Client,
    remote: &str,
    index: &StoreIndex,
) -> Result<(), CatalogError> {
    let dir = root(manager);
    let cid = index.appstream.clone().unwrap_or_default();
    let cached = load(&dir, remote).unwrap_or_default();
    // Same catalog: only the versions may have moved (never, by design; but
    // the index is what counts).
    if cached.as_ref().is_some_and(|c| c.cid == cid) {
        return Ok(());
    }
    if cid.is_empty() {
        return store(&dir, remote, &Cached::default(), &[]);
    }
    if !release::valid_cid_v1(&cid) {
        return Err(CatalogError::Invalid {
            remote: remote.into(),
            cid,
            reason: "not a CIDv1".into(),
        });
    }
    let timeout = manager.config().fetch.document_timeout;
    let (components, icons) = fetch(kubo, remote, &cid, index, timeout).await?;
    info!(%remote, %cid, apps = components.len(), "catalog cached");
    store(&dir, remote, &Cached { cid, components }, &icons)
}

/// Refreshes the catalog of every trusted remote (`only`: just these); a
/// remote that fails keeps its old cache and is logged; returns one line
/// per such remote. Caches of remotes no longer trusted are removed.
pub async fn refresh_all(manager: &Manager, only: Option<&[String]>) -> Vec<String> {
    let mut problems = Vec::new();
    let state = match manager.store().load() {
        Ok(state) => state,
        Err(e) => return vec![e.to_string()],
    };
    let kubo = match manager.kubo() {
        Ok((kubo, _)) => kubo,
        Err(e) => return vec![e.to_string()],
    };
    let config = manager.config();
    for (name, remote) in &state.remotes {
        if only.is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let index = match crate::source::fetch_index(
            &kubo,
            name,
            &remote.ipns,
            config.fetch.resolve_timeout,
            config.fetch.document_timeout,
        )
        .await
        {
            Ok(index) => index,
            Err(e) => {
                warn!(remote = %name, "catalog: {e}");
                problems.push(e.to_string());
                continue;
            }
        };
        if let Err(e) = refresh_remote(manager, &kubo, name, &index).await {
            warn!(remote = %name, "catalog: {e}; the cached catalog stays");
            problems.push(format!("{e}; the cached catalog stays"));
        }
    }
    let dir = root(manager);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && !state.remotes.contains_key(&name) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    problems
}

/// Installed ids and their current versions.
fn installed(state: &State) -> BTreeMap<String, String> {
    state
        .apps
        .values()
        .filter(|a| a.phase == Phase::Ready)
        .filter_map(|a| {
            let d = a.deployments.iter().find(|d| d.release == a.current)?;
            Some((a.id.clone(), d.version.clone()))
        })
        .collect()
}

/// What `remote` offers (every trusted remote when `None`), from the cache.
pub fn list(manager: &Manager, remote: Option<&str>) -> Result<Vec<Available>, CatalogError> {
    let state = manager
        .store()
        .load()
        .map_err(|e| io(Path::new("state"))(std::io::Error::other(e)))?;
    let dir = root(manager);
    let names: Vec<String> = match remote {
        Some(r) if !state.remotes.contains_key(r) => {
            return Err(CatalogError::NoSuchRemote(r.to_string()))
        }
        Some(r) => vec![r.to_string()],
        None => state.remotes.keys().cloned().collect(),
    };
    let installed = installed(&state);
    let mut out = Vec::new();
    for name in names {
        let Some(cached) = load(&dir, &name)? else {
            if remote.is_some() {
                return Err(CatalogError::NotCached(name));
            }
            continue;
        };
        for component in cached.components {
            out.push(Available {
                installed: installed.get(&component.id).cloned(),
                remote: name.clone(),
                component,
            });
        }
    }
    Ok(out)
}

/// Apps of every trusted remote matching every word of `words` (in id,
/// name, summary or description, ignoring case); best matches first (name,
/// then id, then the rest).
pub fn search(manager: &Manager, words: &str) -> Result<Vec<Available>, CatalogError> {
    let words: Vec<String> = words.split_whitespace().map(str::to_lowercase).collect();
    let mut scored: Vec<(u32, Available)> = list(manager, None)?
        .into_iter()
        .filter_map(|a| {
            let c = &a.component;
            let (name, id) = (c.name.to_lowercase(), c.id.to_lowercase());
            let rest = format!("{} {}", c.summary, c.description.join(" ")).to_lowercase();
            let mut score = 0;
            for w in &words {
                score += if name.contains(w.as_str()) {
                    100
                } else if id.contains(w.as_str()) {
                    50
                } else if rest.contains(w.as_str()) {
                    10
                } else {
                    return None;
                };
            }
            Some((score, a))
        })
        .collect();
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.component.name.cmp(&b.1.component.name))
    });
    Ok(scored.into_iter().map(|(_, a)| a).collect())
}

/// The cached catalog of `remote` as an AppStream collection (written from
/// the validated components, never the bytes fetched).
pub fn catalog_xml(manager: &Manager, remote: &str) -> Result<String, CatalogError> {
    if !manager
        .store()
        .load()
        .map(|s| s.remotes.contains_key(remote))
        .unwrap_or(false)
    {
        return Err(CatalogError::NoSuchRemote(remote.to_string()));
    }
    let cached =
        load(&root(manager), remote)?.ok_or_else(|| CatalogError::NotCached(remote.to_string()))?;
    Ok(appstream::write_catalog(remote, &cached.components))
}

/// The cached icon of `id` at `size` in `remote`'s catalog (PNG).
pub fn icon(manager: &Manager, remote: &str, id: &str, size: u32) -> Result<Vec<u8>, CatalogError> {
    let no_icon = || CatalogError::NoIcon {
        remote: remote.to_string(),
        id: id.to_string(),
        size,
    };
    let cached = list(manager, Some(remote))?;
    // Only names the cache itself holds reach the file system.
    let known: BTreeSet<(&str, u32)> = cached
        .iter()
        .flat_map(|a| {
            a.component
                .icons
                .iter()
                .map(|s| (a.component.id.as_str(), *s))
        })
        .collect();
    if !known.contains(&(id, size)) {
        return Err(no_icon());
    }
    let path = root(manager)
        .join(remote)
        .join(appstream::icon_path(id, size));
    std::fs::read(&path).map_err(|_| no_icon())
}

//! AppStream on the publishing side: taking an app's component and icons
//! from its build into the release (`appstream/` next to `deploy/`), and
//! rebuilding the remote's catalog (an AppStream collection with the icons
//! of every app's current release) that the store index names.
//!
//! What a build carries is read from its scanned tree, bounded; text goes
//! through `flatipfs_format::appstream` and icons are decoded and
//! re-encoded, so a release never carries the publisher's bytes as they
//! were. An app without AppStream data gets a minimal component from its
//! desktop file, and the publisher a warning.

use std::io::Read;

use flatipfs_format::appstream::{
    self, Component, ICON_SIZES, MAX_COMPONENT_BYTES, MAX_ICON_BYTES,
};
use tracing::warn;

use crate::index::{IndexLimits, StoreIndex};
use crate::kubo::{AddOptions, AddPart, Client, KuboError};
use crate::release::{EntryKind, Kind};
use crate::tree::Tree;

/// An app's AppStream data as taken from its build.
#[derive(Debug, Clone)]
pub struct Collected {
    pub component: Component,
    /// Sanitized PNGs by size.
    pub icons: Vec<(u32, Vec<u8>)>,
    /// What the publisher should hear about (missing data, refused files).
    pub warnings: Vec<String>,
}

/// The first of `paths` that is a regular file of `tree`, read (at most `limit` bytes).
fn read_first(
    tree: &Tree,
    paths: &[String],
    limit: u64,
) -> Option<(String, Result<Vec<u8>, String>)> {
    paths.iter().find_map(|path| {
        let entry = tree
            .entries
            .iter()
            .find(|e| &e.path == path && e.kind == EntryKind::File)?;
        Some((
            path.clone(),
            tree.read(entry, limit).map_err(|e| e.to_string()),
        ))
    })
}

/// Takes the component and icons of app `id` from `tree` (a deploy directory).
pub fn collect(tree: &Tree, id: &str) -> Collected {
    let mut warnings = Vec::new();
    let xml_paths = [
        format!("files/share/metainfo/{id}.metainfo.xml"),
        format!("files/share/metainfo/{id}.appdata.xml"),
        format!("files/share/appdata/{id}.appdata.xml"),
        format!("files/share/appdata/{id}.metainfo.xml"),
        format!("files/share/app-info/xmls/{id}.xml"),
    ];
    let mut component = None;
    let mut read = read_first(tree, &xml_paths, MAX_COMPONENT_BYTES);
    if read.is_none() {
        // Flatpak's composed app-info (flatpak-builder, appstream-compose).
        let gz = [format!("files/share/app-info/xmls/{id}.xml.gz")];
        read = read_first(tree, &gz, MAX_COMPONENT_BYTES).map(|(path, data)| {
            let data = data.and_then(|d| {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&d[..])
                    .take(MAX_COMPONENT_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("not gzip: {e}"))?;
                Ok(out)
            });
            (path, data)
        });
    }
    if let Some((path, data)) = read {
        match data.and_then(|d| appstream::component_for(&d, id).map_err(|e| e.to_string())) {
            Ok(c) => component = Some(c),
            Err(e) => warnings.push(format!("AppStream data {path} not used: {e}")),
        }
    }
    let component = match component {
        Some(c) => c,
        None => {
            let desktop = [
                format!("files/share/applications/{id}.desktop"),
                format!("export/share/applications/{id}.desktop"),
            ];
            let from_desktop = read_first(tree, &desktop, 64 * 1024).and_then(|(path, data)| {
                data.and_then(|d| appstream::from_desktop_file(id, &d).map_err(|e| e.to_string()))
                    .map_err(|e| warnings.push(format!("desktop file {path} not used: {e}")))
                    .ok()
            });
            warnings.push(format!(
                "{id} carries no AppStream data (files/share/metainfo/{id}.metainfo.xml); software centres show a minimal entry{}",
                if from_desktop.is_some() { " made from its desktop file" } else { " with its id as name" }
            ));
            from_desktop.unwrap_or_else(|| Component {
                id: id.to_string(),
                name: id.to_string(),
                summary: id.to_string(),
                description: Vec::new(),
                license: None,
                version: None,
                download_size: None,
                icons: Vec::new(),
            })
        }
    };
    let mut icons = Vec::new();
    for size in ICON_SIZES {
        let paths = [
            format!("files/share/app-info/icons/flatpak/{size}x{size}/{id}.png"),
            format!("export/share/icons/hicolor/{size}x{size}/apps/{id}.png"),
            format!("files/share/icons/hicolor/{size}x{size}/apps/{id}.png"),
        ];
        match read_first(tree, &paths, MAX_ICON_BYTES) {
            None => warnings.push(format!(
                "{id} has no {size}x{size} PNG icon (share/icons/hicolor/{size}x{size}/apps/{id}.png); software centres show a generic one"
            )),
            Some((path, data)) => {
                match data.and_then(|d| appstream::sanitize_icon(&d, size).map_err(|e| e.to_string())) {
                    Ok(png) => icons.push((size, png)),
                    Err(e) => warnings.push(format!("icon {path} not used: {e}")),
                }
            }
        }
    }
    Collected {
        component,
        icons,
        warnings,
    }
}

/// The parts of a release's `appstream/` directory (names relative to the
/// release root), the component completed with the release's version and
/// download size.
pub fn release_parts(collected: &Collected, version: &str, download_size: u64) -> Vec<AddPart> {
    let mut component = collected.component.clone();
    component.version = Some(version.to_string());
    component.download_size = Some(download_size);
    component.icons = collected.icons.iter().map(|(s, _)| *s).collect();
    let dir = appstream::RELEASE_DIR;
    let mut parts = vec![
        AddPart::Directory { name: dir.into() },
        AddPart::Bytes {
            name: format!("{dir}/{}", appstream::COMPONENT_NAME),
            data: appstream::write_component(&component).into_bytes(),
        },
        AddPart::Directory {
            name: format!("{dir}/icons"),
        },
    ];
    for (size, png) in &collected.icons {
        parts.push(AddPart::Directory {
            name: format!("{dir}/icons/{size}x{size}"),
        });
        parts.push(AddPart::Bytes {
            name: format!("{dir}/{}", appstream::icon_path(&component.id, *size)),
            data: png.clone(),
        });
    }
    parts
}

/// Builds the catalog of `index` (remote `remote`): the component of every
/// app's current release that has one, and their icons; pinned. Returns
/// its CID. A release without AppStream data (published before it
/// existed) is left out.
pub async fn build_catalog(
    kubo: &Client,
    remote: &str,
    index: &StoreIndex,
) -> Result<String, KuboError> {
    let stage = format!("/flatipfs-publish/catalog-{remote}-{}", std::process::id());
    kubo.files_rm(&stage).await?;
    kubo.files_mkdir(&stage).await?;
    let mut components = Vec::new();
    for (id, entry) in &index.apps {
        if entry.kind != Kind::App {
            continue;
        }
        let base = format!("/ipfs/{}/{}", entry.release, appstream::RELEASE_DIR);
        let data = match kubo
            .cat_bounded(
                &format!("{base}/{}", appstream::COMPONENT_NAME),
                MAX_COMPONENT_BYTES,
            )
            .await
        {
            Ok(data) => data,
            Err(e) => {
                warn!(%id, release = %entry.release, "catalog: no AppStream data in the release: {e}");
                continue;
            }
        };
        let mut component = match appstream::parse_components(&data, 1)
            .map_err(|e| e.to_string())
            .and_then(|mut c| c.pop().ok_or_else(|| "empty".to_string()))
        {
            Ok(c) if &c.id == id => c,
            Ok(c) => {
                warn!(%id, "catalog: the release's component is {}", c.id);
                continue;
            }
            Err(e) => {
                warn!(%id, "catalog: the release's component is unusable: {e}");
                continue;
            }
        };
        component.version = Some(entry.version.clone());
        let mut icons = Vec::new();
        for size in component.icons.clone() {
            let path = appstream::icon_path(id, size);
            match kubo
                .files_cp(&format!("{base}/{path}"), &format!("{stage}/{path}"))
                .await
            {
                Ok(()) => icons.push(size),
                Err(e) => warn!(%id, size, "catalog: icon left out: {e}"),
            }
        }
        component.icons = icons;
        components.push(component);
    }
    let max = IndexLimits::default().max_apps;
    components.truncate(max);
    let xml = appstream::write_catalog(remote, &components);
    let lines = kubo
        .add(
            vec![AddPart::Bytes {
                name: appstream::CATALOG_NAME.into(),
                data: xml.into_bytes(),
            }],
            AddOptions { pin: false },
            |_| {},
        )
        .await?;
    let cid = lines
        .last()
        .and_then(|l| l.hash.clone())
        .ok_or_else(|| KuboError::NotUsable("Kubo returned no CID for the catalog".into()))?;
    kubo.files_cp(
        &format!("/ipfs/{cid}"),
        &format!("{stage}/{}", appstream::CATALOG_NAME),
    )
    .await?;
    let root = kubo.files_hash(&stage).await?;
    kubo.pin_add(&root, &format!("flatipfs catalog {remote}"))
        .await?;
    kubo.files_rm(&stage).await?;
    Ok(root)
}

//! AppStream for software centres: an app's component (read from the
//! publisher's metainfo/appdata or Flatpak's composed app-info, or made from
//! its desktop file), the per-remote catalog (an AppStream collection that
//! the store index names), and icons.
//!
//! Everything read back from the network passes through here first:
//! [`parse_catalog`] and [`parse_components`] take bytes already bounded by
//! their caller ([`MAX_CATALOG_BYTES`], [`MAX_COMPONENT_BYTES`]) and refuse
//! DTDs, more than [`XML_NODES_LIMIT`] nodes, unknown ids, duplicate ids,
//! over-long or control-character text; [`sanitize_icon`] decodes a PNG
//! with a memory limit, insists on the size it claims, and re-encodes the
//! pixels, so the bytes a desktop's image loader sees are ours.
//! What this crate writes ([`write_catalog`], [`write_component`]) it can
//! read back.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::release::{valid_app_id, valid_version};

/// The largest catalog (`catalog.xml`) read from the network.
pub const MAX_CATALOG_BYTES: u64 = 8 << 20;
/// The largest component (a release's `appstream/component.xml`, a
/// publisher's metainfo) read.
pub const MAX_COMPONENT_BYTES: u64 = 1 << 20;
/// The largest icon read.
pub const MAX_ICON_BYTES: u64 = 1 << 20;
/// The icon sizes a release and a catalog carry (pixels, square).
pub const ICON_SIZES: [u32; 2] = [64, 128];
/// Most XML nodes in one document.
pub const XML_NODES_LIMIT: u32 = 200_000;
/// Longest name (characters).
pub const MAX_NAME: usize = 128;
/// Longest summary (characters).
pub const MAX_SUMMARY: usize = 512;
/// Longest description, all paragraphs together (characters).
pub const MAX_DESCRIPTION: usize = 16 * 1024;
/// Most description paragraphs.
pub const MAX_PARAGRAPHS: usize = 64;
/// Longest license expression (characters).
pub const MAX_LICENSE: usize = 256;

/// The catalog's file name in its directory; icons are in
/// `icons/<size>x<size>/<id>.png` next to it.
pub const CATALOG_NAME: &str = "catalog.xml";
/// The component's file name in a release's `appstream/` directory, icons
/// in `appstream/icons/<size>x<size>/<id>.png`.
pub const COMPONENT_NAME: &str = "component.xml";
/// The release root's directory holding AppStream data.
pub const RELEASE_DIR: &str = "appstream";

/// Where an icon of `id` at `size` lives, relative to a catalog directory or
/// a release's `appstream/`.
pub fn icon_path(id: &str, size: u32) -> String {
    format!("icons/{size}x{size}/{id}.png")
}

/// What a software centre shows of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The Flatpak app id (without `.desktop`).
    pub id: String,
    pub name: String,
    pub summary: String,
    /// Paragraphs of plain text (list items become paragraphs with a bullet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub description: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The release's version, when the document says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Bytes a client fetches to install the release, when the document says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_size: Option<u64>,
    /// Icon sizes available (of [`ICON_SIZES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub icons: Vec<u32>,
}

/// Why an AppStream document or icon was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppstreamError {
    #[error("{0} bytes, over the limit of {1}")]
    TooLarge(u64, u64),
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("root element <{0}>, expected <components> or <component>")]
    BadRoot(String),
    #[error("component {0}: {1}")]
    BadComponent(String, String),
    #[error("a component without a valid <id>: {0}")]
    BadId(String),
    #[error("component {0} appears twice")]
    Duplicate(String),
    #[error("component {0} is not an app of the store index")]
    NotInIndex(String),
    #[error("{0} components, over the limit of {1}")]
    TooMany(usize, usize),
    #[error("no component for {0}")]
    Missing(String),
    #[error("icon: {0}")]
    BadIcon(String),
}

fn bad(id: &str, reason: impl Into<String>) -> AppstreamError {
    AppstreamError::BadComponent(id.to_string(), reason.into())
}

/// Collapses white space and refuses control characters and over-long text.
fn clean_text(id: &str, what: &str, raw: &str, max: usize) -> Result<String, AppstreamError> {
    if raw.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Err(bad(id, format!("{what} holds control characters")));
    }
    // Bidirectional overrides let text pretend to be another name.
    if raw
        .chars()
        .any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Err(bad(id, format!("{what} holds bidirectional overrides")));
    }
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = text.chars().count();
    if count > max {
        return Err(bad(
            id,
            format!("{what} is {count} characters, over the limit of {max}"),
        ));
    }
    Ok(text)
}

impl Component {
    /// Checks what every component must satisfy to be shown.
    pub fn validate(&self) -> Result<(), AppstreamError> {
        if !valid_app_id(&self.id) {
            return Err(AppstreamError::BadId(self.id.clone()));
        }
        let id = &self.id;
        for (what, text, max) in [
            ("name", &self.name, MAX_NAME),
            ("summary", &self.summary, MAX_SUMMARY),
        ] {
            if text.is_empty() {
                return Err(bad(id, format!("no {what}")));
            }
            if clean_text(id, what, text, max)? != *text {
                return Err(bad(id, format!("{what} is not normalized")));
            }
        }
        if self.description.len() > MAX_PARAGRAPHS {
            return Err(bad(id, "too many description paragraphs"));
        }
        let mut total = 0;
        for p in &self.description {
            total += clean_text(id, "description", p, MAX_DESCRIPTION)?
                .chars()
                .count();
        }
        if total > MAX_DESCRIPTION {
            return Err(bad(id, "description too long"));
        }
        if let Some(license) = &self.license {
            clean_text(id, "license", license, MAX_LICENSE)?;
        }
        if let Some(version) = &self.version {
            if !valid_version(version) {
                return Err(bad(id, format!("invalid version {version:?}")));
            }
        }
        let mut seen = BTreeSet::new();
        for size in &self.icons {
            if !ICON_SIZES.contains(size) || !seen.insert(*size) {
                return Err(bad(id, format!("icon size {size} not expected")));
            }
        }
        Ok(())
    }
}

fn parse_xml(data: &[u8]) -> Result<roxmltree::Document<'_>, AppstreamError> {
    let text = std::str::from_utf8(data).map_err(|_| AppstreamError::Xml("not UTF-8".into()))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: XML_NODES_LIMIT,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| AppstreamError::Xml(e.to_string()))
}

/// The untranslated child `<tag>` of `node` (no `xml:lang`).
fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| {
        c.has_tag_name(tag)
            && c.attribute(("http://www.w3.org/XML/1998/namespace", "lang"))
                .is_none()
    })
}

fn all_text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

/// Reads one `<component>` element.
fn read_component(node: roxmltree::Node<'_, '_>) -> Result<Component, AppstreamError> {
    let raw_id = child(node, "id").map(all_text).unwrap_or_default();
    let raw_id = raw_id.trim();
    let id = raw_id
        .strip_suffix(".desktop")
        .unwrap_or(raw_id)
        .to_string();
    if !valid_app_id(&id) {
        return Err(AppstreamError::BadId(raw_id.chars().take(80).collect()));
    }
    let text_of = |tag: &str, max: usize| -> Result<Option<String>, AppstreamError> {
        child(node, tag)
            .map(|n| clean_text(&id, tag, &all_text(n), max))
            .transpose()
    };
    let name = text_of("name", MAX_NAME)?.unwrap_or_default();
    let summary = text_of("summary", MAX_SUMMARY)?.unwrap_or_default();
    let license = text_of("project_license", MAX_LICENSE)?.filter(|l| !l.is_empty());
    let mut description = Vec::new();
    if let Some(d) = child(node, "description") {
        for p in d
            .descendants()
            .filter(|n| n.has_tag_name("p") || n.has_tag_name("li"))
        {
            if p.attribute(("http://www.w3.org/XML/1998/namespace", "lang"))
                .is_some()
            {
                continue;
            }
            let text = clean_text(&id, "description", &all_text(p), MAX_DESCRIPTION)?;
            if text.is_empty() {
                continue;
            }
            description.push(if p.has_tag_name("li") {
                format!("• {text}")
            } else {
                text
            });
        }
    }
    let mut version = None;
    let mut download_size = None;
    // The newest release comes first.
    if let Some(release) = child(node, "releases").and_then(|r| child(r, "release")) {
        version = release.attribute("version").map(str::to_string);
        download_size = child(release, "size")
            .filter(|s| s.attribute("type") == Some("download"))
            .map(|s| {
                all_text(s)
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| bad(&id, "download size is not a number"))
            })
            .transpose()?;
    }
    let mut icons = Vec::new();
    for icon in node.children().filter(|c| c.has_tag_name("icon")) {
        if icon.attribute("type") != Some("cached") {
            continue;
        }
        let size: u32 = icon
            .attribute("width")
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| bad(&id, "cached icon without a width"))?;
        if icon.attribute("height") != icon.attribute("width") {
            return Err(bad(&id, "icon not square"));
        }
        if all_text(icon).trim() != format!("{id}.png") {
            return Err(bad(&id, "icon names another file"));
        }
        icons.push(size);
    }
    icons.sort_unstable();
    let component = Component {
        id,
        name,
        summary,
        description,
        license,
        version,
        download_size,
        icons,
    };
    component.validate()?;
    Ok(component)
}

/// Every component of a document whose root is `<components>` or one
/// `<component>`, at most `max` of them.
pub fn parse_components(data: &[u8], max: usize) -> Result<Vec<Component>, AppstreamError> {
    let doc = parse_xml(data)?;
    let root = doc.root_element();
    let nodes: Vec<_> = match root.tag_name().name() {
        "component" => vec![root],
        "components" => root
            .children()
            .filter(|c| c.has_tag_name("component"))
            .collect(),
        other => return Err(AppstreamError::BadRoot(other.chars().take(40).collect())),
    };
    if nodes.len() > max {
        return Err(AppstreamError::TooMany(nodes.len(), max));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let c = read_component(node)?;
        if !seen.insert(c.id.clone()) {
            return Err(AppstreamError::Duplicate(c.id));
        }
        out.push(c);
    }
    Ok(out)
}

/// The component of `id` in a publisher's metainfo/appdata or composed
/// app-info (other components of the document are ignored, but every one
/// must be well-formed).
pub fn component_for(data: &[u8], id: &str) -> Result<Component, AppstreamError> {
    if data.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(AppstreamError::TooLarge(
            data.len() as u64,
            MAX_COMPONENT_BYTES,
        ));
    }
    let doc = parse_xml(data)?;
    let root = doc.root_element();
    let candidates: Vec<_> = match root.tag_name().name() {
        "component" => vec![root],
        "components" => root
            .children()
            .filter(|c| c.has_tag_name("component"))
            .collect(),
        other => return Err(AppstreamError::BadRoot(other.chars().take(40).collect())),
    };
    for node in candidates {
        let raw = child(node, "id").map(all_text).unwrap_or_default();
        let raw = raw.trim();
        if raw.strip_suffix(".desktop").unwrap_or(raw) == id {
            let mut c = read_component(node)?;
            // A publisher's icons are taken from files, not from this text.
            c.icons.clear();
            return Ok(c);
        }
    }
    Err(AppstreamError::Missing(id.to_string()))
}

/// A catalog read from the network: at most `max` components, each one an
/// app that `is_app` accepts (an app of the same store index), each once.
pub fn parse_catalog(
    data: &[u8],
    max: usize,
    is_app: impl Fn(&str) -> bool,
) -> Result<Vec<Component>, AppstreamError> {
    if data.len() as u64 > MAX_CATALOG_BYTES {
        return Err(AppstreamError::TooLarge(
            data.len() as u64,
            MAX_CATALOG_BYTES,
        ));
    }
    let components = parse_components(data, max)?;
    if let Some(stray) = components.iter().find(|c| !is_app(&c.id)) {
        return Err(AppstreamError::NotInIndex(stray.id.clone()));
    }
    Ok(components)
}

/// A minimal component from a desktop file's `[Desktop Entry]` (`Name`,
/// `Comment`), for an app published without AppStream data.
pub fn from_desktop_file(id: &str, data: &[u8]) -> Result<Component, AppstreamError> {
    let text = std::str::from_utf8(data).map_err(|_| bad(id, "desktop file is not UTF-8"))?;
    let mut in_entry = false;
    let (mut name, mut comment) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_entry = line == "[Desktop Entry]";
            continue;
        }
        if !in_entry {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "Name" => name = Some(value.trim().to_string()),
                "Comment" => comment = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let name = clean_text(
        id,
        "name",
        &name.unwrap_or_else(|| id.to_string()),
        MAX_NAME,
    )?;
    let summary = clean_text(
        id,
        "summary",
        &comment.unwrap_or_else(|| name.clone()),
        MAX_SUMMARY,
    )?;
    let component = Component {
        id: id.to_string(),
        name,
        summary,
        description: Vec::new(),
        license: None,
        version: None,
        download_size: None,
        icons: Vec::new(),
    };
    component.validate()?;
    Ok(component)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn component_xml(c: &Component, out: &mut String) {
    let id = escape(&c.id);
    out.push_str("  <component type=\"desktop-application\">\n");
    out.push_str(&format!("    <id>{id}</id>\n"));
    out.push_str(&format!("    <name>{}</name>\n", escape(&c.name)));
    out.push_str(&format!("    <summary>{}</summary>\n", escape(&c.summary)));
    if !c.description.is_empty() {
        out.push_str("    <description>\n");
        for p in &c.description {
            out.push_str(&format!("      <p>{}</p>\n", escape(p)));
        }
        out.push_str("    </description>\n");
    }
    if let Some(license) = &c.license {
        out.push_str(&format!(
            "    <project_license>{}</project_license>\n",
            escape(license)
        ));
    }
    out.push_str(&format!(
        "    <launchable type=\"desktop-id\">{id}.desktop</launchable>\n"
    ));
    for size in &c.icons {
        out.push_str(&format!(
            "    <icon type=\"cached\" width=\"{size}\" height=\"{size}\">{id}.png</icon>\n"
        ));
    }
    if let Some(version) = &c.version {
        out.push_str("    <releases>\n");
        out.push_str(&format!(
            "      <release version=\"{}\">\n",
            escape(version)
        ));
        if let Some(size) = c.download_size {
            out.push_str(&format!("        <size type=\"download\">{size}</size>\n"));
        }
        out.push_str("      </release>\n    </releases>\n");
    }
    out.push_str("  </component>\n");
}

/// One component as a document (a release's `appstream/component.xml`).
pub fn write_component(c: &Component) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    component_xml(c, &mut out);
    out
}

/// A catalog: an AppStream collection with origin `origin`.
pub fn write_catalog(origin: &str, components: &[Component]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<components version=\"0.14\" origin=\"{}\">\n",
        escape(origin)
    ));
    for c in components {
        component_xml(c, &mut out);
    }
    out.push_str("</components>\n");
    out
}

/// Decodes PNG `data` (at most [`MAX_ICON_BYTES`], decoding within a
/// memory limit), checks it is `size`×`size` pixels, and returns it
/// re-encoded as 8-bit RGBA: nothing of the original bytes but the pixels.
pub fn sanitize_icon(data: &[u8], size: u32) -> Result<Vec<u8>, AppstreamError> {
    let icon = |r: String| AppstreamError::BadIcon(r);
    if data.len() as u64 > MAX_ICON_BYTES {
        return Err(AppstreamError::TooLarge(data.len() as u64, MAX_ICON_BYTES));
    }
    if !ICON_SIZES.contains(&size) {
        return Err(icon(format!("size {size} not expected")));
    }
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(data),
        png::Limits {
            bytes: 4 * 1024 * 1024,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| icon(format!("not a PNG: {e}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width != size || height != size {
        return Err(icon(format!("{width}x{height}, expected {size}x{size}")));
    }
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| icon(format!("not a PNG: {e}")))?;
    let pixels = &buffer[..frame.buffer_size()];
    let rgba: Vec<u8> = match frame.color_type {
        png::ColorType::Rgba => pixels.to_vec(),
        png::ColorType::Rgb => pixels
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => pixels.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => return Err(icon("palette left after expansion".into())),
    };
    if rgba.len() != (size as usize) * (size as usize) * 4 {
        return Err(icon("pixel data of the wrong length".into()));
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| icon(format!("re-encoding: {e}")))?;
    writer
        .write_image_data(&rgba)
        .map_err(|e| icon(format!("re-encoding: {e}")))?;
    writer
        .finish()
        .map_err(|e| icon(format!("re-encoding: {e}")))?;
    Ok(out)
}

/// A plain `size`×`size` PNG of one colour (tests, and fixtures).
pub fn solid_icon(size: u32, rgba: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size, size);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("in-memory PNG");
    let pixels: Vec<u8> = (0..size * size).flat_map(|_| rgba).collect();
    writer.write_image_data(&pixels).expect("in-memory PNG");
    writer.finish().expect("in-memory PNG");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const METAINFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<component type="desktop-application">
  <id>org.test.Hello.desktop</id>
  <name>Hello</name>
  <name xml:lang="de">Hallo</name>
  <summary>Says   hello</summary>
  <project_license>MIT</project_license>
  <description><p>A test app.</p><ul><li>It greets.</li></ul></description>
</component>"#;

    #[test]
    fn metainfo_is_read() {
        let c = component_for(METAINFO.as_bytes(), "org.test.Hello").unwrap();
        assert_eq!(c.name, "Hello");
        assert_eq!(c.summary, "Says hello");
        assert_eq!(c.description, vec!["A test app.", "• It greets."]);
        assert_eq!(c.license.as_deref(), Some("MIT"));
    }

    #[test]
    fn written_catalog_reads_back() {
        let mut c = component_for(METAINFO.as_bytes(), "org.test.Hello").unwrap();
        c.version = Some("2".into());
        c.download_size = Some(1234);
        c.icons = vec![64, 128];
        c.name = "Hello <&> \"you\"".into();
        let xml = write_catalog("main", std::slice::from_ref(&c));
        let back = parse_catalog(xml.as_bytes(), 10, |id| id == "org.test.Hello").unwrap();
        assert_eq!(back, vec![c.clone()]);
        let one = parse_components(write_component(&c).as_bytes(), 1).unwrap();
        assert_eq!(one, vec![c]);
    }

    #[test]
    fn hostile_catalogs_are_refused() {
        let wrap = |inner: &str| format!("<components>{inner}</components>");
        let ok = "<component><id>org.test.Hello</id><name>H</name><summary>S</summary></component>";
        let cases = [
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><components/>".to_string(),
            wrap(&ok.repeat(2)),
            wrap("<component><id>org.other.App</id><name>H</name><summary>S</summary></component>"),
            wrap("<component><id>../etc</id><name>H</name><summary>S</summary></component>"),
            wrap("<component><id>org.test.Hello</id><name></name><summary>S</summary></component>"),
            wrap(&format!(
                "<component><id>org.test.Hello</id><name>{}</name><summary>S</summary></component>",
                "x".repeat(MAX_NAME + 1)
            )),
            wrap("<component><id>org.test.Hello</id><name>a&#x1b;b</name><summary>S</summary></component>"),
            wrap("<component><id>org.test.Hello</id><name>a\u{202e}b</name><summary>S</summary></component>"),
            wrap("<component><id>org.test.Hello</id><name>H</name><summary>S</summary><icon type=\"cached\" width=\"64\" height=\"64\">../../x.png</icon></component>"),
            wrap("<component><id>org.test.Hello</id><name>H</name><summary>S</summary><icon type=\"cached\" width=\"4096\" height=\"4096\">org.test.Hello.png</icon></component>"),
            "<html/>".into(),
            "<components><component>".into(),
        ];
        for case in cases {
            assert!(
                parse_catalog(case.as_bytes(), 10, |id| id == "org.test.Hello").is_err(),
                "{case}"
            );
        }
        let many = wrap(ok);
        assert!(matches!(
            parse_catalog(many.as_bytes(), 0, |_| true),
            Err(AppstreamError::TooMany(1, 0))
        ));
    }

    #[test]
    fn desktop_file_gives_a_minimal_component() {
        let c = from_desktop_file(
            "org.test.Hello",
            b"[Desktop Entry]\nName=Hello\nComment=Greets\n[Desktop Action x]\nName=Other\n",
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.summary.as_str()), ("Hello", "Greets"));
        let c = from_desktop_file("org.test.Hello", b"[Desktop Entry]\nName=Hello\n").unwrap();
        assert_eq!(c.summary, "Hello");
    }

    #[test]
    fn icons_are_decoded_checked_and_reencoded() {
        let good = solid_icon(64, [1, 2, 3, 255]);
        let clean = sanitize_icon(&good, 64).unwrap();
        assert!(clean.starts_with(b"\x89PNG"));
        assert!(sanitize_icon(&good, 128).is_err(), "wrong size");
        assert!(sanitize_icon(b"\x89PNG\r\n\x1a\ngarbage", 64).is_err());
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 20);
        assert!(sanitize_icon(&truncated, 64).is_err());
        // A header claiming a huge image is refused before any pixel is read.
        let mut huge = solid_icon(64, [0; 4]);
        huge[16..20].copy_from_slice(&60000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&60000u32.to_be_bytes());
        assert!(sanitize_icon(&huge, 64).is_err());
    }
}

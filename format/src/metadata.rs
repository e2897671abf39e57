//! A release's Flatpak `metadata`: parsing, the checks against its
//! manifest, the sandbox permissions it grants, and what an update widens.
//!
//! `metadata` is a GKeyFile (`[Application] name= runtime=`, `[Context]
//! filesystems= sockets= …`, `[Session Bus Policy]`, `[Environment]`, …)
//! that `flatpak run` turns into the app's sandbox. It comes from the
//! network, so it is parsed here strictly, before anything is deployed:
//! bounded ([`MAX_SIZE`]), UTF-8, no NUL or other control character, no
//! duplicate group or key (GKeyFile would merge or override them, so what a
//! reviewer reads could differ from what Flatpak applies), no localized
//! keys, valid escapes. The meanings follow Flatpak's
//! `common/flatpak-context.c` (`flatpak_context_load_metadata`):
//! negations (`!host`, `!x11`), conditionals (`if:x11:!has-wayland`),
//! filesystem modes (`:ro` < `:rw` < `:create`, `!fs` and `!host:reset`),
//! bus policies (`none` < `see` < `talk` < `own`).
//!
//! [`widened`] lists every way a new release's metadata grants more than
//! the installed one's. An explicit denial in a layer (`!x11`,
//! `filesystems=!home`, a bus name set to `none`) is stronger than saying
//! nothing (the runtime's grant would then apply), so dropping a denial
//! counts as widening too. Settings this module does not model (unknown
//! `[Context]` keys, unknown groups such as `[X-DConf]`) are compared
//! verbatim: anything new or changed there is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::release::{Kind, Manifest};

/// The largest `metadata` accepted, in bytes (real ones are under 4 KiB).
pub const MAX_SIZE: usize = 256 * 1024;
/// The most groups and keys accepted (each), against pathological files.
pub const MAX_ITEMS: usize = 4096;

/// Why a `metadata` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is {0} bytes, over the limit of {MAX_SIZE}")]
    TooLarge(usize),
    #[error("metadata is not UTF-8")]
    NotUtf8,
    #[error("metadata line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("metadata has neither an [Application] nor a [Runtime] group")]
    NoKind,
    #[error("metadata has both an [Application] and a [Runtime] group")]
    BothKinds,
    #[error("metadata [{group}] has no {key}=")]
    Missing {
        group: &'static str,
        key: &'static str,
    },
    #[error("metadata [{group}] {key}: {what}")]
    BadValue {
        group: String,
        key: String,
        what: String,
    },
    #[error("metadata says {found}, the manifest says {expected}")]
    Mismatch { expected: String, found: String },
}

/// A parsed GKeyFile: groups in file order, each with its keys in order and
/// their raw (still escaped) values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    pub groups: Vec<(String, Vec<(String, String)>)>,
}

impl KeyFile {
    /// Parses GKeyFile syntax strictly (see the module docs).
    pub fn parse(bytes: &[u8]) -> Result<KeyFile, MetadataError> {
        if bytes.len() > MAX_SIZE {
            return Err(MetadataError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
        let mut file = KeyFile::default();
        let mut keys = 0usize;
        for (n, raw) in text.split('\n').enumerate() {
            let line = n + 1;
            let err = |what: &str| MetadataError::Syntax {
                line,
                what: what.to_string(),
            };
            if raw.chars().any(char::is_control) {
                return Err(err("a NUL or control character (tabs and CR included)"));
            }
            let trimmed = raw.trim_start_matches(' ');
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or_else(|| err("a group header must end with `]`"))?;
                if name.is_empty() || name.contains('[') || name.contains(']') {
                    return Err(err("an invalid group name"));
                }
                if file.groups.iter().any(|(g, _)| g == name) {
                    return Err(err(&format!("group [{name}] appears twice")));
                }
                if file.groups.len() >= MAX_ITEMS {
                    return Err(err("too many groups"));
                }
                file.groups.push((name.to_string(), Vec::new()));
                continue;
            }
            let (key, value) = trimmed
                .split_once('=')
                .ok_or_else(|| err("neither a group, a key=value nor a comment"))?;
            let key = key.trim_end_matches(' ');
            let value = value.trim_start_matches(' ');
            if value.ends_with(' ') {
                return Err(err("trailing spaces in a value (write \\s)"));
            }
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b))
            {
                return Err(err(&format!(
                    "invalid key {key:?} (localized keys are refused)"
                )));
            }
            let Some((group, entries)) = file.groups.last_mut() else {
                return Err(err("a key before the first group"));
            };
            if entries.iter().any(|(k, _)| k == key) {
                return Err(err(&format!("key {key} appears twice in [{group}]")));
            }
            keys += 1;
            if keys > MAX_ITEMS {
                return Err(err("too many keys"));
            }
            entries.push((key.to_string(), value.to_string()));
        }
        Ok(file)
    }

    /// The raw value of `key` in `group`.
    pub fn raw(&self, group: &str, key: &str) -> Option<&str> {
        self.group(group)?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The keys of `group`, if present.
    pub fn group(&self, group: &str) -> Option<&[(String, String)]> {
        self.groups
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, e)| e.as_slice())
    }

    /// `key` of `group` as a string (GKeyFile escapes undone).
    pub fn string(&self, group: &str, key: &str) -> Result<Option<String>, MetadataError> {
        self.raw(group, key)
            .map(|v| unescape(v, None).map(|mut l| l.remove(0)))
            .transpose()
            .map_err(|what| bad(group, key, what))
    }

    /// `key` of `group` as a `;`-separated list (empty items dropped).
    pub fn list(&self, group: &str, key: &str) -> Result<Option<Vec<String>>, MetadataError> {
        self.raw(group, key)
            .map(|v| unescape(v, Some(';')))
            .transpose()
            .map(|l| l.map(|l| l.into_iter().filter(|s| !s.is_empty()).collect()))
            .map_err(|what| bad(group, key, what))
    }
}

fn bad(group: &str, key: &str, what: impl Into<String>) -> MetadataError {
    MetadataError::BadValue {
        group: group.to_string(),
        key: key.to_string(),
        what: what.into(),
    }
}

/// Undoes GKeyFile's escapes (`\s \n \t \r \\`, and `\;` in lists), split
/// at unescaped `separator`s. A control character an escape produces is
/// refused like one in the file.
fn unescape(value: &str, separator: Option<char>) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let current = out.last_mut().expect("never empty");
        if c == '\\' {
            match chars.next() {
                Some('s') => current.push(' '),
                Some('\\') => current.push('\\'),
                Some(c) if Some(c) == separator => current.push(c),
                Some('n' | 't' | 'r') => {
                    return Err("an escaped control character".into());
                }
                Some(c) => return Err(format!("an invalid escape \\{c}")),
                None => return Err("a trailing backslash".into()),
            }
        } else if Some(c) == separator {
            out.push(String::new());
        } else {
            current.push(c);
        }
    }
    if separator.is_some() && out.last().is_some_and(String::is_empty) {
        out.pop();
        if out.is_empty() {
            out.push(String::new());
        }
    }
    Ok(out)
}

/// What a release's `metadata` says it is, and what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: Kind,
    /// `[Application] name=` or `[Runtime] name=`.
    pub name: String,
    /// `[Application] runtime=` (apps only).
    pub runtime: Option<String>,
    pub permissions: Permissions,
}

/// A shared/socket/device/feature as one layer states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `!name`: denied even if the runtime grants it.
    Denied,
    /// `if:name:condition`: granted when one of the conditions holds.
    Conditional(BTreeSet<String>),
    /// `name`: granted.
    Allowed,
}

impl Grant {
    /// Denied < not said < conditional < allowed.
    fn level(grant: Option<&Grant>) -> u8 {
        match grant {
            Some(Grant::Denied) => 0,
            None => 1,
            Some(Grant::Conditional(_)) => 2,
            Some(Grant::Allowed) => 3,
        }
    }
}

/// A filesystem's access, as one layer states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FsMode {
    /// `!fs`: not exposed even if the runtime exposes it.
    Denied,
    ReadOnly,
    ReadWrite,
    Create,
}

impl FsMode {
    fn level(mode: Option<&FsMode>) -> u8 {
        match mode {
            Some(FsMode::Denied) => 0,
            None => 1,
            Some(FsMode::ReadOnly) => 2,
            Some(FsMode::ReadWrite) => 3,
            Some(FsMode::Create) => 4,
        }
    }

    fn describe(mode: Option<&FsMode>) -> &'static str {
        match mode {
            Some(FsMode::Denied) => "denied",
            None => "not granted",
            Some(FsMode::ReadOnly) => "read-only",
            Some(FsMode::ReadWrite) => "read-write",
            Some(FsMode::Create) => "read-write, created if missing",
        }
    }
}

/// A D-Bus name's policy: `none` < `see` < `talk` < `own`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BusPolicy {
    None,
    See,
    Talk,
    Own,
}

impl BusPolicy {
    fn parse(text: &str) -> Option<BusPolicy> {
        match text {
            "none" => Some(BusPolicy::None),
            "see" => Some(BusPolicy::See),
            "talk" => Some(BusPolicy::Talk),
            "own" => Some(BusPolicy::Own),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            BusPolicy::None => "none",
            BusPolicy::See => "see",
            BusPolicy::Talk => "talk",
            BusPolicy::Own => "own",
        }
    }

    /// An explicit `none` denies what the runtime may grant; absent does not.
    fn level(policy: Option<&BusPolicy>) -> u8 {
        match policy {
            Some(BusPolicy::None) => 0,
            None => 1,
            Some(BusPolicy::See) => 2,
            Some(BusPolicy::Talk) => 3,
            Some(BusPolicy::Own) => 4,
        }
    }
}

/// Everything a `metadata` grants the sandbox (one layer: the app's or the
/// runtime's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub shared: BTreeMap<String, Grant>,
    pub sockets: BTreeMap<String, Grant>,
    pub devices: BTreeMap<String, Grant>,
    pub features: BTreeMap<String, Grant>,
    pub filesystems: BTreeMap<String, FsMode>,
    pub persistent: BTreeSet<String>,
    pub session_bus: BTreeMap<String, BusPolicy>,
    pub system_bus: BTreeMap<String, BusPolicy>,
    pub accessibility_bus: BTreeMap<String, BusPolicy>,
    /// `[Environment]`; `None`: unset (`unset-environment=`).
    pub environment: BTreeMap<String, Option<String>>,
    /// `[Policy SUBSYSTEM] key=values`, as `SUBSYSTEM.key` → values.
    pub policies: BTreeMap<String, BTreeSet<String>>,
    pub usb_enumerable: BTreeSet<String>,
    pub usb_hidden: BTreeSet<String>,
    /// `[Extension NAME]` groups: extension points, raw keys.
    pub extensions: BTreeMap<String, BTreeMap<String, String>>,
    /// Settings not modelled above, `(group, key)` → raw value.
    pub other: BTreeMap<(String, String), String>,
}

const SESSION_BUS: &str = "Session Bus Policy";
const SYSTEM_BUS: &str = "System Bus Policy";
const A11Y_BUS: &str = "Accessibility Bus Policy";
const CONTEXT: &str = "Context";
const ENVIRONMENT: &str = "Environment";
const USB: &str = "USB Devices";
/// Groups that grant nothing to the sandbox (`[Application]` and
/// `[Runtime]` are checked against the manifest instead).
const INERT_GROUPS: &[&str] = &["Application", "Runtime", "ExtensionOf", "Build"];
const CONTEXT_KEYS: &[&str] = &[
    "shared",
    "sockets",
    "devices",
    "features",
    "filesystems",
    "persistent",
    "unset-environment",
];

/// Parses `metadata` bytes (see the module docs for what is refused).
pub fn parse(bytes: &[u8]) -> Result<Metadata, MetadataError> {
    let file = KeyFile::parse(bytes)?;
    let (kind, group) = match (file.group("Application"), file.group("Runtime")) {
        (Some(_), Some(_)) => return Err(MetadataError::BothKinds),
        (Some(_), None) => (Kind::App, "Application"),
        (None, Some(_)) => (Kind::Runtime, "Runtime"),
        (None, None) => return Err(MetadataError::NoKind),
    };
    let name = file
        .string(group, "name")?
        .ok_or(MetadataError::Missing { group, key: "name" })?;
    let runtime = match kind {
        Kind::App => Some(
            file.string(group, "runtime")?
                .ok_or(MetadataError::Missing {
                    group,
                    key: "runtime",
                })?,
        ),
        Kind::Runtime => None,
    };
    Ok(Metadata {
        kind,
        name,
        runtime,
        permissions: permissions(&file)?,
    })
}

impl Metadata {
    /// Checks that this is the metadata of the release `manifest` describes:
    /// same kind, `name=` the manifest's id, and for apps `runtime=` the
    /// manifest's runtime (`ID/ARCH/BRANCH`).
    pub fn check(&self, manifest: &Manifest) -> Result<(), MetadataError> {
        let mismatch =
            |expected: String, found: String| MetadataError::Mismatch { expected, found };
        if self.kind != manifest.kind {
            return Err(mismatch(
                format!("a {}", manifest.kind.as_str()),
                format!("a {}", self.kind.as_str()),
            ));
        }
        if self.name != manifest.id {
            return Err(mismatch(
                format!("name={}", manifest.id),
                format!("name={}", self.name),
            ));
        }
        if self.runtime != manifest.runtime {
            return Err(mismatch(
                format!(
                    "runtime={}",
                    manifest.runtime.as_deref().unwrap_or("(none)")
                ),
                format!("runtime={}", self.runtime.as_deref().unwrap_or("(none)")),
            ));
        }
        Ok(())
    }
}

fn grants(
    file: &KeyFile,
    key: &str,
    into: &mut BTreeMap<String, Grant>,
) -> Result<(), MetadataError> {
    for item in file.list(CONTEXT, key)?.unwrap_or_default() {
        let tokens: Vec<&str> = item.splitn(3, ':').collect();
        match tokens[..] {
            ["if", name, condition] => {
                let entry = into.entry(name.to_string()).or_insert(Grant::Denied);
                match entry {
                    Grant::Conditional(set) => {
                        set.insert(condition.to_string());
                    }
                    // A plain grant followed by conditionals is Flatpak's
                    // backwards-compatible form: the conditionals win.
                    _ => *entry = Grant::Conditional([condition.to_string()].into()),
                }
            }
            [name] => match name.strip_prefix('!') {
                Some(name) => {
                    into.insert(name.to_string(), Grant::Denied);
                }
                None => {
                    into.insert(name.to_string(), Grant::Allowed);
                }
            },
            _ => return Err(bad(CONTEXT, key, format!("invalid permission {item:?}"))),
        }
    }
    Ok(())
}

/// Normalizes one `filesystems=` item as Flatpak does; `(location, mode)`.
fn filesystem(item: &str) -> Result<(String, FsMode), String> {
    let (negated, rest) = match item.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, item),
    };
    let mut location = String::new();
    let mut chars = rest.chars();
    let mut suffix = None;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(c) = chars.next() {
                    location.push(c);
                }
            }
            ':' => {
                suffix = Some(chars.as_str().to_string());
                break;
            }
            c => location.push(c),
        }
    }
    let mut mode = if negated {
        FsMode::Denied
    } else {
        FsMode::ReadWrite
    };
    match suffix.as_deref() {
        None | Some("") => {}
        Some("ro") if !negated => mode = FsMode::ReadOnly,
        Some("rw") if !negated => mode = FsMode::ReadWrite,
        Some("create") if !negated => mode = FsMode::Create,
        Some("ro" | "rw" | "create") => {}
        Some("reset") if negated && location == "host" => location = "host-reset".into(),
        Some(other) => return Err(format!("unknown filesystem suffix {other:?} in {item:?}")),
    }
    if location == "host-reset" && !negated {
        return Err(format!("{item:?}: host-reset only applies to !host"));
    }
    if location.ends_with("/..") || location.contains("/../") || location == ".." {
        return Err(format!("{item:?} contains \"..\""));
    }
    if location.contains('/') {
        while location.contains("//") {
            location = location.replace("//", "/");
        }
        while location.contains("/./") {
            location = location.replace("/./", "/");
        }
        loop {
            if location.len() > 1 && location.ends_with('/') {
                location.pop();
            } else if location.ends_with("/.") {
                location.truncate(location.len() - 2);
            } else {
                break;
            }
        }
        if location == "/" || location.is_empty() {
            return Err(format!(
                "{item:?}: `/` is not available, Flatpak refuses it"
            ));
        }
    }
    let location = if location == "~" {
        "home".to_string()
    } else if let Some(rest) = location.strip_prefix("home/") {
        format!("~/{rest}")
    } else {
        location
    };
    let special = [
        "home",
        "host",
        "host-etc",
        "host-os",
        "host-reset",
        "host-root",
    ];
    if !(special.contains(&location.as_str())
        || location.starts_with("xdg-")
        || location.starts_with("~/")
        || location.starts_with('/'))
    {
        return Err(format!("unknown filesystem location in {item:?}"));
    }
    Ok((location, mode))
}

fn bus(file: &KeyFile, group: &str) -> Result<BTreeMap<String, BusPolicy>, MetadataError> {
    let mut out = BTreeMap::new();
    for (name, _) in file.group(group).unwrap_or_default() {
        let value = file.string(group, name)?.unwrap_or_default();
        if let Some(policy) = BusPolicy::parse(&value) {
            out.insert(name.clone(), policy);
        } else {
            return Err(bad(group, name, format!("unknown bus policy {value:?}")));
        }
    }
    Ok(out)
}

/// What a parsed keyfile grants.
fn permissions(file: &KeyFile) -> Result<Permissions, MetadataError> {
    let mut p = Permissions::default();
    grants(file, "shared", &mut p.shared)?;
    grants(file, "sockets", &mut p.sockets)?;
    grants(file, "devices", &mut p.devices)?;
    grants(file, "features", &mut p.features)?;
    for item in file.list(CONTEXT, "filesystems")?.unwrap_or_default() {
        let (location, mode) =
            filesystem(&item).map_err(|what| bad(CONTEXT, "filesystems", what))?;
        if location == "host-reset" {
            p.filesystems.insert("host".into(), FsMode::Denied);
        }
        p.filesystems.insert(location, mode);
    }
    p.persistent = file
        .list(CONTEXT, "persistent")?
        .unwrap_or_default()
        .into_iter()
        .collect();
    p.session_bus = bus(file, SESSION_BUS)?;
    p.system_bus = bus(file, SYSTEM_BUS)?;
    p.accessibility_bus = bus(file, A11Y_BUS)?;
    for (key, _) in file.group(ENVIRONMENT).unwrap_or_default() {
        p.environment
            .insert(key.clone(), file.string(ENVIRONMENT, key)?);
    }
    for var in file.list(CONTEXT, "unset-environment")?.unwrap_or_default() {
        p.environment.insert(var, None);
    }
    p.usb_enumerable = file
        .list(USB, "enumerable-devices")?
        .unwrap_or_default()
        .into_iter()
        .collect();
    p.usb_hidden = file
        .list(USB, "hidden-devices")?
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (group, entries) in &file.groups {
        if let Some(subsystem) = group.strip_prefix("Policy ") {
            for (key, _) in entries {
                let values = file.list(group, key)?.unwrap_or_default();
                p.policies
                    .entry(format!("{subsystem}.{key}"))
                    .or_default()
                    .extend(values);
            }
        } else if let Some(name) = group.strip_prefix("Extension ") {
            p.extensions.insert(
                name.to_string(),
                entries.iter().cloned().collect::<BTreeMap<_, _>>(),
            );
        } else if group == CONTEXT {
            for (key, value) in entries {
                if !CONTEXT_KEYS.contains(&key.as_str()) {
                    p.other.insert((group.clone(), key.clone()), value.clone());
                }
            }
        } else if group == USB {
            for (key, value) in entries {
                if key != "enumerable-devices" && key != "hidden-devices" {
                    p.other.insert((group.clone(), key.clone()), value.clone());
                }
            }
        } else if ![SESSION_BUS, SYSTEM_BUS, A11Y_BUS, ENVIRONMENT].contains(&group.as_str())
            && !INERT_GROUPS.contains(&group.as_str())
        {
            for (key, value) in entries {
                p.other.insert((group.clone(), key.clone()), value.clone());
            }
        }
    }
    Ok(p)
}

/// What kind of permission a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Area {
    Shared,
    Socket,
    Device,
    Feature,
    Filesystem,
    Persistent,
    SessionBus,
    SystemBus,
    AccessibilityBus,
    Environment,
    Policy,
    Usb,
    Extension,
    Other,
}

/// One way a new release grants more than the installed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionChange {
    pub area: Area,
    /// What it is about (`host`, `x11`, `org.freedesktop.Flatpak`, …).
    pub name: String,
    /// For people: `filesystem host: not granted → read-write`.
    pub description: String,
}

impl fmt::Display for PermissionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

fn describe_grant(grant: Option<&Grant>) -> String {
    match grant {
        Some(Grant::Denied) => "denied".into(),
        None => "not granted".into(),
        Some(Grant::Conditional(c)) => format!(
            "granted if {}",
            c.iter().cloned().collect::<Vec<_>>().join(" or ")
        ),
        Some(Grant::Allowed) => "granted".into(),
    }
}

fn widened_grants(
    out: &mut Vec<PermissionChange>,
    area: Area,
    label: &str,
    old: &BTreeMap<String, Grant>,
    new: &BTreeMap<String, Grant>,
) {
    for (name, grant) in new.iter().map(|(n, g)| (n, Some(g))).chain(
        old.keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| (n, None)),
    ) {
        let before = old.get(name);
        let wider = match (before, grant) {
            (Some(Grant::Conditional(a)), Some(Grant::Conditional(b))) => !b.is_subset(a),
            _ => Grant::level(grant) > Grant::level(before),
        };
        if wider {
            out.push(PermissionChange {
                area,
                name: name.clone(),
                description: format!(
                    "{label} {name}: {} → {}",
                    describe_grant(before),
                    describe_grant(grant)
                ),
            });
        }
    }
}

fn widened_bus(
    out: &mut Vec<PermissionChange>,
    area: Area,
    label: &str,
    old: &BTreeMap<String, BusPolicy>,
    new: &BTreeMap<String, BusPolicy>,
) {
    let describe = |p: Option<&BusPolicy>| p.map_or("not granted", |p| p.as_str());
    for (name, policy) in new.iter().map(|(n, p)| (n, Some(p))).chain(
        old.keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| (n, None)),
    ) {
        let before = old.get(name);
        if BusPolicy::level(policy) > BusPolicy::level(before) {
            out.push(PermissionChange {
                area,
                name: name.clone(),
                description: format!(
                    "{label} {name}: {} → {}",
                    describe(before),
                    describe(policy)
                ),
            });
        }
    }
}

fn new_items(
    out: &mut Vec<PermissionChange>,
    area: Area,
    label: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) {
    for item in new.difference(old) {
        out.push(PermissionChange {
            area,
            name: item.clone(),
            description: format!("{label} {item}"),
        });
    }
}

/// Every way `new` grants more than `old` (empty: `new` is equal or
/// narrower), in a stable order.
pub fn widened(old: &Permissions, new: &Permissions) -> Vec<PermissionChange> {
    let mut out = Vec::new();
    widened_grants(&mut out, Area::Shared, "share", &old.shared, &new.shared);
    widened_grants(&mut out, Area::Socket, "socket", &old.sockets, &new.sockets);
    widened_grants(&mut out, Area::Device, "device", &old.devices, &new.devices);
    widened_grants(
        &mut out,
        Area::Feature,
        "feature",
        &old.features,
        &new.features,
    );
    for (name, mode) in new.filesystems.iter().map(|(n, m)| (n, Some(m))).chain(
        old.filesystems
            .keys()
            .filter(|n| !new.filesystems.contains_key(*n))
            .map(|n| (n, None)),
    ) {
        let before = old.filesystems.get(name);
        if FsMode::level(mode) > FsMode::level(before) {
            out.push(PermissionChange {
                area: Area::Filesystem,
                name: name.clone(),
                description: format!(
                    "filesystem {name}: {} → {}",
                    FsMode::describe(before),
                    FsMode::describe(mode)
                ),
            });
        }
    }
    new_items(
        &mut out,
        Area::Persistent,
        "new persistent directory",
        &old.persistent,
        &new.persistent,
    );
    widened_bus(
        &mut out,
        Area::SessionBus,
        "session bus name",
        &old.session_bus,
        &new.session_bus,
    );
    widened_bus(
        &mut out,
        Area::SystemBus,
        "system bus name",
        &old.system_bus,
        &new.system_bus,
    );
    widened_bus(
        &mut out,
        Area::AccessibilityBus,
        "accessibility bus name",
        &old.accessibility_bus,
        &new.accessibility_bus,
    );
    let shown = |v: Option<&Option<String>>| match v {
        None => "not set".to_string(),
        Some(None) => "unset".to_string(),
        Some(Some(v)) => format!("{v:?}"),
    };
    for (name, value) in new.environment.iter().map(|(n, v)| (n, Some(v))).chain(
        old.environment
            .keys()
            .filter(|n| !new.environment.contains_key(*n))
            .map(|n| (n, None)),
    ) {
        let before = old.environment.get(name);
        // A new or changed value can change what runs, and so can dropping
        // an unset (the runtime's or the caller's value comes back);
        // unsetting a variable or no longer setting it grants nothing.
        let wider = match value {
            Some(Some(_)) => before != value,
            Some(None) => false,
            None => before == Some(&None),
        };
        if wider {
            out.push(PermissionChange {
                area: Area::Environment,
                name: name.clone(),
                description: format!(
                    "environment variable {name}: {} → {}",
                    shown(before),
                    shown(value)
                ),
            });
        }
    }
    for (key, values) in &new.policies {
        let empty = BTreeSet::new();
        let before = old.policies.get(key).unwrap_or(&empty);
        for value in values.difference(before).filter(|v| !v.starts_with('!')) {
            out.push(PermissionChange {
                area: Area::Policy,
                name: key.clone(),
                description: format!("policy {key}: new value {value}"),
            });
        }
    }
    for (key, values) in &old.policies {
        for value in values.iter().filter(|v| v.starts_with('!')) {
            if !new.policies.get(key).is_some_and(|n| n.contains(value)) {
                out.push(PermissionChange {
                    area: Area::Policy,
                    name: key.clone(),
                    description: format!("policy {key}: no longer {value}"),
                });
            }
        }
    }
    new_items(
        &mut out,
        Area::Usb,
        "new USB device",
        &old.usb_enumerable,
        &new.usb_enumerable,
    );
    for gone in old.usb_hidden.difference(&new.usb_hidden) {
        out.push(PermissionChange {
            area: Area::Usb,
            name: gone.clone(),
            description: format!("USB device no longer hidden: {gone}"),
        });
    }
    for (name, keys) in &new.extensions {
        if old.extensions.get(name) != Some(keys) {
            out.push(PermissionChange {
                area: Area::Extension,
                name: name.clone(),
                description: format!(
                    "{} extension point {name}",
                    if old.extensions.contains_key(name) {
                        "changed"
                    } else {
                        "new"
                    }
                ),
            });
        }
    }
    for ((group, key), value) in &new.other {
        let id = (group.clone(), key.clone());
        if old.other.get(&id) != Some(value) {
            out.push(PermissionChange {
                area: Area::Other,
                name: format!("{group}/{key}"),
                description: format!("new or changed setting [{group}] {key}={value}"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\nsdk=org.test.Platform/x86_64/master\ncommand=hello.sh\n";

    fn perms(extra: &str) -> Permissions {
        parse(format!("{APP}{extra}").as_bytes())
            .unwrap()
            .permissions
    }

    fn changes(old: &str, new: &str) -> Vec<String> {
        widened(&perms(old), &perms(new))
            .into_iter()
            .map(|c| c.description)
            .collect()
    }

    fn manifest() -> Manifest {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "id": "org.test.Hello", "kind": "app", "arch": "x86_64",
            "branch": "master", "version": "1",
            "runtime": "org.test.Platform/x86_64/master", "published": 0,
            "import": {"kubo_version": "0.43.1", "chunker": "buzhash", "cid_version": 1,
                       "hash": "sha2-256", "raw_leaves": true, "inline_limit": 32},
            "deploy": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            "entries": [], "totals": {"bytes": 0, "files": 0, "entries": 0, "blocks": 0, "dag_bytes": 0}
        }))
        .unwrap()
    }

    #[test]
    fn a_real_metadata_parses() {
        let m = parse(
            format!(
                "{APP}\n# comment\n[Context]\nshared=network;ipc;\nsockets=x11;wayland;!fallback-x11;\n\
                 filesystems=xdg-download:ro;~/Music;!home;\n\n[Session Bus Policy]\norg.freedesktop.Notifications=talk\n\n\
                 [Environment]\nGREETING=hello\\sworld\n"
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.kind, Kind::App);
        assert_eq!(m.name, "org.test.Hello");
        assert_eq!(
            m.runtime.as_deref(),
            Some("org.test.Platform/x86_64/master")
        );
        let p = &m.permissions;
        assert_eq!(p.shared.get("network"), Some(&Grant::Allowed));
        assert_eq!(p.sockets.get("fallback-x11"), Some(&Grant::Denied));
        assert_eq!(p.filesystems.get("xdg-download"), Some(&FsMode::ReadOnly));
        assert_eq!(p.filesystems.get("~/Music"), Some(&FsMode::ReadWrite));
        assert_eq!(p.filesystems.get("home"), Some(&FsMode::Denied));
        assert_eq!(
            p.session_bus.get("org.freedesktop.Notifications"),
            Some(&BusPolicy::Talk)
        );
        assert_eq!(
            p.environment.get("GREETING"),
            Some(&Some("hello world".into()))
        );
        m.check(&manifest()).unwrap();
        let rt =
            parse(b"[Runtime]\nname=org.test.Platform\nruntime=org.test.Platform/x86_64/master\n")
                .unwrap();
        assert_eq!((rt.kind, rt.runtime), (Kind::Runtime, None));
    }

    #[test]
    fn hostile_syntax_is_refused() {
        let refused = |text: &[u8]| {
            parse(text).expect_err(&format!(
                "{:?} must be refused",
                String::from_utf8_lossy(text)
            ))
        };
        assert_eq!(
            refused(&vec![b'#'; MAX_SIZE + 1]),
            MetadataError::TooLarge(MAX_SIZE + 1)
        );
        assert_eq!(
            refused(b"[Application]\nname=\xff\n"),
            MetadataError::NotUtf8
        );
        for text in [
            // Duplicate keys and groups: GKeyFile would merge or override.
            format!("{APP}name=org.test.Other\n"),
            format!("{APP}[Context]\nshared=network\n[Context]\nfilesystems=host\n"),
            format!("{APP}[Context]\nfilesystems=home\nfilesystems=host\n"),
            // NUL, CR, tab and other control characters.
            format!("{APP}[Context]\nfilesystems=home\0host\n"),
            format!("{APP}[Context]\nfilesystems=home\r\n"),
            format!("{APP}[Context]\n\tfilesystems=host\n"),
            format!("{APP}[Context]\nfilesystems=home\x1b[2J\n"),
            // Localized keys, stray lines, keys before any group.
            format!("{APP}[Context]\nfilesystems[de]=host\n"),
            format!("{APP}[Context]\nfilesystems host\n"),
            format!("filesystems=host\n{APP}"),
            format!("{APP}[Context\n"),
        ] {
            assert!(
                matches!(refused(text.as_bytes()), MetadataError::Syntax { .. }),
                "{text:?}"
            );
        }
        for text in [
            format!("{APP}[Context]\nfilesystems=host\\n\n"),
            format!("{APP}[Context]\nfilesystems=host\\x\n"),
            format!("{APP}[Context]\nfilesystems=host:reset\n"),
            format!("{APP}[Context]\nfilesystems=/\n"),
            format!("{APP}[Context]\nfilesystems=~/../../etc\n"),
            format!("{APP}[Context]\nfilesystems=somewhere\n"),
            format!("{APP}[Session Bus Policy]\norg.freedesktop.Flatpak=rule\n"),
            format!("{APP}[Context]\nsockets=if:x11\n"),
        ] {
            assert!(
                matches!(refused(text.as_bytes()), MetadataError::BadValue { .. }),
                "{text:?}"
            );
        }
        assert_eq!(
            refused(b"[Context]\nshared=network\n"),
            MetadataError::NoKind
        );
        assert_eq!(
            refused(format!("{APP}[Runtime]\nname=org.test.Hello\n").as_bytes()),
            MetadataError::BothKinds
        );
        assert!(matches!(
            refused(b"[Application]\nname=org.test.Hello\n"),
            MetadataError::Missing { key: "runtime", .. }
        ));
    }

    #[test]
    fn name_and_runtime_must_match_the_manifest() {
        let m = manifest();
        let other = parse(APP.replace("org.test.Hello", "org.test.Other").as_bytes()).unwrap();
        assert!(
            matches!(other.check(&m), Err(MetadataError::Mismatch { ref found, .. }) if found == "name=org.test.Other")
        );
        let runtime = parse(
            APP.replace("runtime=org.test.Platform", "runtime=org.evil.Platform")
                .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            runtime.check(&m),
            Err(MetadataError::Mismatch { .. })
        ));
        let branch = parse(
            APP.replace("x86_64/master\nsdk", "x86_64/beta\nsdk")
                .as_bytes(),
        )
        .unwrap();
        assert!(branch.check(&m).is_err());
        let rt = parse(b"[Runtime]\nname=org.test.Hello\n").unwrap();
        assert!(rt.check(&m).is_err(), "a runtime's metadata for an app");
    }

    #[test]
    fn filesystems_follow_flatpak() {
        let p = perms("[Context]\nfilesystems=~;home/Documents/;/opt//x/./y/;!host:reset;xdg-config/app:create;/a\\\\:b:ro\n");
        assert_eq!(p.filesystems.get("home"), Some(&FsMode::ReadWrite));
        assert_eq!(p.filesystems.get("~/Documents"), Some(&FsMode::ReadWrite));
        assert_eq!(p.filesystems.get("/a:b"), Some(&FsMode::ReadOnly));
        assert_eq!(p.filesystems.get("/opt/x/y"), Some(&FsMode::ReadWrite));
        assert_eq!(p.filesystems.get("host"), Some(&FsMode::Denied));
        assert_eq!(p.filesystems.get("host-reset"), Some(&FsMode::Denied));
        assert_eq!(p.filesystems.get("xdg-config/app"), Some(&FsMode::Create));
    }

    #[test]
    fn every_kind_of_widening_is_reported() {
        for (old, new, expected) in [
            (
                "",
                "[Context]\nfilesystems=host\n",
                "filesystem host: not granted → read-write",
            ),
            (
                "[Context]\nfilesystems=home:ro\n",
                "[Context]\nfilesystems=home\n",
                "filesystem home: read-only → read-write",
            ),
            (
                "[Context]\nfilesystems=~/x:rw\n",
                "[Context]\nfilesystems=~/x:create\n",
                "filesystem ~/x: read-write → read-write, created if missing",
            ),
            (
                "[Context]\nfilesystems=!home\n",
                "",
                "filesystem home: denied → not granted",
            ),
            (
                "",
                "[Context]\nsockets=x11\n",
                "socket x11: not granted → granted",
            ),
            (
                "[Context]\nsockets=if:x11:!has-wayland\n",
                "[Context]\nsockets=x11\n",
                "socket x11: granted if !has-wayland → granted",
            ),
            (
                "[Context]\nsockets=if:x11:!has-wayland\n",
                "[Context]\nsockets=if:x11:true\n",
                "socket x11: granted if !has-wayland → granted if true",
            ),
            (
                "[Context]\nsockets=!x11\n",
                "",
                "socket x11: denied → not granted",
            ),
            (
                "",
                "[Context]\ndevices=all\n",
                "device all: not granted → granted",
            ),
            (
                "",
                "[Context]\nshared=network\n",
                "share network: not granted → granted",
            ),
            (
                "",
                "[Context]\nfeatures=devel\n",
                "feature devel: not granted → granted",
            ),
            (
                "",
                "[Context]\npersistent=.ssh\n",
                "new persistent directory .ssh",
            ),
            (
                "",
                "[Session Bus Policy]\norg.freedesktop.Flatpak=talk\n",
                "session bus name org.freedesktop.Flatpak: not granted → talk",
            ),
            (
                "[Session Bus Policy]\norg.a.B=see\n",
                "[Session Bus Policy]\norg.a.B=talk\n",
                "session bus name org.a.B: see → talk",
            ),
            (
                "[Session Bus Policy]\norg.a.B=talk\n",
                "[Session Bus Policy]\norg.a.B=own\n",
                "session bus name org.a.B: talk → own",
            ),
            (
                "[Session Bus Policy]\norg.a.B=none\n",
                "",
                "session bus name org.a.B: none → not granted",
            ),
            (
                "",
                "[System Bus Policy]\norg.freedesktop.login1=talk\n",
                "system bus name org.freedesktop.login1: not granted → talk",
            ),
            (
                "",
                "[Environment]\nLD_PRELOAD=/app/x.so\n",
                "environment variable LD_PRELOAD: not set → \"/app/x.so\"",
            ),
            (
                "[Environment]\nA=1\n",
                "[Environment]\nA=2\n",
                "environment variable A: \"1\" → \"2\"",
            ),
            (
                "[Context]\nunset-environment=A\n",
                "",
                "environment variable A: unset → not set",
            ),
            (
                "",
                "[Policy org.gnome.Hello]\nrights=admin\n",
                "policy org.gnome.Hello.rights: new value admin",
            ),
            (
                "",
                "[USB Devices]\nenumerable-devices=all\n",
                "new USB device all",
            ),
            (
                "[USB Devices]\nhidden-devices=vnd:1234\n",
                "",
                "USB device no longer hidden: vnd:1234",
            ),
            (
                "",
                "[Extension org.test.Hello.Plugin]\ndirectory=plugins\n",
                "new extension point org.test.Hello.Plugin",
            ),
            (
                "",
                "[X-DConf]\npaths=/org/gnome/\n",
                "new or changed setting [X-DConf] paths=/org/gnome/",
            ),
            (
                "",
                "[Context]\nfuture-key=everything\n",
                "new or changed setting [Context] future-key=everything",
            ),
        ] {
            assert_eq!(changes(old, new), [expected], "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn equal_or_narrower_is_not_reported() {
        let wide = "[Context]\nshared=network;ipc;\nsockets=x11;wayland;\ndevices=all;\nfeatures=devel;\n\
                    filesystems=host;home:create;\npersistent=.x;\n[Session Bus Policy]\norg.a.B=own\n\
                    [System Bus Policy]\norg.c.D=talk\n[Environment]\nA=1\n[Policy x]\ny=z\n\
                    [USB Devices]\nenumerable-devices=all\n";
        assert_eq!(changes(wide, wide), Vec::<String>::new());
        for narrow in [
            "",
            "[Context]\nshared=network;\nsockets=!x11;\nfilesystems=host:ro;!home;\n",
            "[Session Bus Policy]\norg.a.B=talk\n[System Bus Policy]\norg.c.D=see\n",
            "[Context]\nsockets=if:x11:!has-wayland\n",
            "[Context]\nunset-environment=A\n[Environment]\n",
        ] {
            assert_eq!(changes(wide, narrow), Vec::<String>::new(), "{narrow:?}");
        }
        // Unsetting a variable that was not set grants nothing.
        assert_eq!(
            changes("", "[Context]\nunset-environment=B\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn lists_and_escapes_follow_gkeyfile() {
        let p = perms("[Context]\nfilesystems=/a\\;b;;/c;\n");
        assert!(p.filesystems.contains_key("/a;b"), "{p:?}");
        assert!(p.filesystems.contains_key("/c"));
        assert_eq!(p.filesystems.len(), 2);
        // A later item of the same list wins, as in Flatpak's hash table.
        let p = perms("[Context]\nfilesystems=!host;host\nsockets=x11;!x11\n");
        assert_eq!(p.filesystems.get("host"), Some(&FsMode::ReadWrite));
        assert_eq!(p.sockets.get("x11"), Some(&Grant::Denied));
    }
}

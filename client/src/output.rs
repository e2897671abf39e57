//! Everything `flatipfsctl` prints: text for people, JSON with `--json`.
//!
//! With `--json`, stdout carries exactly one JSON document per command,
//! errors included, so scripts never parse text. Every line printed passes
//! through [`displayable`] (the `println!`/`eprintln!` of this crate do it).

use std::borrow::Cow;
use std::collections::HashMap;

use flatipfs_dbus::KuboStatus;
use serde_json::json;
use zbus::zvariant::OwnedValue;

use crate::exit::Failure;
use crate::jobs;

/// What replaces a character that must not reach a terminal.
pub const REPLACEMENT: char = '\u{fffd}';

/// `text` made safe to show on a terminal: control characters (C0 but
/// newline and tab, DEL, C1: what terminal escape sequences are made of)
/// and bidirectional overrides are replaced by [`REPLACEMENT`].
pub fn displayable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if unsafe_char(c) { REPLACEMENT } else { c })
            .collect(),
    )
}

/// `flatipfsctl status`.
pub fn status(
    json: bool,
    version: &str,
    features: &[String],
    kubo: &KuboStatus,
    remotes: &[flatipfs_dbus::proxy::RemoteEntry],
    mirrors: &[flatipfs_dbus::proxy::MirrorEntry],
) {
    // Remotes whose store index record is expired or about to expire.
    let warnings: Vec<(String, String)> = remotes
        .iter()
        .filter_map(|(name, _, d)| {
            let warning = crate::jobs::text(d, "RecordWarning");
            (!warning.is_empty()).then(|| (name.clone(), warning))
        })
        .collect();
    if json {
        let document = json!({
            "daemon": { "version": version, "features": features },
            "warnings": warnings
                .iter()
                .map(|(remote, message)| json!({ "remote": remote, "message": message }))
                .collect::<Vec<_>>(),
            "kubo": {
                "reachable": kubo.reachable,
                "usable": kubo.usable(),
                "version": kubo.version,
                "peers": kubo.peers,
                "api": kubo.api,
                "embedded": kubo.embedded,
                "error": kubo.error,
            },
            "mirrors": mirrors.iter().map(crate::mirrors::mirror_json).collect::<Vec<_>>(),
        });
        println!("{document}");
        return;
    }
    println!("flatipfsd {version}");
    println!("Features: {}", features.join(", "));
    let node = if kubo.embedded {
        "embedded node"
    } else {
        "node"
    };
    // The daemon shows the address of a configured node only.
    let at = if kubo.api.is_empty() {
        String::new()
    } else {
        format!(" at {}", kubo.api)
    };
    if kubo.usable() {
        println!(
            "Kubo:     {node} {}{at}, {} peer{}",
            kubo.version,
            kubo.peers,
            if kubo.peers == 1 { "" } else { "s" }
        );
    } else {
        println!("Kubo:     {node}{at} not usable: {}", kubo.error);
    }
    for mirror in mirrors {
        println!("Mirror:   {}", crate::mirrors::mirror_line(mirror));
    }
    for (remote, message) in &warnings {
        println!(
            "Warning:  remote {}: {}",
            displayable(remote),
            displayable(message)
        );
    }
}

/// `flatipfsctl remote create`.
pub fn remote_created(json: bool, name: &str, ipns: &str) {
    if json {
        println!(
            "{}",
            json!({ "remote": name, "name": format!("/ipns/{ipns}") })
        );
    } else {
        println!("remote {name} created: /ipns/{ipns}");
        println!("Back up its key (flatipfsd's Kubo keystore, key flatipfs-remote-{name}): see docs/publishing.md");
    }
}

/// `flatipfsctl remote list`.
pub fn remotes(json: bool, remotes: &[flatipfs_dbus::proxy::RemoteEntry]) {
    let publishing = |d: &HashMap<String, OwnedValue>| {
        d.get("Publishing")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    if json {
        let list: Vec<_> = remotes
            .iter()
            .map(|(name, ipns, d)| {
                let mut entry = json!({ "name": name, "address": format!("/ipns/{ipns}"), "publishing": publishing(d) });
                for (key, field) in [
                    ("RecordExpires", "record_expires"),
                    ("HighestSequence", "highest_sequence"),
                    ("LastSeen", "last_seen"),
                ] {
                    if d.contains_key(key) {
                        entry[field] = json!(crate::jobs::number(d, key));
                    }
                }
                let warning = crate::jobs::text(d, "RecordWarning");
                if !warning.is_empty() {
                    entry["record_warning"] = json!(warning);
                }
                entry
            })
            .collect();
        println!("{}", json!({ "remotes": list }));
        return;
    }
    if remotes.is_empty() {
        println!("no remotes; add one with `flatipfsctl remote add NAME /ipns/…`");
    }
    for (name, ipns, d) in remotes {
        let kind = if publishing(d) {
            "publishing"
        } else {
            "installing from"
        };
        println!("{name}\t/ipns/{ipns}\t{kind}");
    }
}

/// `flatipfsctl publish`.
pub fn published(json: bool, details: &HashMap<String, OwnedValue>) {
    let t = |k: &str| jobs::text(details, k);
    let n = |k: &str| jobs::number(details, k);
    let warnings: Vec<String> = t("Warnings").lines().map(String::from).collect();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if json {
        let document = json!({
            "app": t("AppId"),
            "version": t("Version"),
            "release": t("Release"),
            "deploy": t("Deploy"),
            "index": format!("/ipns/{}", t("IndexName")),
            "sequence": n("Sequence"),
            "previous": t("Previous"),
            "release_bytes": n("ReleaseBytes"),
            "shared_bytes": n("SharedBytes"),
            "new_bytes": n("NewBytes"),
            "encodings": {
                "pack_pieces": n("PackPieces"),
                "pack_bytes": n("PackBytes"),
                "deltas": n("Deltas"),
                "delta_bytes": n("DeltaBytes"),
                "delta_target_bytes": n("DeltaTargetBytes"),
                "seconds": n("EncodeMilliseconds") as f64 / 1000.0,
            },
            "warnings": warnings,
        });
        println!("{document}");
        return;
    }
    println!("published {} {}", t("AppId"), t("Version"));
    println!("release:  /ipfs/{}", t("Release"));
    println!(
        "index:    /ipns/{} (sequence {})",
        t("IndexName"),
        n("Sequence")
    );
    if t("Previous").is_empty() {
        println!("size:     {} bytes (first release)", n("ReleaseBytes"));
    } else {
        println!(
            "size:     {} bytes; shared with the previous release: {} bytes; new: {} bytes",
            n("ReleaseBytes"),
            n("SharedBytes"),
            n("NewBytes")
        );
    }
    println!(
        "pack:     {} bytes in {} pieces; deltas: {} bytes for {} files of {} bytes; made in {:.1} s",
        n("PackBytes"),
        n("PackPieces"),
        n("DeltaBytes"),
        n("Deltas"),
        n("DeltaTargetBytes"),
        n("EncodeMilliseconds") as f64 / 1000.0
    );
}

/// `flatipfsctl jobs`.
pub fn jobs(json: bool, jobs: &[jobs::Described]) {
    if json {
        println!("{}", json!({ "jobs": jobs }));
        return;
    }
    if jobs.is_empty() {
        println!("no jobs");
    }
    for j in jobs {
        let state = if j.result.is_empty() {
            format!("{} {:.0}%", j.state, j.progress * 100.0)
        } else {
            j.result.clone()
        };
        println!(
            "{}\t{}\t{}\t{}\t{}",
            j.id,
            j.kind,
            if j.app.is_empty() { "-" } else { &j.app },
            state,
            j.status
        );
    }
}

/// A mutating command that finished.
pub fn done(json: bool, what: &str) {
    if json {
        println!("{}", json!({ "result": "done", "message": what }));
    } else {
        println!("{what}");
    }
}

/// A failed command: stdout with `--json`, stderr otherwise.
pub fn failure(json: bool, failure: &Failure) {
    if json {
        let document = json!({
            "error": {
                "name": failure.name,
                "message": failure.message,
                "hint": failure.hint,
                "exit_code": failure.code,
            }
        });
        println!("{document}");
        return;
    }
    eprintln!("flatipfsctl: {}", failure.message);
    if let Some(hint) = &failure.hint {
        eprintln!("hint: {hint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        let shown = displayable("1.0\u{1b}]0;pwned\u{7}");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown:?}"
        );
        assert_eq!(shown, "1.0\u{fffd}]0;pwned\u{fffd}");
        for evil in ["\u{9b}2J", "a\rb", "\u{7f}", "\u{202e}txt.exe", "\u{0}"] {
            let shown = displayable(evil);
            assert!(shown.contains(REPLACEMENT), "{evil:?} -> {shown:?}");
            assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        }
    }

    #[test]
    fn plain_text_lines_and_columns_are_kept() {
        let text = "org.test.Hello\t1.0 ✓\nsecond line";
        assert!(matches!(displayable(text), Cow::Borrowed(t) if t == text));
    }
}

//! Everything `flatipfsctl` prints: text for people, JSON with `--json`.
//!
//! With `--json`, stdout carries exactly one JSON document per command,
//! errors included, so scripts never parse text.

use flatipfs_dbus::KuboStatus;
use serde_json::json;

use crate::exit::Failure;

/// `flatipfsctl status`.
pub fn status(json: bool, version: &str, features: &[String], kubo: &KuboStatus) {
    if json {
        let document = json!({
            "daemon": { "version": version, "features": features },
            "kubo": {
                "reachable": kubo.reachable,
                "usable": kubo.usable(),
                "version": kubo.version,
                "peers": kubo.peers,
                "api": kubo.api,
                "embedded": kubo.embedded,
                "error": kubo.error,
            },
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
    if kubo.usable() {
        println!(
            "Kubo:     {node} {} at {}, {} peer{}",
            kubo.version,
            kubo.api,
            kubo.peers,
            if kubo.peers == 1 { "" } else { "s" }
        );
    } else {
        let at = if kubo.api.is_empty() {
            String::new()
        } else {
            format!(" at {}", kubo.api)
        };
        println!("Kubo:     {node}{at} not usable: {}", kubo.error);
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

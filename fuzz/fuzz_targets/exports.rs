//! Any bytes as a file under a release's `export/`: the first line is its
//! path, the rest its content. Classifying and rewriting never panic, and
//! what is written instead is safe: every `Exec=` of a desktop or D-Bus
//! service file runs `flatpak run` of the app, a service file names itself
//! and keeps nothing else, a MIME package keeps no magic, and a rewritten
//! file is accepted again unchanged in what it runs.

#![no_main]

use flatipfs_format::exports::{self, ExportContext, ExportKind, FLATPAK_BINARY};
use libfuzzer_sys::fuzz_target;

const APP: &str = "org.test.Hello";

fn execs(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.strip_prefix("Exec=").map(String::from))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let owned = vec![
        "org.mpris.MediaPlayer2.hello.*".to_string(),
        "org.freedesktop.Notifications".to_string(),
    ];
    let ctx = ExportContext {
        app_id: APP,
        arch: "x86_64",
        branch: "master",
        own_names: &owned,
    };
    let (path, content) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let Ok(kind) = exports::classify(&ctx, path, 0o644) else {
        return;
    };
    assert!(!path.split('/').any(|c| c == ".." || c.is_empty()));
    let Ok(out) = exports::rewrite(&ctx, path, kind, content) else {
        return;
    };
    assert_eq!(out.path, path);
    assert!(!out.executable);
    let run = format!("{FLATPAK_BINARY} run ");
    match kind {
        ExportKind::Desktop | ExportKind::KrunnerPlugin | ExportKind::DbusService => {
            for exec in execs(&out.data) {
                assert!(exec.starts_with(&run), "Exec={exec}");
                assert!(
                    exec.split(' ').any(|w| w == APP),
                    "Exec={exec} does not run {APP}"
                );
            }
            if kind == ExportKind::DbusService {
                let text = String::from_utf8(out.data.clone()).expect("UTF-8");
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.len(), 3, "{text}");
                assert_eq!(lines[0], "[D-BUS Service]");
                let name = path.rsplit('/').next().unwrap().trim_end_matches(".service");
                assert_eq!(lines[1], format!("Name={name}"));
            }
            // What was written is accepted again and runs the same.
            let again = exports::rewrite(&ctx, path, kind, &out.data)
                .expect("a rewritten file is accepted again");
            assert_eq!(execs(&again.data), execs(&out.data));
        }
        ExportKind::MimePackage => {
            let text = String::from_utf8_lossy(&out.data);
            assert!(!text.contains("<magic"), "{text}");
            exports::rewrite(&ctx, path, kind, &out.data)
                .expect("a rebuilt MIME package is accepted again");
        }
        ExportKind::SearchProvider => {
            assert!(String::from_utf8_lossy(&out.data).contains("DefaultDisabled=true"));
        }
        ExportKind::Metainfo | ExportKind::Icon(_) => assert_eq!(out.data, content),
    }
});

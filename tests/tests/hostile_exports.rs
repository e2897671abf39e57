//! Hostile exports (issue 9, part of the malicious-release suite): releases
//! whose `export/` tries to put files on the host. Each is published from a
//! deploy directory the test builds by hand (the fixture app's deploy with
//! hostile files added) and installed by another stack's daemon, which
//! must export only what Flatpak itself exports, rewritten, and never
//! replace another app's exports.

use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, flatpak, last_json, ok_json, run_hello};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::raw_metadata::release_with_metadata;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::Stack;

const LIMIT: Duration = Duration::from_secs(90);
/// Export files over 1 MiB are refused on the client.
const CLIENT_CONFIG: &str =
    "\n[updates]\npolicy = \"none\"\n\n[limits]\nmax_export_file_size = 1048576\n";

const HELLO_DESKTOP: &str = "share/applications/org.test.Hello.desktop";
const EXTRA_DESKTOP: &str = "share/applications/org.test.Hello.Extra.desktop";
const SHELL_DESKTOP: &str = "share/applications/org.test.Hello.Shell.desktop";
const ICON: &str = "share/icons/hicolor/scalable/apps/org.test.Hello.svg";
const SETUID_ICON: &str = "share/icons/hicolor/scalable/apps/org.test.Hello.Setuid.svg";
const MARKER: &str = "/tmp/flatipfs-hostile-export-ran";

/// A copy of the fixture app's deploy directory (post-deploy form, as a
/// publisher has it), for the test to edit; removed with the value.
struct Deploy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Deploy {
    fn of_hello(pair: &Pair) -> Deploy {
        let tmp = tempfile::tempdir().unwrap();
        let original = deploy_dir(
            &pair.apps.join("repo-v1"),
            &pair.app_ref,
            &tmp.path().join("flatpak"),
        )
        .unwrap();
        let dir = tmp.path().join("deploy");
        std::fs::create_dir(&dir).unwrap();
        for part in ["metadata", "export", "files"] {
            run_ok(
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg(original.join(part))
                    .arg(&dir),
            )
            .unwrap();
        }
        Deploy { _tmp: tmp, dir }
    }

    /// Writes `export/REL` with `text` and `mode`.
    fn export(&self, rel: &str, text: &str, mode: u32) -> &Self {
        let path = self.dir.join("export").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Makes it the deploy of app `id`: metadata renamed, exports replaced
    /// by one desktop file of that name.
    fn rename(&self, id: &str) {
        let metadata = std::fs::read_to_string(self.dir.join("metadata")).unwrap();
        let metadata = metadata.replace("name=org.test.Hello\n", &format!("name={id}\n"));
        assert!(metadata.contains(&format!("name={id}\n")), "{metadata}");
        std::fs::write(self.dir.join("metadata"), metadata).unwrap();
        std::fs::remove_dir_all(self.dir.join("export")).unwrap();
        self.export(
            &format!("share/applications/{id}.desktop"),
            &format!("[Desktop Entry]\nType=Application\nName={id}\nExec=hello.sh\n"),
            0o644,
        );
    }

    /// Publishes it as `version` to remote `main`; its release root.
    fn publish(&self, pair: &Pair, version: &str) -> String {
        let out = ok_json(
            &pair.publisher,
            &[
                "publish",
                "--json",
                "--remote",
                "main",
                "--version",
                version,
                self.dir.to_str().unwrap(),
            ],
        );
        pair.wait_until_client_resolves_index();
        out["release"].as_str().unwrap().to_string()
    }
}

/// Every entry below `dir` (relative), never following links.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            out.insert(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The files (and links) below `dir`, without the directories.
fn leaves(dir: &Path) -> BTreeSet<String> {
    tree(dir)
        .into_iter()
        .filter(|p| !dir.join(p).symlink_metadata().unwrap().is_dir())
        .filter(|p| !written_by_triggers(p))
        .collect()
}

/// What Flatpak's deploy triggers, run by the daemon, write into the
/// exports farm (caches of the desktop database, icon theme and MIME
/// database; `daemon/src/triggers.rs`), which are not exports.
fn written_by_triggers(path: &str) -> bool {
    path.ends_with("/mimeinfo.cache")
        || path.ends_with("/icon-theme.cache")
        || path.ends_with("/index.theme")
        || (path.starts_with("share/mime/") && !path.starts_with("share/mime/packages/"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The active deploy's `export/` of `id` in `stack`'s installation.
fn active_export(stack: &Stack, id: &str) -> PathBuf {
    let arch =
        std::fs::read_link(stack.installation().join("app").join(id).join("current")).unwrap();
    stack
        .installation()
        .join("app")
        .join(id)
        .join(arch)
        .join("active/export")
}

/// `Exec=` of the `[Desktop Entry]` group.
fn exec_line(desktop: &str) -> String {
    desktop
        .lines()
        .skip_while(|l| *l != "[Desktop Entry]")
        .find_map(|l| l.strip_prefix("Exec="))
        .unwrap_or_else(|| panic!("no Exec= in {desktop}"))
        .to_string()
}

fn arch(pair: &Pair) -> String {
    pair.app_ref.split('/').nth(2).unwrap().to_string()
}

#[test]
fn hostile_exports_are_refused_rewritten_and_never_replace_another_apps() {
    let pair = Pair::up(CLIENT_CONFIG);
    let client = &pair.client;
    let arch = arch(&pair);
    let _ = std::fs::remove_file(MARKER);
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);

    // Another app is installed first: org.test.Hello.Extra, whose desktop
    // file org.test.Hello.Extra.desktop carries org.test.Hello's prefix too.
    let extra = Deploy::of_hello(&pair);
    extra.rename("org.test.Hello.Extra");
    extra.publish(&pair, "1");
    ok_json(
        client,
        &["install", "--json", "main", "org.test.Hello.Extra"],
    );
    let exports = client.installation().join("exports");
    let extra_before = std::fs::read_to_string(exports.join(EXTRA_DESKTOP)).unwrap();
    let extra_link = std::fs::read_link(exports.join(EXTRA_DESKTOP)).unwrap();
    assert!(
        extra_before.contains("X-Flatpak=org.test.Hello.Extra"),
        "{extra_before}"
    );

    // The hostile release of org.test.Hello.
    let hostile = Deploy::of_hello(&pair);
    let sh = format!("[Desktop Entry]\nType=Application\nName=Sh\nExec=/bin/sh -c \"touch {MARKER}\"\nTryExec=/bin/sh\n");
    hostile
        .export(SHELL_DESKTOP, &sh, 0o644)
        .export(
            "share/applications/org.other.App.desktop",
            &format!("[Desktop Entry]\nType=Application\nName=Other\nExec=/bin/sh -c 'touch {MARKER}'\n"),
            0o644,
        )
        .export(
            EXTRA_DESKTOP,
            &format!("[Desktop Entry]\nType=Application\nName=Extra\nExec=/bin/sh -c 'touch {MARKER}'\n"),
            0o644,
        )
        .export(
            "share/dbus-1/services/org.test.Hello.service",
            &format!("[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/bin/sh -c 'touch {MARKER}'\n"),
            0o644,
        )
        .export(
            "share/dbus-1/services/org.freedesktop.Notifications.service",
            &format!("[D-BUS Service]\nName=org.freedesktop.Notifications\nExec=/bin/sh -c 'touch {MARKER}'\n"),
            0o644,
        )
        .export(
            "share/dbus-1/system-services/org.test.Hello.service",
            &format!("[D-BUS Service]\nName=org.test.Hello\nExec=/bin/sh -c 'touch {MARKER}'\nUser=root\n"),
            0o644,
        )
        .export("bin/evil", &format!("#!/bin/sh\ntouch {MARKER}\n"), 0o755)
        .export("etc/profile.d/org.test.Hello.sh", &format!("touch {MARKER}\n"), 0o644)
        .export(
            SETUID_ICON,
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            0o4755,
        )
        .export(
            "share/applications/org.test.Hello.Runs.desktop",
            "[Desktop Entry]\nType=Application\nName=Runs\nExec=/usr/bin/flatpak run --command=sh org.other.App\n",
            0o644,
        )
        .export(
            "share/icons/hicolor/48x48/apps/org.test.Hello.png",
            "#!/bin/sh\nnot a png\n",
            0o644,
        );
    symlink(
        "/etc/shadow",
        hostile
            .dir
            .join("export/share/applications/org.test.Hello.Shadow.desktop"),
    )
    .unwrap();
    hostile.publish(&pair, "1");
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["state"], "installed", "{installed}");

    // Each hostile file is reported refused, with its reason.
    let refused: Vec<String> = installed["refused_exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for (path, reason) in [
        (
            "share/applications/org.other.App.desktop",
            "not named for the app",
        ),
        (
            "share/dbus-1/services/org.test.Hello.service",
            "Name=org.freedesktop.Notifications",
        ),
        (
            "share/dbus-1/services/org.freedesktop.Notifications.service",
            "not named for the app",
        ),
        (
            "share/dbus-1/system-services/org.test.Hello.service",
            "not a directory Flatpak exports",
        ),
        ("bin/evil", "bin/"),
        (
            "etc/profile.d/org.test.Hello.sh",
            "not a directory Flatpak exports",
        ),
        (
            "share/icons/hicolor/48x48/apps/org.test.Hello.png",
            "not a PNG",
        ),
        (
            "share/applications/org.test.Hello.Shadow.desktop",
            "symlink",
        ),
        (
            "share/applications/org.test.Hello.Runs.desktop",
            "runs another app",
        ),
    ] {
        let line = format!("export/{path}: ");
        assert!(
            refused
                .iter()
                .any(|r| r.starts_with(&line) && r.contains(reason)),
            "{path} is not refused for {reason:?}: {refused:#?}"
        );
    }

    // The deploy keeps exactly what passed; the farm links exactly that,
    // except the name org.test.Hello.Extra already holds.
    // The setuid icon is published 0644 (the publisher clamps modes; a
    // hand-written manifest asking for setuid is refused by the exports
    // rules, see format/src/exports.rs and daemon/src/local_files.rs
    // tests), so it is exported, without any s-bit (checked below).
    let passed = set(&[
        "bin/org.test.Hello",
        HELLO_DESKTOP,
        SHELL_DESKTOP,
        EXTRA_DESKTOP,
        ICON,
        SETUID_ICON,
    ]);
    assert_eq!(leaves(&active_export(client, "org.test.Hello")), passed);
    let mut farm = passed.clone();
    farm.insert("bin/org.test.Hello.Extra".into());
    assert_eq!(leaves(&exports), farm);
    for rel in &farm {
        let meta = std::fs::metadata(exports.join(rel)).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let expected = if rel.starts_with("bin/") {
            0o755
        } else {
            0o644
        };
        assert_eq!(mode, expected, "{rel}");
    }

    // org.test.Hello.Extra's export is unchanged.
    assert_eq!(
        std::fs::read_link(exports.join(EXTRA_DESKTOP)).unwrap(),
        extra_link
    );
    assert_eq!(
        std::fs::read_to_string(exports.join(EXTRA_DESKTOP)).unwrap(),
        extra_before
    );

    // The app's own desktop file is present and runs flatpak; the shell
    // one runs its shell inside the sandbox.
    let run = format!("/usr/bin/flatpak run --branch=master --arch={arch}");
    let hello = std::fs::read_to_string(exports.join(HELLO_DESKTOP)).unwrap();
    assert_eq!(
        exec_line(&hello),
        format!("{run} --command=hello.sh org.test.Hello")
    );
    assert!(hello.contains("X-Flatpak=org.test.Hello\n"), "{hello}");
    let shell = std::fs::read_to_string(exports.join(SHELL_DESKTOP)).unwrap();
    assert_eq!(
        exec_line(&shell),
        format!("{run} --command=/bin/sh org.test.Hello -c 'touch {MARKER}'")
    );
    assert!(!shell.contains("TryExec"), "{shell}");
    let wrapper = std::fs::read_to_string(exports.join("bin/org.test.Hello")).unwrap();
    assert_eq!(
        wrapper,
        format!("#!/bin/sh\nexec {run} org.test.Hello \"$@\"\n")
    );

    // Nothing was written outside the installation, nothing ran, and the
    // app runs.
    for path in [
        MARKER,
        "/etc/profile.d/org.test.Hello.sh",
        "/usr/share/dbus-1/system-services/org.test.Hello.service",
        "/usr/share/dbus-1/services/org.freedesktop.Notifications.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} exists");
    }
    let everything = tree(&client.dir.join("state"));
    for bad in [
        "Runs",
        "profile.d",
        "system-services",
        "org.other.App",
        "evil",
        "Notifications",
        "Shadow",
    ] {
        let found: Vec<_> = everything
            .iter()
            .filter(|p| p.contains(bad) && !p.contains("/files/"))
            .collect();
        assert!(found.is_empty(), "{bad}: {found:?}");
    }
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    let extra_runs = run_ok(&mut flatpak(client, &["run", "org.test.Hello.Extra"])).unwrap();
    assert_eq!(extra_runs.trim(), "Hello from org.test.Hello version 1");

    // Oversize: a 2 MiB icon (the client allows 1 MiB) is refused before
    // it is read: its block is withheld by the publisher, so the install
    // could not finish laying out if the daemon tried to fetch it.
    ok_json(client, &["uninstall", "--json", "org.test.Hello"]);
    let big = Deploy::of_hello(&pair);
    let big_icon = "share/icons/hicolor/512x512/apps/org.test.Hello.Big.svg";
    let mut svg = String::from("<svg xmlns=\"http://www.w3.org/2000/svg\">");
    while svg.len() < 2 << 20 {
        svg.push_str(&format!("<!-- {} -->\n", svg.len()));
    }
    svg.push_str("</svg>");
    big.export(big_icon, &svg, 0o644);
    let release = big.publish(&pair, "2");
    let _withheld = pair.withhold(&release, &format!("deploy/export/{big_icon}"));
    let out = flatipfsctl(
        client,
        None,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(last_json(&out)["state"], "degraded");
    assert!(!exports.join(big_icon).exists());
    assert!(exports.join(HELLO_DESKTOP).exists());
    let log = client.daemon_log();
    assert!(
        log.lines()
            .any(|l| l.contains(big_icon) && l.contains("limits.max_export_file_size")),
        "no refusal of the big icon in the log"
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    // The other app is still as it was.
    assert_eq!(
        std::fs::read_to_string(exports.join(EXTRA_DESKTOP)).unwrap(),
        extra_before
    );
}

#[test]
fn oversize_metadata_and_climbing_export_paths_fail_the_install_with_a_typed_error() {
    let pair = Pair::up("\n[updates]\npolicy = \"none\"\n");
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let big = Deploy::of_hello(&pair);
    let metadata = std::fs::read_to_string(big.dir.join("metadata")).unwrap();
    let mut padded = metadata.clone();
    while padded.len() <= 256 << 10 {
        padded.push_str("# padding padding padding padding padding padding padding\n");
    }
    // The publisher refuses such a metadata (`hostile_polish`): the release
    // is an honest one with its metadata replaced by hand.
    let honest = big.publish(&pair, "1");
    let oversize = release_with_metadata(&pair, &honest, padded.as_bytes());
    let out = flatipfsctl(
        client,
        None,
        &["install", "--json", &format!("/ipfs/{oversize}")],
    );
    assert!(!out.status.success(), "{out:?}");
    let error = &last_json(&out)["error"];
    assert_eq!(
        error["name"], "org.flatipfs.Manager1.Error.VerificationFailed",
        "{out:?}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_metadata_size"),
        "{error}"
    );
    // Nothing is left of it.
    assert!(!client.installation().join("app/org.test.Hello").exists());
    let again = flatipfsctl(client, None, &["info", "org.test.Hello"]);
    assert_eq!(again.status.code(), Some(3), "{again:?}");

    // An export path that climbs out of export/ is refused with the
    // manifest, before anything is written.
    let good = pair.publish("repo-v1", &pair.app_ref.clone());
    let climbing = pair.handmade(&good, |m| {
        let entries = m["entries"].as_array_mut().unwrap();
        let at = entries
            .iter()
            .position(|e| e["path"] == format!("export/{HELLO_DESKTOP}"))
            .expect("the app exports a desktop file");
        entries[at]["path"] = "export/share/applications/../../../etc/profile.d/x.sh".into();
    });
    let out = flatipfsctl(
        client,
        None,
        &["install", "--json", &format!("/ipfs/{climbing}")],
    );
    assert_eq!(
        last_json(&out)["error"]["name"],
        "org.flatipfs.Manager1.Error.VerificationFailed",
        "{out:?}"
    );
    assert!(!client.installation().join("app/org.test.Hello").exists());
    assert!(!client.installation().join("etc").exists());
    assert!(!Path::new("/etc/profile.d/x.sh").exists());
}

#[test]
fn an_export_a_new_release_drops_is_unlinked_and_comes_back_on_rollback() {
    let pair = Pair::up("\n[updates]\npolicy = \"none\"\n");
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let second = "share/applications/org.test.Hello.Second.desktop";
    let v1 = Deploy::of_hello(&pair);
    v1.export(
        second,
        "[Desktop Entry]\nType=Application\nName=Second\nExec=hello.sh --second\n",
        0o644,
    );
    v1.publish(&pair, "1");
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let exports = client.installation().join("exports");
    assert!(exports.join(second).is_file());

    let v2 = Deploy::of_hello(&pair);
    v2.publish(&pair, "2");
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    assert!(
        exports.join(second).symlink_metadata().is_err(),
        "the dropped export is still linked"
    );
    assert!(exports.join(HELLO_DESKTOP).is_file());
    assert_eq!(
        leaves(&exports),
        set(&["bin/org.test.Hello", HELLO_DESKTOP, ICON])
    );

    ok_json(client, &["rollback", "--json", "org.test.Hello"]);
    let mut back = || Ok(exports.join(second).is_file());
    wait_for("the export of version 1 to come back", LIMIT, &mut back).unwrap();
    assert_eq!(
        leaves(&exports),
        set(&["bin/org.test.Hello", HELLO_DESKTOP, ICON, second])
    );
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

#[test]
fn an_update_reports_the_exports_it_refused_and_never_links_them() {
    let pair = Pair::up("\n[updates]\npolicy = \"none\"\n");
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    Deploy::of_hello(&pair).publish(&pair, "1");
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let exports = client.installation().join("exports");
    let other = "share/applications/org.other.App.desktop";
    let hostile = format!(
        "[Desktop Entry]\nType=Application\nName=Other\nExec=/bin/sh -c \"touch {MARKER}\"\n"
    );

    // Version 2 carries one hostile export: the update goes through, the
    // job's details and the JSON output name the refused file.
    let v2 = Deploy::of_hello(&pair);
    v2.export(other, &hostile, 0o644);
    v2.publish(&pair, "2");
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    assert_eq!(updated["applied"], true, "{updated}");
    let refused = updated["refused_exports"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{updated}");
    let line = refused[0].as_str().unwrap();
    assert!(
        line.starts_with(&format!("export/{other}: "))
            && line.contains("not named for the app org.test.Hello"),
        "{line}"
    );
    assert!(exports.join(other).symlink_metadata().is_err());
    assert!(!active_export(client, "org.test.Hello").join(other).exists());
    assert_eq!(
        leaves(&exports),
        set(&["bin/org.test.Hello", HELLO_DESKTOP, ICON])
    );
    // (Every version ships version 1's files.)
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // In text mode `update` warns about it on stderr, as `install` does.
    let v3 = Deploy::of_hello(&pair);
    v3.export(other, &hostile, 0o644);
    v3.publish(&pair, "3");
    let out = flatipfsctl(client, None, &["update", "org.test.Hello"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("warning: not exported: export/{other}: ")),
        "{stderr}"
    );
    assert!(exports.join(other).symlink_metadata().is_err());
    assert!(!Path::new(MARKER).exists());
}

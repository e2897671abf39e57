//! Recording a startup set and installing with one (issue 13): the daemon
//! records, through a fresh mount, what `flatpak run` reads at start-up;
//! the list is what `publish --startup-set` takes; a client installing the
//! release fetches those ranges first (and reads them once through its
//! mount, so the page cache holds them) and runs the app while a block
//! outside them is still missing; a user without authorization cannot
//! record.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flatipfs_tests::ctl::{flatipfsctl, flatpak, ok_json};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::{run_ok, wait_for};
use flatipfs_tests::users::{self, PLAIN_USER};

const LIMIT: Duration = Duration::from_secs(90);
const UNUSED: &str = "files/share/hello/unused.bin";

/// A copy of the test app's deploy directory whose start-up reads part of
/// `share/hello/data.txt` and all of `share/hello/start.txt`, and never
/// `share/hello/unused.bin` (1 MiB); `mark` makes each release's bytes its own.
fn reading_app(pair: &Pair, into: &Path, mark: char) -> PathBuf {
    let source = deploy_dir(
        &pair.apps.join("repo-v1"),
        &pair.app_ref,
        &into.join("scratch"),
    )
    .unwrap();
    let deploy = into.join("deploy");
    run_ok(Command::new("cp").arg("-a").arg(&source).arg(&deploy)).unwrap();
    let hello = deploy.join("files/share/hello");
    std::fs::write(
        deploy.join("files/bin/hello.sh"),
        format!(
            "#!/bin/sh\nhead -c 5000 /app/share/hello/data.txt > /dev/null\ncat /app/share/hello/start.txt\necho \"Hello from org.test.Hello {mark}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(hello.join("data.txt"), mark.to_string().repeat(300_000)).unwrap();
    std::fs::write(hello.join("start.txt"), format!("starting {mark}\n")).unwrap();
    let unused: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ mark as u8)
        .collect();
    std::fs::write(hello.join("unused.bin"), unused).unwrap();
    deploy
}

fn publish_deploy(pair: &Pair, deploy: &Path, version: &str, startup: Option<&Path>) -> String {
    let mut args = vec![
        "publish",
        "--json",
        "--remote",
        "main",
        "--version",
        version,
    ];
    if let Some(file) = startup {
        args.extend(["--startup-set", file.to_str().unwrap()]);
    }
    args.push(deploy.to_str().unwrap());
    let out = ok_json(&pair.publisher, &args);
    pair.wait_until_client_resolves_index();
    out["release"].as_str().unwrap().to_string()
}

fn manifest(pair: &Pair, release: &str) -> serde_json::Value {
    let text = pair
        .publisher
        .ipfs(1, &["cat", &format!("/ipfs/{release}/manifest")])
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn info(pair: &Pair) -> serde_json::Value {
    ok_json(&pair.client, &["info", "--json", "org.test.Hello"])
}

#[test]
fn a_recorded_startup_set_is_ordered_published_and_fetched_first() {
    let pair = Pair::up("");
    users::ensure_test_users().unwrap();
    let work = pair.client.dir.join("startup-apps");
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let v1 = reading_app(&pair, &work.join("v1"), 'a');
    publish_deploy(&pair, &v1, "1", None);
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    // A run before the recording: its pages are in the kernel's cache of
    // the app's mount, which a recording must not be fooled by.
    let first = run_ok(&mut flatpak(client, &["run", "org.test.Hello"])).unwrap();
    assert!(first.contains("Hello from org.test.Hello a"), "{first}");

    // A plain user may not see what an app reads.
    let list = work.join("startup.list");
    let denied = flatipfsctl(
        client,
        Some(PLAIN_USER),
        &["startup-set", "record", "org.test.Hello", "--seconds", "5"],
    );
    assert_eq!(denied.status.code(), Some(4), "{denied:?}");

    let out = flatipfsctl(
        client,
        None,
        &[
            "startup-set",
            "record",
            "org.test.Hello",
            "--seconds",
            "30",
            "--output",
            list.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    // The app ran (its output goes to stderr, stdout is the report).
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Hello from org.test.Hello a"),
        "{out:?}"
    );
    let text = std::fs::read_to_string(&list).unwrap();
    let ranges: Vec<(String, u64, u64)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{l:?}");
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    let position = |path: &str| {
        ranges
            .iter()
            .position(|r| r.0 == path)
            .unwrap_or_else(|| panic!("{path} not recorded: {text}"))
    };
    assert!(!ranges.is_empty(), "nothing recorded: {text}");
    let script = position("files/bin/hello.sh");
    let data = position("files/share/hello/data.txt");
    let start = position("files/share/hello/start.txt");
    assert!(
        script < data && data < start,
        "not in first-access order: {text}"
    );
    assert!(ranges.iter().all(|r| r.0 != UNUSED), "{text}");
    // Only the part of data.txt that was read (and read ahead).
    assert_eq!(ranges[data].1, 0, "{text}");
    assert!(ranges[data].2 < 300_000, "{text}");
    // Recording left the app as it was: its mount serves it as before.
    let again = run_ok(&mut flatpak(client, &["run", "org.test.Hello"])).unwrap();
    assert_eq!(again, first);

    // Published with it: every range names its file's CID, within the file.
    let v2 = reading_app(&pair, &work.join("v2"), 'b');
    let release = publish_deploy(&pair, &v2, "2", Some(&list));
    let m = manifest(&pair, &release);
    let set = m["startup_set"].as_array().unwrap();
    assert_eq!(set.len(), ranges.len(), "{m}");
    for (published, recorded) in set.iter().zip(&ranges) {
        assert_eq!(published["path"], recorded.0.as_str());
        assert_eq!(published["offset"], recorded.1);
        assert_eq!(published["length"], recorded.2);
        let entry = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == published["path"])
            .unwrap();
        assert_eq!(published["cid"], entry["cid"]);
        assert!(recorded.1 + recorded.2 <= entry["size"].as_u64().unwrap());
    }

    // A range beyond its file is refused, and the index keeps release 2.
    let bad = work.join("bad.list");
    std::fs::write(&bad, "files/share/hello/start.txt\t0\t4096\n").unwrap();
    let out = flatipfsctl(
        &pair.publisher,
        None,
        &[
            "publish",
            "--remote",
            "main",
            "--version",
            "3",
            "--startup-set",
            bad.to_str().unwrap(),
            v2.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("beyond its 11 bytes"), "{stderr}");
    let (_, index) = pair.current_index();
    let index = index.to_string();
    assert!(index.contains(&release), "{index}");

    // A fresh install of release 2 while a block outside the startup set is
    // withheld: the ranges become local, the app runs while still degraded.
    ok_json(client, &["uninstall", "--json", "org.test.Hello"]);
    let _withheld = pair.withhold(&release, &format!("deploy/{UNUSED}"));
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(installed["state"], "degraded", "{installed}");
    let mut local = || {
        Ok(set.iter().all(|r| {
            client
                .ipfs(
                    1,
                    &[
                        "cat",
                        "--offline",
                        "-o",
                        &r["offset"].to_string(),
                        "-l",
                        &r["length"].to_string(),
                        r["cid"].as_str().unwrap(),
                    ],
                )
                .is_ok()
        }))
    };
    wait_for("the startup set to be local", LIMIT, &mut local).unwrap();
    // Replayed first: the daemon read every range of the set before it
    // went on to the rest of the release (which cannot complete here).
    let log_file = client.dir.join("logs/flatipfsd.log");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let rest = format!("fetching the rest of org.test.Hello {release}");
    wait_for("the rest of the fetch to start", LIMIT, &mut || {
        Ok(log().contains(&rest))
    })
    .unwrap();
    let log = log();
    let first = format!(
        "startup set org.test.Hello {release}: {n} of {n} ranges",
        n = set.len()
    );
    let first_at = log
        .find(&first)
        .unwrap_or_else(|| panic!("no {first:?} in the daemon's log:\n{log}"));
    assert!(first_at < log.find(&rest).unwrap(), "{log}");
    // ... and read once through the app's mount, before anything ran it:
    // the kernel's page cache holds every range (`fincore` asks mincore;
    // a file only made local in Kubo has no page there).
    let warmed = format!(
        "startup set org.test.Hello {release}: {n} of {n} ranges in the page cache",
        n = set.len()
    );
    assert!(
        log.contains(&warmed),
        "no {warmed:?} in the daemon's log:\n{log}"
    );
    let files = PathBuf::from(info(&pair)["mount_point"].as_str().unwrap());
    for range in set {
        let path = files
            .parent()
            .unwrap()
            .join(range["path"].as_str().unwrap());
        let resident = run_ok(
            Command::new("fincore")
                .args(["--bytes", "--noheadings", "--output", "RES"])
                .arg(&path),
        )
        .unwrap_or_else(|e| panic!("fincore (util-linux) on {}: {e}", path.display()));
        let resident: u64 = resident.trim().parse().unwrap();
        assert!(
            resident >= range["length"].as_u64().unwrap().min(4096),
            "{}: {resident} bytes in the page cache for {range}",
            path.display()
        );
    }
    let run = run_ok(&mut flatpak(client, &["run", "org.test.Hello"])).unwrap();
    assert!(
        run.contains("starting b") && run.contains("Hello from org.test.Hello b"),
        "{run}"
    );
    assert_eq!(info(&pair)["state"], "degraded");
}

#[test]
fn recording_an_app_that_is_not_installed_says_so() {
    let pair = Pair::up("");
    let client = &pair.client;
    let out = flatipfsctl(
        client,
        None,
        &["startup-set", "record", "org.test.Absent", "--seconds", "1"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not installed"), "{stderr}");
}

//! Fetched files kept once as local files (`local_store`), read through
//! FUSE passthrough: a client with its embedded Kubo node installs an app
//! with a large file from a publisher. Reads give the published bytes
//! before, while and after a file switches from lazy to local; a fully
//! fetched app reads with its Kubo node frozen; the app costs at most 1.1×
//! its size on disk (Kubo's repository growth plus the local files); its
//! blocks stay on the client's node (filestore) and are served to a peer;
//! a running instance keeps its tree through an update; rollback works
//! with every node unreachable.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use flatipfs_tests::ctl::{flatpak, ok_json, run_hello};
use flatipfs_tests::embedded::ipfs_children;
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::trees::assert_same_tree;
use flatipfs_tests::Stack;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LIMIT: Duration = Duration::from_secs(300);
const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";
/// The large file: big enough that the repository's fixed costs are small
/// next to it, several hundred blocks.
const BIG: usize = 48 << 20;

/// `len` bytes of deterministic, incompressible content.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn state_dir(stack: &Stack) -> PathBuf {
    stack.dir.join("state")
}

/// Bytes `du` counts below `path` (disk blocks, not apparent size).
fn du(path: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "--block-size=1"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Apparent size of the regular files below `path`.
fn apparent(path: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "--apparent-size", "--block-size=1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until every release the client keeps is local (its `.local`
/// marker next to its cached manifest).
fn wait_all_local(stack: &Stack) {
    let releases = state_dir(stack).join("releases");
    wait_for("every kept release to be local", LIMIT, &mut || {
        let names: Vec<String> = std::fs::read_dir(&releases)?
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // `<release>.json` is a cached manifest; `<release>.wire.json`
        // counts the bytes that came as deltas, pack and plain blocks.
        let manifests = names
            .iter()
            .filter(|n| n.ends_with(".json") && !n.ends_with(".wire.json"))
            .count();
        let local = names.iter().filter(|n| n.ends_with(".local")).count();
        Ok(manifests > 0 && local == manifests)
    })
    .unwrap();
}

/// The embedded Kubo node of the client, frozen (SIGSTOP) until dropped:
/// any read that needed it would fail with EIO after `read_timeout`.
struct Frozen(Vec<i32>);

impl Frozen {
    fn freeze(stack: &Stack) -> Frozen {
        let daemon = stack.process("flatipfsd").unwrap().pid;
        let nodes = ipfs_children(daemon);
        assert!(!nodes.is_empty(), "the embedded node runs");
        for &pid in &nodes {
            kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        }
        Frozen(nodes)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}

fn read_all(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_fetched_app_is_kept_once_read_locally_and_still_served_to_peers() {
    let pair = Pair::up_embedded(NO_AUTOMATIC_UPDATES);
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    let big = pseudo_random(BIG, 7);
    std::fs::create_dir_all(original.join("files/share/big")).unwrap();
    std::fs::write(original.join("files/share/big/big.bin"), &big).unwrap();
    let published = ok_json(
        &pair.publisher,
        &[
            "publish",
            "--json",
            "--remote",
            "main",
            original.to_str().unwrap(),
        ],
    );
    let release = published["release"].as_str().unwrap().to_string();
    pair.wait_until_client_resolves_index();
    let repo = state_dir(client).join("kubo");
    let repo_before = du(&repo);

    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    let mount_point = PathBuf::from(installed["mount_point"].as_str().unwrap());
    let big_path = mount_point.join("share/big/big.bin");

    // A handle opened lazily: its first half is read now, from Kubo (or
    // local blocks), the rest once the file is local.
    let mut lazy = std::fs::File::open(&big_path).unwrap();
    let mut first = vec![0u8; BIG / 2];
    lazy.read_exact(&mut first).unwrap();
    assert!(
        first == big[..BIG / 2],
        "the lazy half has the published bytes"
    );
    wait_for("the app to be fetched", LIMIT, &mut || {
        let info = ok_json(client, &["info", "--json", "org.test.Hello"]);
        Ok(info["state"] == "installed")
    })
    .unwrap();
    wait_all_local(client);
    let local_dir = state_dir(client).join("local");
    let big_cid = client
        .ipfs(
            1,
            &[
                "resolve",
                "--offline",
                &format!("/ipfs/{release}/deploy/files/share/big/big.bin"),
            ],
        )
        .unwrap()
        .trim()
        .trim_start_matches("/ipfs/")
        .to_string();
    assert!(
        local_dir.join(&big_cid).is_file(),
        "the large file is a local file"
    );
    // While the lazy handle is open, a second open of the same file is
    // served from the local file by the daemon; the lazy handle goes on
    // from the local file.
    let second = read_all(&big_path);
    assert!(second == big, "a second handle reads the published bytes");
    let mut rest = Vec::new();
    lazy.read_to_end(&mut rest).unwrap();
    assert!(rest == big[BIG / 2..], "the rest, read after the switch");
    lazy.seek(SeekFrom::Start(12345)).unwrap();
    let mut some = vec![0u8; 4096];
    lazy.read_exact(&mut some).unwrap();
    assert!(some == big[12345..12345 + 4096]);
    drop(lazy);

    // With its Kubo node frozen, the whole app still reads (passthrough to
    // the local files: nothing reaches Kubo), and it runs.
    {
        let _frozen = Frozen::freeze(client);
        assert_same_tree(&original.join("files"), &mount_point);
        assert!(read_all(&big_path) == big);
        assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    }

    // The pool passed reads through to the local files (the kernel
    // agreed, and no open was refused).
    let log = client.daemon_log();
    assert!(log.contains("FUSE passthrough on"), "{log}");
    assert!(!log.contains("passthrough refused"), "{log}");

    // Disk: the Kubo repository's growth plus the local files is at most
    // 1.1× the size of the installed files (app and runtime).
    let runtime_files = client
        .installation()
        .join(&pair.runtime_ref)
        .join("active/files");
    let size = apparent(&original.join("files")) + apparent(&runtime_files);
    let local = du(&local_dir);
    let grown = du(&repo).saturating_sub(repo_before);
    eprintln!(
        "installed files {size} B; local files {local} B; Kubo repository grew {grown} B; ratio {:.3}",
        (local + grown) as f64 / size as f64
    );
    assert!(
        local >= size * 9 / 10,
        "the files are on disk once ({local} of {size})"
    );
    assert!(
        (local + grown) * 10 <= size * 11,
        "stored once: {local} B local + {grown} B Kubo for {size} B of files"
    );
    // What stays in the blockstore is in at most 32 shard directories of
    // one character (the daemon's `block_shards`), not Kubo's 1,024.
    let shards: Vec<String> = std::fs::read_dir(repo.join("blocks"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    assert!(
        !shards.is_empty() && shards.iter().all(|name| name.len() == 1),
        "block shard directories: {shards:?}"
    );

    // Every block of the release is still on the client's node, verified
    // against the local files, and its bytes come from them.
    client
        .ipfs(
            1,
            &["dag", "stat", "--offline", "--progress=false", &release],
        )
        .unwrap();
    let verify = client
        .ipfs(1, &["filestore", "verify", "--file-order"])
        .unwrap();
    assert!(verify.lines().count() > 100, "{verify}");
    assert!(
        verify.lines().all(|l| l.starts_with("ok ")),
        "every filestore block matches its local file: {verify}"
    );
    let dups = client.ipfs(1, &["filestore", "dups"]).unwrap();
    assert!(dups.trim().is_empty(), "no block stored twice: {dups}");
    let cat = client
        .ipfs_bytes(1, &["cat", "--offline", &big_cid])
        .unwrap();
    assert!(cat == big, "Kubo serves the file from the local file");

    // A peer gets a block of it from the client: the publisher loses one
    // and fetches it back.
    let withheld = pair.withhold(&release, "deploy/files/share/big/big.bin");
    let back = pair
        .publisher
        .ipfs_bytes(1, &["block", "get", &withheld.block])
        .unwrap();
    assert!(!back.is_empty());
    let stat = pair
        .publisher
        .ipfs(1, &["block", "stat", "--offline", &withheld.block])
        .unwrap();
    assert!(stat.contains(&withheld.block), "{stat}");

    // Uninstalled, its local files go (the runtime's stay).
    ok_json(client, &["uninstall", "--json", "org.test.Hello"]);
    assert!(
        !local_dir.join(&big_cid).exists(),
        "the app's files are gone"
    );
    assert!(
        std::fs::read_dir(&local_dir).unwrap().count() > 0,
        "the runtime's stay"
    );
}

#[test]
fn a_running_instance_keeps_its_local_tree_through_an_update_and_rollback_needs_no_node() {
    let pair = Pair::up_embedded(NO_AUTOMATIC_UPDATES);
    pair.publish_v1();
    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    wait_all_local(client);

    // An instance that keeps running across the update.
    let mut running = flatpak(
        client,
        &[
            "run",
            "--command=sh",
            "org.test.Hello",
            "-c",
            "cat /app/bin/hello.sh; read line; cat /app/bin/hello.sh; cat /app/share/hello/data.txt",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut out = std::io::BufReader::new(running.stdout.take().unwrap());
    let mut before = String::new();
    while !before.contains("version") {
        std::io::BufRead::read_line(&mut out, &mut before).unwrap();
    }
    assert!(before.contains("version 1"), "{before}");

    pair.publish("repo-v2", &pair.app_ref.clone());
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    wait_all_local(client);
    // Vacuum keeps the local files of every kept release.
    ok_json(client, &["vacuum", "--json"]);
    std::io::Write::write_all(running.stdin.as_mut().unwrap(), b"\n").unwrap();
    let mut after = Vec::new();
    out.read_to_end(&mut after).unwrap();
    assert!(running.wait().unwrap().success());
    let after = String::from_utf8_lossy(&after);
    assert!(after.contains("version 1"), "{after}");
    assert!(
        after.len() >= 300_000,
        "the running instance reads its release's data whole"
    );

    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");

    // Rollback with the publisher gone and the client's node frozen.
    pair.stop_publisher_node();
    let active = client
        .installation()
        .join(&pair.app_ref)
        .join("active/files");
    {
        let _frozen = Frozen::freeze(client);
        let rolled = ok_json(client, &["rollback", "--json", "org.test.Hello"]);
        assert_eq!(rolled["to"], "1", "{rolled}");
        assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
        let data = std::fs::read(active.join("share/hello/data.txt")).unwrap();
        assert_eq!(data.len(), 300_000);
        assert!(!active.join("share/hello/NEWS").exists());
    }
}

#[test]
fn a_release_a_crash_left_unpinned_with_blocks_missing_is_finished_at_the_next_start() {
    let pair = Pair::up_embedded(NO_AUTOMATIC_UPDATES);
    pair.publish_v1();
    let client = &pair.client;
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    wait_all_local(client);
    let release = installed["release"].as_str().unwrap().to_string();
    let data = client
        .ipfs(
            1,
            &[
                "resolve",
                "--offline",
                &format!("/ipfs/{release}/deploy/files/share/hello/data.txt"),
            ],
        )
        .unwrap()
        .trim()
        .trim_start_matches("/ipfs/")
        .to_string();

    // The state a crash between unpinning and pinning again leaves: the
    // release unpinned, the blocks of a local file in neither store, the
    // marker missing.
    client.ipfs(1, &["pin", "rm", &release]).unwrap();
    let refs = client.ipfs(1, &["refs", "-r", &data]).unwrap();
    let mut blocks: Vec<&str> = refs.lines().collect();
    blocks.push(&data);
    let mut rm = vec!["block", "rm", "--force"];
    rm.extend(blocks.iter().copied());
    client.ipfs(1, &rm).unwrap();
    let marker = state_dir(client)
        .join("releases")
        .join(format!("{release}.local"));
    std::fs::remove_file(&marker).unwrap();
    assert!(
        client
            .ipfs(1, &["block", "stat", "--offline", &data])
            .is_err(),
        "the block is gone"
    );

    // The app still runs (its files are local), and the next start
    // finishes the move.
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    client
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    client.start_daemon().unwrap();
    let again = wait_for("the release to be local again", LIMIT, &mut || {
        Ok(marker.exists())
    });
    assert!(again.is_ok(), "{again:?}: {}", client.daemon_log());
    let pins = client
        .ipfs(1, &["pin", "ls", "--type=recursive", "--names"])
        .unwrap();
    assert!(
        pins.lines()
            .any(|l| l.contains(&release) && l.contains("flatipfs-install org.test.Hello")),
        "pinned again under the installer's name: {pins}"
    );
    client
        .ipfs(
            1,
            &["dag", "stat", "--offline", "--progress=false", &release],
        )
        .unwrap();
    let verify = client.ipfs(1, &["filestore", "verify"]).unwrap();
    assert!(verify.lines().all(|l| l.starts_with("ok ")), "{verify}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

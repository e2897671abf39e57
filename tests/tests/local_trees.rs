//! Releases read from local trees (`trees`): once every file of a release
//! is local, its `files/` is a plain read-only bind mount of a tree of hard
//! links to the local files, stacked on its FUSE mount while it runs and
//! mounted directly at the next start. Reads give the published bytes
//! across the switch (a handle opened lazily, a sandbox started before),
//! the app runs from the tree, a restart mounts it without FUSE, and
//! retention, vacuum and uninstall remove trees no sandbox runs.

use std::io::{BufRead, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use flatipfs_tests::ctl::{flatpak, ok_json, run_hello};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::trees::assert_same_tree;
use flatipfs_tests::Stack;

const LIMIT: Duration = Duration::from_secs(300);
const NO_AUTOMATIC_UPDATES: &str = "\n[updates]\npolicy = \"none\"\n";

fn state_dir(stack: &Stack) -> PathBuf {
    stack.dir.join("state")
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash.
fn unescape(p: &str) -> String {
    p.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The filesystem types mounted on `path`, bottom first.
fn fstypes(path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            (Path::new(&point) == path).then(|| right.split(' ').next().unwrap().to_string())
        })
        .collect()
}

/// FUSE mount points at or below `dir`.
fn fuse_below(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            (Path::new(&point).starts_with(dir) && right.starts_with("fuse")).then_some(point)
        })
        .collect()
}

/// Waits until the topmost mount on `path` is a plain bind mount (not FUSE).
fn wait_tree_mounted(stack: &Stack, path: &Path) {
    let got = wait_for("the release's tree to be mounted", LIMIT, &mut || {
        Ok(fstypes(path).last().is_some_and(|t| !t.starts_with("fuse")))
    });
    assert!(
        got.is_ok(),
        "{got:?}: {:?}\n{}",
        fstypes(path),
        stack.daemon_log()
    );
}

fn tree_of(stack: &Stack, release: &str) -> PathBuf {
    state_dir(stack).join("trees").join(release)
}

#[test]
fn a_local_release_is_read_from_its_tree_across_the_switch_and_a_restart() {
    let pair = Pair::up_embedded(NO_AUTOMATIC_UPDATES);
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let release = pair.publish("repo-v1", &pair.app_ref.clone());
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    let want = std::fs::read(original.join("files/share/hello/data.txt")).unwrap();

    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    let mount_point = PathBuf::from(installed["mount_point"].as_str().unwrap());
    let data = mount_point.join("share/hello/data.txt");

    // A handle opened before the switch (lazily, through FUSE).
    let mut held = std::fs::File::open(&data).unwrap();
    let mut first = vec![0u8; 1000];
    held.read_exact(&mut first).unwrap();
    assert!(first == want[..1000], "the first bytes, read lazily");

    wait_tree_mounted(client, &mount_point);
    let types = fstypes(&mount_point);
    assert_eq!(
        types.len(),
        1,
        "the tree replaced the FUSE mount: {types:?}"
    );
    // The handle goes on with the same bytes; new opens read the tree.
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert!(rest == want[1000..], "the rest, read after the switch");
    drop(held);
    assert_same_tree(&original.join("files"), &mount_point);
    let tree = tree_of(client, &release);
    assert!(tree.is_dir(), "the tree is {}", tree.display());
    // Its files are the local store's files (hard links: no second copy).
    let meta = std::fs::metadata(&data).unwrap();
    assert!(meta.nlink() >= 2, "a hard link of the local file");
    assert_eq!(
        meta.ino(),
        std::fs::metadata(tree.join("share/hello/data.txt"))
            .unwrap()
            .ino()
    );
    assert_eq!(meta.uid(), 0);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");

    // The runtime gets its tree too; a restart mounts both from their trees,
    // without the FUSE pool.
    let runtime_files = client
        .installation()
        .join(&pair.runtime_ref)
        .join("active/files");
    wait_tree_mounted(client, &std::fs::canonicalize(&runtime_files).unwrap());
    client
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    client.start_daemon().unwrap();
    wait_for("the app to be listed again", LIMIT, &mut || {
        let list = ok_json(client, &["list", "--json"]);
        Ok(list.to_string().contains("org.test.Hello"))
    })
    .unwrap();
    let types = fstypes(&mount_point);
    assert_eq!(types.len(), 1, "one mount after the restart: {types:?}");
    assert!(!types[0].starts_with("fuse"), "{types:?}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
    assert_eq!(std::fs::read(&data).unwrap(), want);
    assert!(
        fuse_below(&client.dir).is_empty(),
        "no FUSE mount once every release has its tree: {:?}",
        fuse_below(&client.dir)
    );

    // Uninstalled, its tree goes; the runtime's stays.
    ok_json(client, &["uninstall", "--json", "org.test.Hello"]);
    assert!(!tree.exists(), "the app's tree is gone");
    let left = std::fs::read_dir(state_dir(client).join("trees"))
        .unwrap()
        .count();
    assert_eq!(left, 1, "the runtime's tree stays");
}

#[test]
fn sandboxes_keep_their_bytes_across_the_switch_and_an_update_and_old_trees_go() {
    let pair = Pair::up_embedded(&format!(
        "{NO_AUTOMATIC_UPDATES}\n[retention]\nkeep_previous = 0\n"
    ));
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let v1 = pair.publish("repo-v1", &pair.app_ref.clone());
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    // The runtime on its tree first: this test is about the app's switch
    // (a `flatpak run` whose bwrap opened a `files/` an instant before its
    // switch and binds it after is not covered here).
    let runtime_files = client
        .installation()
        .join(&pair.runtime_ref)
        .join("active/files");
    wait_tree_mounted(client, &std::fs::canonicalize(&runtime_files).unwrap());
    let installed = ok_json(
        client,
        &["install", "--no-wait", "--json", "main", "org.test.Hello"],
    );
    let mount_point = PathBuf::from(installed["mount_point"].as_str().unwrap());

    // Started while the release is still on FUSE; reads its files whole at
    // each line it is given.
    let script =
        "while read line; do cat /app/bin/hello.sh /app/share/hello/data.txt | sha256sum; done";
    let spawn = || {
        flatpak(
            client,
            &["run", "--command=sh", "org.test.Hello", "-c", script],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut early = spawn();
    let mut early_out = std::io::BufReader::new(early.stdout.take().unwrap());
    let ask = |child: &mut std::process::Child, out: &mut dyn BufRead| {
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"\n").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    };
    let sum = ask(&mut early, &mut early_out);
    assert_eq!(sum.len(), 68, "{sum:?}");

    wait_tree_mounted(client, &mount_point);
    assert_eq!(
        ask(&mut early, &mut early_out),
        sum,
        "the same bytes after the switch"
    );
    // One started on the tree.
    let mut late = spawn();
    let mut late_out = std::io::BufReader::new(late.stdout.take().unwrap());
    assert_eq!(
        ask(&mut late, &mut late_out),
        sum,
        "the tree has the same bytes"
    );

    // An update drops v1 (keep_previous = 0) while both run it.
    pair.publish("repo-v2", &pair.app_ref.clone());
    let updated = ok_json(client, &["update", "--json", "org.test.Hello"]);
    assert_eq!(updated["to"], "2", "{updated}");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
    assert_eq!(
        ask(&mut early, &mut early_out),
        sum,
        "v1 through the update"
    );
    assert_eq!(
        ask(&mut late, &mut late_out),
        sum,
        "v1's tree through the update"
    );
    assert!(tree_of(client, &v1).is_dir(), "a tree a sandbox runs stays");
    ok_json(client, &["vacuum", "--json"]);
    assert_eq!(
        ask(&mut late, &mut late_out),
        sum,
        "v1's tree through a vacuum"
    );
    assert_eq!(ask(&mut early, &mut early_out), sum);

    for mut child in [early, late] {
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
    // Once they are gone, vacuum removes v1's tree; v2's and the
    // runtime's stay, and v2 runs.
    ok_json(client, &["vacuum", "--json"]);
    assert!(!tree_of(client, &v1).exists(), "v1's tree is gone");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 2");
}

/// An app of many small files (more blocks than one Kubo request can name)
/// comes through the pack (each file hashed against its CID and imported
/// as a block), is kept as local files (its blocks moved to the filestore
/// in several `block/rm` calls) and runs from its tree with the published
/// bytes.
#[test]
fn an_app_of_many_small_files_comes_through_the_pack_and_runs_from_its_tree() {
    use flatipfs_tests::wire_releases::{app_with_files, publish, wire_record};
    let pair = Pair::up_embedded(NO_AUTOMATIC_UPDATES);
    let client = &pair.client;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let scratch = tempfile::tempdir().unwrap();
    let count = 1500;
    let files: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let line = format!("small file {i:05} of the many-files test\n");
            (
                format!("files/share/many/{:02}/f{i:05}.txt", i % 30),
                line.repeat(8).into_bytes(),
            )
        })
        .collect();
    let named: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let deploy = app_with_files(&pair, scratch.path(), &named);
    let published = publish(&pair, &deploy, "1", &[]);
    let release = published["release"].as_str().unwrap().to_string();

    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    let mount_point = PathBuf::from(installed["mount_point"].as_str().unwrap());
    let wire = wire_record(client, &release);
    assert!(
        wire["pack_files"].as_u64().unwrap_or(0) >= count,
        "the small files came through the pack: {wire}"
    );
    assert_eq!(wire["refused"].as_u64(), Some(0), "{wire}");

    // A blocking install returns once files/ is settled on its tree: a
    // `flatpak run` right after it never meets the switch from FUSE (bwrap
    // fails a launch during it: "Race condition binding dirfd").
    let types = fstypes(&mount_point);
    assert!(
        types.last().is_some_and(|t| !t.starts_with("fuse")),
        "files/ is still {types:?} when the install returned"
    );
    assert!(
        state_dir(client)
            .join("releases")
            .join(format!("{release}.local"))
            .exists(),
        "kept as local files:\n{}",
        client.daemon_log()
    );
    assert_same_tree(&deploy.join("files"), &mount_point);
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

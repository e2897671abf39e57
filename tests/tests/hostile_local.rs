//! A file becomes local only if re-importing its bytes with the release
//! import profile gives exactly the manifest's CID (`local_store`). The
//! attack: a release whose file was imported with another chunker (its
//! DAG, its CID and its blocks are all consistent, so Kubo and the tree
//! check accept it, but the client cannot rebuild that CID from the bytes,
//! so it could not serve the blocks from a local file). The file must stay
//! lazy (read from Kubo, the right bytes), be logged, leave nothing in the
//! store, and the rest of the app still becomes local and runs.

use std::path::PathBuf;
use std::time::Duration;

use flatipfs_tests::ctl::{ok_json, run_hello};
use flatipfs_tests::fixtures::deploy_dir;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;

const LIMIT: Duration = Duration::from_secs(300);
const BIG: usize = 3 << 20;

#[test]
fn a_file_that_does_not_reimport_to_its_cid_stays_lazy_and_the_rest_goes_local() {
    let pair = Pair::up_embedded("\n[updates]\npolicy = \"none\"\n");
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let scratch = tempfile::tempdir().unwrap();
    let original = deploy_dir(&pair.apps.join("repo-v1"), &pair.app_ref, scratch.path()).unwrap();
    let big: Vec<u8> = (0..BIG as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
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

    // The same release with big.bin imported with fixed-size chunks.
    let node = &pair.publisher;
    let ipfs = |args: &[&str]| node.ipfs(1, args).unwrap().trim().to_string();
    let file = node.dir.join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let odd = ipfs(&[
        "add",
        "-Q",
        "--cid-version=1",
        "--raw-leaves",
        "--chunker=size-65536",
        file.to_str().unwrap(),
    ]);
    let hm = "/hostile-local";
    ipfs(&["files", "mkdir", "-p", "--cid-version=1", hm]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{release}/deploy"),
        &format!("{hm}/deploy"),
    ]);
    ipfs(&[
        "files",
        "rm",
        &format!("{hm}/deploy/files/share/big/big.bin"),
    ]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{odd}"),
        &format!("{hm}/deploy/files/share/big/big.bin"),
    ]);
    let hash = |path: &str| ipfs(&["files", "stat", "--hash", &format!("{hm}/deploy/{path}")]);
    let text = ipfs(&["cat", &format!("/ipfs/{release}/manifest")]);
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["deploy"] = ipfs(&["files", "stat", "--hash", &format!("{hm}/deploy")]).into();
    for entry in manifest["entries"].as_array_mut().unwrap() {
        let path = entry["path"].as_str().unwrap().to_string();
        if "files/share/big/big.bin".starts_with(&path) {
            entry["cid"] = hash(&path).into();
        }
    }
    let manifest_file = node.dir.join("hostile-local-manifest");
    std::fs::write(&manifest_file, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let manifest_cid = ipfs(&[
        "add",
        "-Q",
        "--cid-version=1",
        manifest_file.to_str().unwrap(),
    ]);
    ipfs(&[
        "files",
        "cp",
        &format!("/ipfs/{manifest_cid}"),
        &format!("{hm}/manifest"),
    ]);
    let root = ipfs(&["files", "stat", "--hash", hm]);
    ipfs(&["pin", "add", &root]);
    pair.publish_handmade_index(|index| {
        index["apps"]["org.test.Hello"]["release"] = root.clone().into();
    });

    let client = &pair.client;
    ok_json(client, &["install", "--json", "main", "org.test.Platform"]);
    let installed = ok_json(client, &["install", "--json", "main", "org.test.Hello"]);
    assert_eq!(installed["release"], root.as_str(), "{installed}");
    let state = client.dir.join("state");
    let marker = state.join("releases").join(format!("{root}.local"));
    wait_for("the app to be made local", LIMIT, &mut || {
        Ok(marker.exists())
    })
    .unwrap();

    let local = state.join("local");
    assert!(!local.join(&odd).exists(), "the odd file is not local");
    let names: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with(".part")),
        "nothing half-written is left: {names:?}"
    );
    assert!(names.len() > 3, "the other files are local: {names:?}");
    let log = client.daemon_log();
    assert!(
        log.lines()
            .any(|l| l.contains("does not re-import to its CID") && l.contains(&odd)),
        "the refusal is logged"
    );
    // It still reads, lazily, with the published bytes; the app runs.
    let mount_point = PathBuf::from(installed["mount_point"].as_str().unwrap());
    let read = std::fs::read(mount_point.join("share/big/big.bin")).unwrap();
    assert!(read == big, "the lazy file reads the published bytes");
    assert_eq!(run_hello(client), "Hello from org.test.Hello version 1");
}

//! The publisher and the clients read a release's `metadata` with one
//! parser (issue 9, open ends): a metadata installing clients would refuse
//! is refused when publishing, with the parser's reason, before anything
//! is published.

use flatipfs_tests::ctl::{create_remote, flatipfsctl, last_json, ok_json};
use flatipfs_tests::fixtures::{self, deploy_dir, hello_ref};
use flatipfs_tests::{StackOptions, TestStack};
use serde_json::json;

#[test]
fn a_publisher_refuses_metadata_clients_would_refuse() {
    let apps = fixtures::test_apps().unwrap();
    let reference = hello_ref(&apps).unwrap();
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    let ipns = create_remote(&stack, "main");
    let scratch = tempfile::tempdir().unwrap();
    let dir = deploy_dir(&apps.join("repo-v1"), &reference, scratch.path()).unwrap();
    let genuine = std::fs::read_to_string(dir.join("metadata")).unwrap();
    let publish = [
        "publish",
        "--json",
        "--remote",
        "main",
        dir.to_str().unwrap(),
    ];
    // A second [Context] (GKeyFile would merge it: the lenient parser the
    // publisher used took the first and published it), and an unknown bus
    // policy.
    for (metadata, says) in [
        (
            format!("{genuine}\n[Context]\nfilesystems=host;\n[Context]\nshared=network;\n"),
            "group [Context] appears twice",
        ),
        (
            format!("{genuine}\n[Session Bus Policy]\norg.example.Name=maybe\n"),
            "unknown bus policy",
        ),
    ] {
        std::fs::write(dir.join("metadata"), &metadata).unwrap();
        let out = flatipfsctl(&stack, None, &publish);
        assert!(!out.status.success(), "{out:?}");
        let error = last_json(&out)["error"].clone();
        assert_eq!(
            error["name"], "org.flatipfs.Manager1.Error.VerificationFailed",
            "{error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("metadata") && message.contains(says),
            "{message}"
        );
    }
    // Nothing was published: the index is still empty.
    let path = stack
        .ipfs(
            1,
            &["name", "resolve", "--nocache", &format!("/ipns/{ipns}")],
        )
        .unwrap();
    let index = flatipfs_tests::index_layout::read_whole(
        &stack,
        1,
        path.trim().trim_start_matches("/ipfs/"),
    );
    assert_eq!(index["apps"], json!({}), "{index}");

    // The genuine metadata publishes.
    std::fs::write(dir.join("metadata"), &genuine).unwrap();
    let published = ok_json(&stack, &publish);
    assert_eq!(published["app"], "org.test.Hello", "{published}");
}

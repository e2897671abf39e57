//! A remote served by a mirror while its publisher is offline: four nodes
//! on the private network (bootstrap, publisher, a mirror that is a plain
//! Kubo node pinning the current releases, a client). The mirror fetches
//! the store index and the releases through routing; with the publisher's node stopped, the
//! client still resolves the remote (the record lives in the DHT) and
//! installs from the mirror, found as a provider through routing.

use flatipfs_tests::ctl::ok_json;
use flatipfs_tests::pair::Pair;
use flatipfs_tests::{StackOptions, TestStack};

#[test]
fn a_client_installs_from_a_mirror_while_the_publisher_is_offline() {
    let pair = Pair::up("");
    let runtime = pair.publish("repo-v1", &pair.runtime_ref.clone());
    let app = pair.publish("repo-v1", &pair.app_ref.clone());
    let mirror = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        network_only: true,
        bootstrap: vec![pair.network.kubo_node(1).unwrap().address.clone()],
        ..Default::default()
    })
    .unwrap();
    // What a mirror keeps: the current store index (resolved through
    // routing) and every release it names.
    let index = mirror
        .ipfs(
            1,
            &[
                "name",
                "resolve",
                "--nocache",
                &format!("/ipns/{}", pair.ipns),
            ],
        )
        .unwrap();
    for path in [index.trim().to_string(), runtime, app] {
        mirror.ipfs(1, &["pin", "add", &path]).unwrap();
    }

    pair.stop_publisher_node();
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    let out = pair
        .client
        .command("flatpak")
        .env("FLATPAK_CONFIG_DIR", pair.client.flatpak_config_dir())
        .args(["run", "org.test.Hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Hello from org.test.Hello version 1"
    );
    let mirror_id = flatipfs_tests::network::peer_id(&mirror.kubo_node(1).unwrap().repo).unwrap();
    let peers = pair.client.ipfs(1, &["swarm", "peers"]).unwrap();
    assert!(peers.contains(&mirror_id), "{peers}");
}

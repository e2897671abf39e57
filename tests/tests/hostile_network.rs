//! Attacks and failures of the network itself: a replayed older store index
//! (signed by the publisher's key, but older than what the client saw) is
//! refused as stale; a record that expired because its publisher stopped
//! republishing gives an error that says when the remote was last seen; a
//! publisher's status warns before its record expires.

use std::time::Duration;

use flatipfs_tests::ctl::{fails_with, flatipfsctl, last_json, ok_json};
use flatipfs_tests::pair::Pair;
use flatipfs_tests::stack::wait_for;

fn run_hello(pair: &Pair) -> String {
    let out = pair
        .client
        .command("flatpak")
        .env("FLATPAK_CONFIG_DIR", pair.client.flatpak_config_dir())
        .args(["run", "org.test.Hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The store index the publisher's node last published (from its own
/// datastore, no cache): CID and document.
fn published_index(pair: &Pair) -> (String, serde_json::Value) {
    let node = &pair.publisher;
    let path = node
        .ipfs(
            1,
            &[
                "name",
                "resolve",
                "--offline",
                "--nocache",
                &format!("/ipns/{}", pair.ipns),
            ],
        )
        .unwrap();
    let cid = path.trim().trim_start_matches("/ipfs/").to_string();
    let index = flatipfs_tests::index_layout::read_whole(node, 1, &cid);
    (cid, index)
}

#[test]
fn a_replayed_older_store_index_is_refused_as_stale() {
    let pair = Pair::up("");
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let (old_index, old) = published_index(&pair);
    pair.publish("repo-v1", &pair.app_ref.clone());
    let (_, current) = published_index(&pair);
    assert!(old["sequence"].as_u64() < current["sequence"].as_u64());
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    let remotes = ok_json(&pair.client, &["remote", "list", "--json"]);
    assert_eq!(
        remotes["remotes"][0]["highest_sequence"], current["sequence"],
        "{remotes}"
    );

    // The older index, validly signed again (a higher IPNS sequence), as
    // someone replaying it would serve it; the client's node resolves it.
    pair.publisher
        .ipfs(
            1,
            &[
                "name",
                "publish",
                "--key=flatipfs-remote-main",
                "--allow-offline",
                &format!("/ipfs/{old_index}"),
            ],
        )
        .unwrap();
    pair.wait_until_client_resolves_index();

    let error = fails_with(
        &pair.client,
        &["update", "--json", "org.test.Hello"],
        "StaleIndex",
    );
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("older than") && message.contains("replayed"),
        "{message}"
    );
    // A check refuses it too, the installed app is untouched and runs.
    let check = flatipfsctl(
        &pair.client,
        None,
        &["update", "--check", "--json", "org.test.Hello"],
    );
    assert!(
        !String::from_utf8_lossy(&check.stdout).contains(&old_index),
        "{check:?}"
    );
    assert_eq!(run_hello(&pair), "Hello from org.test.Hello version 1");
    let info = ok_json(&pair.client, &["info", "--json", "org.test.Hello"]);
    assert_eq!(info["state"], "installed", "{info}");
    // Remembered across a restart of the daemon.
    pair.client
        .process("flatipfsd")
        .unwrap()
        .stop(Duration::from_secs(30))
        .unwrap();
    flatipfs_tests::stack::wait_until("the bus name released", || {
        Ok(!pair.client.name_has_owner(flatipfs_dbus::BUS_NAME)?)
    })
    .unwrap();
    pair.client.start_daemon().unwrap();
    fails_with(
        &pair.client,
        &["update", "--json", "org.test.Hello"],
        "StaleIndex",
    );
}

#[test]
fn records_are_republished_and_an_expired_one_says_when_the_remote_was_last_seen() {
    // Short records: republished every 2 s, valid for 7 s.
    let pair = Pair::up_configured(
        "\n[publishing]\nrepublish_interval = \"2s\"\nrecord_lifetime = \"7s\"\nrecord_ttl = \"1s\"\n",
        "",
    );
    pair.publish_v1();
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );

    // Well past the first record's lifetime, the name still resolves:
    // the publisher's daemon republished it.
    std::thread::sleep(Duration::from_secs(10));
    let checked = ok_json(&pair.client, &["update", "--check", "--json"]);
    assert!(checked.is_object(), "{checked}");
    let status = ok_json(&pair.publisher, &["status", "--json"]);
    assert_eq!(status["warnings"], serde_json::json!([]), "{status}");

    // The publisher's node goes away: republishing fails, status warns.
    pair.stop_publisher_node();
    let mut warned = || {
        let out = flatipfsctl(&pair.publisher, None, &["status", "--json"]);
        Ok(last_json(&out)["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty()))
    };
    wait_for("a warning in status", Duration::from_secs(30), &mut warned).unwrap();
    let out = flatipfsctl(&pair.publisher, None, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Warning:  remote main") && text.contains("store index record"),
        "{text}"
    );

    // Once the record expired, the client cannot resolve the remote and
    // says when it last saw it; the installed app still runs.
    let mut expired = || {
        let out = flatipfsctl(&pair.client, None, &["update", "--json", "org.test.Hello"]);
        Ok(last_json(&out)["error"]["name"] == "org.flatipfs.Manager1.Error.ResolveFailed")
    };
    wait_for(
        "the record to expire",
        Duration::from_secs(60),
        &mut expired,
    )
    .unwrap();
    let error = fails_with(
        &pair.client,
        &["update", "--json", "org.test.Hello"],
        "ResolveFailed",
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("last seen 20"), "{message}");
    assert_eq!(run_hello(&pair), "Hello from org.test.Hello version 1");
}

//! Mirrors on a private network of five nodes ([`Fleet`]: bootstrap,
//! publisher, mirror, two clients, each but the bootstrap node with its own
//! daemon). The publisher lists the mirror's node in its store index
//! (`flatipfsctl remote mirrors add`); the mirror's daemon follows the
//! remote (`flatipfsctl mirror add`) and keeps its releases pinned and
//! provided. A client installs through routing alone; after the mirror
//! caught up and the publisher's node stopped, the second client installs
//! and the first client's scheduler (policy `apply`) updates by itself,
//! both from the mirror; a Kubo restart on a client keeps the listed peers
//! as peering peers and its node reconnects to the mirror by itself.
//! Replayed and expired index records are refused with clear errors in
//! `hostile_network.rs` and `hostile_input.rs` (they need no mirror).

use flatipfs_tests::ctl::{fails_with, flatipfsctl, last_json, ok_json, run_hello};
use flatipfs_tests::fleet::Fleet;
use flatipfs_tests::network;
use flatipfs_tests::stack::wait_for;
use flatipfs_tests::users::{self, PLAIN_USER};
use flatipfs_tests::{Stack, StackOptions, TestStack};
use serde_json::Value;

const LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

fn version(stack: &Stack) -> String {
    ok_json(stack, &["info", "--json", "org.test.Hello"])["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn peering(stack: &Stack) -> String {
    stack.ipfs(1, &["swarm", "peering", "ls"]).unwrap()
}

#[test]
fn a_mirror_serves_installs_and_updates_while_the_publisher_is_offline() {
    let fleet = Fleet::up(
        "\n[updates]\npolicy = \"check\"\ninterval = \"2s\"\njitter = \"1s\"\n",
        "\n[mirror]\ninterval = \"3s\"\nhistory = 1\n",
    );
    let pair = &fleet.pair;
    let mirror_repo = fleet.mirror.kubo_node(1).unwrap().repo.clone();
    let mirror_address = network::peer_address(&mirror_repo).unwrap();
    let mirror_id = network::peer_id(&mirror_repo).unwrap();
    let publisher_id = network::peer_id(&pair.publisher.kubo_node(1).unwrap().repo).unwrap();

    // The publisher lists the mirror: its index names it after itself.
    let added = ok_json(
        &pair.publisher,
        &[
            "remote",
            "mirrors",
            "add",
            "main",
            &mirror_address,
            "--json",
        ],
    );
    assert!(
        added["message"].as_str().unwrap().contains(&mirror_id),
        "{added}"
    );
    let listed = ok_json(
        &pair.publisher,
        &["remote", "mirrors", "list", "main", "--json"],
    );
    assert_eq!(listed["mirrors"][0]["id"], mirror_id.as_str(), "{listed}");
    let (_, index) = pair.current_index();
    assert_eq!(index["peers"][0]["id"], publisher_id.as_str(), "{index}");
    assert_eq!(index["peers"][1]["id"], mirror_id.as_str(), "{index}");
    assert_eq!(
        format!(
            "{}/p2p/{mirror_id}",
            index["peers"][1]["addrs"][0].as_str().unwrap()
        ),
        mirror_address
    );

    pair.publish_v1();
    // The mirror follows the remote: index, catalog, runtime and app.
    ok_json(&fleet.mirror, &["mirror", "add", "main", "--json"]);
    let entry = fleet.wait_until_mirror_synced().unwrap();
    assert_eq!(entry["releases"], 2, "{entry}");
    assert!(entry["bytes"].as_u64() > Some(0), "{entry}");
    let status = ok_json(&fleet.mirror, &["status", "--json"]);
    assert_eq!(status["mirrors"][0]["remote"], "main", "{status}");

    // The first client installs through routing alone.
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(
        run_hello(&pair.client),
        "Hello from org.test.Hello version 1"
    );

    // Version 2; the mirror catches up and keeps version 1 as history.
    let v2 = pair.publish("repo-v2", &pair.app_ref.clone());
    let entry = fleet.wait_until_mirror_synced().unwrap();
    assert_eq!(entry["releases"], 3, "{entry}");
    let pins = fleet
        .mirror
        .ipfs(1, &["pin", "ls", "--type=recursive"])
        .unwrap();
    assert!(pins.contains(&v2), "{pins}");
    // The mirror's node provides it: the DHT names it as a provider (asked
    // from the bootstrap node, which keeps no one as a peering peer).
    let mut provided = || {
        Ok(pair
            .network
            .ipfs(1, &["routing", "findprovs", "--num-providers=5", &v2])?
            .lines()
            .any(|p| p.trim() == mirror_id))
    };
    wait_for(
        "the DHT to name the mirror as a provider",
        LIMIT,
        &mut provided,
    )
    .unwrap();
    network::wait_until_resolved(&pair.publisher, 1, &fleet.second, 1, &pair.ipns).unwrap();

    // The publisher goes offline.
    pair.stop_publisher_node();

    // The second client installs from the mirror...
    ok_json(
        &fleet.second,
        &["install", "--json", "main", "org.test.Hello"],
    );
    assert_eq!(
        run_hello(&fleet.second),
        "Hello from org.test.Hello version 2"
    );
    // ...and the first client's scheduler updates by itself.
    ok_json(&pair.client, &["policy", "apply", "--json"]);
    let mut applied = || Ok(version(&pair.client) == "2");
    wait_for("version 2 applied by the scheduler", LIMIT, &mut applied).unwrap();
    assert_eq!(
        run_hello(&pair.client),
        "Hello from org.test.Hello version 2"
    );

    // The second client's node keeps the listed peers as peering peers
    // across a restart and reconnects to the mirror by itself.
    let before = peering(&fleet.second);
    assert!(
        before.contains(&mirror_id) && before.contains(&publisher_id),
        "{before}"
    );
    fleet.second.stop_kubo(1).unwrap();
    fleet.second.start_kubo(1).unwrap();
    fleet.second.wait_kubo_usable().unwrap();
    assert!(peering(&fleet.second).contains(&mirror_id));
    let mut reconnected = || {
        Ok(fleet
            .second
            .ipfs(1, &["swarm", "peers"])?
            .lines()
            .any(|p| p.trim().ends_with(&mirror_id)))
    };
    wait_for(
        "the client's node to reconnect to the mirror",
        LIMIT,
        &mut reconnected,
    )
    .unwrap();
    assert_eq!(
        run_hello(&fleet.second),
        "Hello from org.test.Hello version 2"
    );

    // Removing the remote on a client drops its peering peers.
    ok_json(&fleet.second, &["uninstall", "--json", "org.test.Hello"]);
    ok_json(&fleet.second, &["remote", "remove", "main", "--json"]);
    let after = peering(&fleet.second);
    assert!(
        !after.contains(&mirror_id) && !after.contains(&publisher_id),
        "{after}"
    );
    let configured = fleet
        .second
        .ipfs(1, &["config", "Peering.Peers"])
        .unwrap_or_default();
    assert!(!configured.contains(&mirror_id), "{configured}");

    // Stopping the mirror unpins what it held.
    ok_json(&fleet.mirror, &["mirror", "remove", "main", "--json"]);
    let pins = fleet
        .mirror
        .ipfs(1, &["pin", "ls", "--type=recursive"])
        .unwrap();
    assert!(!pins.contains(&v2), "{pins}");
    assert_eq!(fleet.mirror_entry(), Value::Null);
}

/// A mirror survives a restart of its daemon: it syncs again at start and
/// keeps what it holds.
#[test]
fn a_mirror_is_kept_across_a_daemon_restart() {
    let fleet = Fleet::up("", "\n[mirror]\ninterval = \"1h\"\n");
    let pair = &fleet.pair;
    pair.publish_v1();
    ok_json(
        &fleet.mirror,
        &["mirror", "add", "main", "--history", "0", "--json"],
    );
    let entry = fleet.wait_until_mirror_synced().unwrap();
    assert_eq!(entry["history"], 0, "{entry}");
    let v2 = pair.publish("repo-v2", &pair.app_ref.clone());
    // The next sync is an hour away; a restarted daemon syncs at start.
    fleet
        .mirror
        .process("flatipfsd")
        .unwrap()
        .stop(std::time::Duration::from_secs(15))
        .unwrap();
    fleet.mirror.start_daemon().unwrap();
    let entry = fleet.wait_until_mirror_synced().unwrap();
    // Runtime and app version 2; version 1 fell out (no history).
    assert_eq!(entry["releases"], 2, "{entry}");
    let pins = fleet
        .mirror
        .ipfs(1, &["pin", "ls", "--type=recursive"])
        .unwrap();
    assert!(pins.contains(&v2), "{pins}");
}

/// The mirror commands: refused to a plain user before anything changes,
/// typed errors for bad peers and unknown remotes.
#[test]
fn mirror_commands_are_authorized_and_checked() {
    let stack = TestStack::up(&StackOptions {
        kubo_nodes: 1,
        ..Default::default()
    })
    .unwrap();
    users::ensure_test_users().unwrap();
    let ipns = flatipfs_tests::ctl::create_remote(&stack, "main");
    ok_json(
        &stack,
        &["remote", "add", "local", &format!("/ipns/{ipns}"), "--json"],
    );
    let state = || std::fs::read_to_string(stack.dir.join("state/state.json")).unwrap();
    let before = state();
    let peer = "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWLsSWaRsoCejZ6RMsGqdftpKbohczNqs3jvNfPgRwrMp2";

    for args in [
        vec!["mirror", "add", "local"],
        vec!["mirror", "remove", "local"],
        vec!["remote", "mirrors", "add", "main", peer],
        vec!["remote", "mirrors", "remove", "main", peer],
    ] {
        let mut args = args.clone();
        args.push("--json");
        let out = flatipfsctl(&stack, Some(PLAIN_USER), &args);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
        let name = last_json(&out)["error"]["name"].clone();
        assert!(
            name == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
                || name == "org.freedesktop.DBus.Error.AccessDenied",
            "{args:?}: {name}"
        );
    }
    assert_eq!(state(), before, "a refused call changed the state");

    // Bad peers and unknown remotes, as root: typed errors, nothing changed.
    for bad in [
        "12D3KooW",
        "/ip4/192.0.2.7/tcp/4001",
        "/ip4/192.0.2.7/tcp/4001/p2p/QmNotAPeer",
        "/unix/run/x/p2p/12D3KooWLsSWaRsoCejZ6RMsGqdftpKbohczNqs3jvNfPgRwrMp2",
    ] {
        let error = fails_with(
            &stack,
            &["remote", "mirrors", "add", "main", bad, "--json"],
            "org.freedesktop.DBus.Error.InvalidArgs",
        );
        assert!(
            error["message"].as_str().unwrap().contains("invalid peer"),
            "{error}"
        );
    }
    fails_with(
        &stack,
        &["remote", "mirrors", "add", "nosuch", peer, "--json"],
        "NotFound",
    );
    let error = fails_with(&stack, &["mirror", "add", "nosuch", "--json"], "NotFound");
    assert!(
        error["message"].as_str().unwrap().contains("remote add"),
        "{error}"
    );
    fails_with(&stack, &["mirror", "remove", "local", "--json"], "NotFound");
    assert_eq!(state(), before);

    // The same as root work, and are listed.
    ok_json(
        &stack,
        &["remote", "mirrors", "add", "main", peer, "--json"],
    );
    let listed = ok_json(&stack, &["remote", "mirrors", "list", "main", "--json"]);
    assert_eq!(listed["mirrors"][0]["addrs"][0], "/ip4/192.0.2.7/tcp/4001");
    ok_json(
        &stack,
        &["remote", "mirrors", "remove", "main", peer, "--json"],
    );
    let listed = ok_json(&stack, &["remote", "mirrors", "list", "main", "--json"]);
    assert_eq!(listed["mirrors"], serde_json::json!([]), "{listed}");
    fails_with(
        &stack,
        &["remote", "mirrors", "remove", "main", peer, "--json"],
        "NotFound",
    );
}

/// A mirror refuses a replayed older index as the clients do, keeping what
/// it holds; once the record expired it keeps holding the releases and its
/// status says when the remote was last seen (clients say the same).
#[test]
fn a_mirror_refuses_a_replayed_index_and_reports_an_expired_record() {
    let fleet = Fleet::up("", "\n[mirror]\ninterval = \"2s\"\n");
    let pair = &fleet.pair;
    pair.publish("repo-v1", &pair.runtime_ref.clone());
    let (old_index, _) = pair.current_index();
    let app = pair.publish("repo-v1", &pair.app_ref.clone());
    ok_json(&fleet.mirror, &["mirror", "add", "main", "--json"]);
    let synced = fleet.wait_until_mirror_synced().unwrap();
    assert_eq!(synced["releases"], 2, "{synced}");
    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );

    // The publisher's daemon stops (no more republishing); someone replays
    // the older index, validly signed again, with a short lifetime.
    pair.publisher
        .process("flatipfsd")
        .unwrap()
        .stop(std::time::Duration::from_secs(15))
        .unwrap();
    pair.publisher
        .ipfs(
            1,
            &[
                "name",
                "publish",
                "--key=flatipfs-remote-main",
                "--allow-offline",
                "--lifetime=40s",
                "--ttl=1s",
                &format!("/ipfs/{old_index}"),
            ],
        )
        .unwrap();
    network::wait_until_resolved(&pair.publisher, 1, &fleet.mirror, 1, &pair.ipns).unwrap();
    pair.wait_until_client_resolves_index();
    // The replayer serves the old document (here: the bootstrap node).
    pair.network.ipfs(1, &["pin", "add", &old_index]).unwrap();
    // The publisher's node goes too: Kubo's own republisher (a minute after start, then
    // every 4 h) would sign the replayed record again with a long lifetime.
    pair.stop_publisher_node();
    let mut refused = || {
        let entry = fleet.mirror_entry();
        Ok(entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("older than") && e.contains("replayed")))
    };
    wait_for(
        "the mirror to refuse the replayed index",
        LIMIT,
        &mut refused,
    )
    .unwrap();
    let entry = fleet.mirror_entry();
    assert_eq!(entry["releases"], 2, "{entry}");
    assert_eq!(entry["sequence"], synced["sequence"], "{entry}");
    let pins = fleet
        .mirror
        .ipfs(1, &["pin", "ls", "--type=recursive"])
        .unwrap();
    assert!(
        pins.contains(&app),
        "the mirror dropped the current app: {pins}"
    );
    pair.wait_until_client_resolves_index();
    fails_with(
        &pair.client,
        &["update", "--json", "org.test.Hello"],
        "StaleIndex",
    );

    // The replayed record expires: nothing resolves the remote any more,
    // neither on the mirror nor on the client.
    let mut last = (Value::Null, Value::Null);
    let mut expired = || {
        let out = flatipfsctl(&pair.client, None, &["update", "--json", "org.test.Hello"]);
        last = (fleet.mirror_entry(), last_json(&out));
        Ok(last.0["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot resolve") && e.contains("last seen 20"))
            && last.1["error"]["name"] == "org.flatipfs.Manager1.Error.ResolveFailed")
    };
    let waited = wait_for("the record to expire", LIMIT, &mut expired);
    assert!(
        waited.is_ok(),
        "{:#}: {last:?}",
        waited.err().map(|e| format!("{e:#}")).unwrap_or_default()
    );
    let out = flatipfsctl(&fleet.mirror, None, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Mirror:   main") && text.contains("last seen"),
        "{text}"
    );
    assert_eq!(fleet.mirror_entry()["releases"], 2);
    let message = last.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("last seen 20"), "{message}");
    assert_eq!(
        run_hello(&pair.client),
        "Hello from org.test.Hello version 1"
    );
}

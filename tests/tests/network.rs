//! The private IPFS network of the tests: a client's node that knows only
//! the network's bootstrap node finds the publisher's store index, the
//! publisher as provider of a release, and connects to it, through routing
//! alone (no record or peer carried by hand).

use flatipfs_tests::ctl::ok_json;
use flatipfs_tests::network;
use flatipfs_tests::pair::Pair;
use serde_json::Value;

#[test]
fn a_client_finds_the_publisher_through_routing_alone() {
    let pair = Pair::up("");
    let publisher_id = network::peer_id(&pair.publisher.kubo_node(1).unwrap().repo).unwrap();
    let bootstrap_id = network::peer_id(&pair.network.kubo_node(1).unwrap().repo).unwrap();

    // The client's node was told of the bootstrap node only.
    let config: Value =
        serde_json::from_str(&pair.client.ipfs(1, &["config", "show"]).unwrap()).unwrap();
    let bootstrap = config["Bootstrap"].as_array().unwrap();
    assert_eq!(bootstrap.len(), 1, "{bootstrap:?}");
    assert!(
        bootstrap[0].as_str().unwrap().ends_with(&bootstrap_id),
        "{bootstrap:?}"
    );
    assert!(
        !config.to_string().contains(&publisher_id),
        "the client's configuration names the publisher: {config}"
    );

    let release = pair.publish_v1();
    // The DHT names the publisher as a provider of the release.
    let providers = pair
        .client
        .ipfs(1, &["routing", "findprovs", "--num-providers=5", &release])
        .unwrap();
    assert!(
        providers.lines().any(|p| p.trim() == publisher_id),
        "findprovs {release} on the client: {providers:?}"
    );

    ok_json(
        &pair.client,
        &["install", "--json", "main", "org.test.Hello"],
    );
    let installed = ok_json(&pair.client, &["list", "--json"]);
    assert!(
        installed.to_string().contains("org.test.Hello"),
        "{installed}"
    );
    // The install fetched from the publisher: its node is connected now.
    let peers = pair.client.ipfs(1, &["swarm", "peers"]).unwrap();
    assert!(
        peers.lines().any(|p| p.trim().ends_with(&publisher_id)),
        "swarm peers of the client: {peers}"
    );

    // The index names the publisher's node; the client's daemon made it a
    // peering peer of its node, kept across a restart of the node.
    let remotes = ok_json(&pair.client, &["remote", "list", "--json"]);
    assert!(
        remotes["remotes"][0]["last_seen"].as_u64() > Some(0),
        "{remotes}"
    );
    let (_, index) = pair.current_index();
    assert_eq!(index["peers"][0]["id"], publisher_id.as_str(), "{index}");
    let peering = pair.client.ipfs(1, &["swarm", "peering", "ls"]).unwrap();
    assert!(peering.contains(&publisher_id), "{peering}");
    pair.client.stop_kubo(1).unwrap();
    pair.client.start_kubo(1).unwrap();
    let peering = pair.client.ipfs(1, &["swarm", "peering", "ls"]).unwrap();
    assert!(
        peering.contains(&publisher_id),
        "peering lost on restart: {peering}"
    );
}

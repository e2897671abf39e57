//! The private IPFS network of the tests, the demo and the benchmarks.
//!
//! Every Kubo node the harness starts is configured like a node of the public
//! network (a DHT server that provides what it adds and resolves IPNS names
//! through the DHT) whose only knowledge of the others is its bootstrap list,
//! and which reaches nothing outside the machine: no autoconf, no delegated
//! routers or publishers, no DNS resolvers, no mDNS, no NAT port mapping, no
//! telemetry. On loopback the LAN DHT drops loopback addresses from its
//! replies unless `Routing.LoopbackAddressesOnLanDHT` is set (measured in
//! `/work/shared/reference/ipfs-network.md`), so it is set.
//!
//! Nothing here connects peers or carries records: nodes find each other,
//! providers and IPNS records through routing. [`wait_until_resolved`] waits
//! (bounded) until a node resolves a name to what its publisher published.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::paths;
use crate::stack::{run_ok, wait_for, Stack};

/// How long a node may take to resolve a newly published record.
pub const RESOLVE_LIMIT: Duration = Duration::from_secs(60);

/// Rewrites the configuration of the (stopped) node in `repo` for the
/// private network: API on `api`, swarm on `127.0.0.1:swarm_port`,
/// `bootstrap` (full `/p2p/` multiaddrs, possibly empty for the network's
/// own bootstrap node) as the only peers it knows.
pub fn configure(repo: &Path, api: &str, swarm_port: u16, bootstrap: &[String]) -> Result<()> {
    let path = repo.join("config");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let settings = [
        ("Addresses.API", json!(api)),
        ("Addresses.Gateway", json!([])),
        (
            "Addresses.Swarm",
            json!([format!("/ip4/127.0.0.1/tcp/{swarm_port}")]),
        ),
        ("Bootstrap", json!(bootstrap)),
        ("AutoConf.Enabled", json!(false)),
        ("AutoTLS.Enabled", json!(false)),
        ("Routing.Type", json!("dhtserver")),
        ("Routing.DelegatedRouters", json!([])),
        ("Routing.LoopbackAddressesOnLanDHT", json!(true)),
        ("Ipns.DelegatedPublishers", json!([])),
        ("DNS.Resolvers", json!({})),
        ("Discovery.MDNS.Enabled", json!(false)),
        ("Swarm.DisableNatPortMap", json!(true)),
        ("Plugins.Plugins.telemetry.Disabled", json!(true)),
    ];
    for (key, value) in settings {
        set(&mut config, key, value);
    }
    let tmp = repo.join("config.flatipfs-tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(&config)?)?;
    fs::rename(&tmp, &path)?;
    Ok(())
}

/// Sets dotted `key` in a JSON object, creating objects on the way.
fn set(config: &mut Value, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("a key has a last part");
    let mut at = config;
    for part in parts {
        if !at.get(part).is_some_and(Value::is_object) {
            at[part] = json!({});
        }
        at = &mut at[part];
    }
    at[last] = value;
}

/// The full swarm multiaddr (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`) of the node
/// in `repo`, read from its configuration (the node need not run).
pub fn peer_address(repo: &Path) -> Result<String> {
    let path = repo.join("config");
    let config: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
    )?;
    let id = config["Identity"]["PeerID"]
        .as_str()
        .context("the node's config has no Identity.PeerID")?;
    let swarm = config["Addresses"]["Swarm"]
        .as_array()
        .and_then(|a| a.iter().filter_map(Value::as_str).next())
        .context("the node's config has no Addresses.Swarm")?;
    Ok(format!("{swarm}/p2p/{id}"))
}

/// The peer ID of the node in `repo`.
pub fn peer_id(repo: &Path) -> Result<String> {
    let address = peer_address(repo)?;
    Ok(address
        .rsplit("/p2p/")
        .next()
        .context("an address with /p2p/")?
        .to_string())
}

/// Waits until node `to` of `client` resolves `/ipns/NAME`, through routing
/// (`name resolve --nocache`), to what node `from` of `publisher` published
/// last. Fails with a clear message after [`RESOLVE_LIMIT`].
pub fn wait_until_resolved(
    publisher: &Stack,
    from: usize,
    client: &Stack,
    to: usize,
    name: &str,
) -> Result<()> {
    let path = format!("/ipns/{name}");
    let published = publisher
        .ipfs(from, &["name", "resolve", "--offline", "--nocache", &path])
        .with_context(|| format!("the publishing node has no record of {path}"))?
        .trim()
        .to_string();
    let kubo = paths::kubo_binary()?;
    let repo = client.kubo_node(to)?.repo.clone();
    let mut last = String::from("nothing yet");
    let mut resolved = || {
        let answer = run_ok(Command::new(&kubo).env("IPFS_PATH", &repo).args([
            "--timeout=10s",
            "name",
            "resolve",
            "--nocache",
            &path,
        ]));
        match answer {
            Ok(out) if out.trim() == published => Ok(true),
            Ok(out) => {
                last = out.trim().to_string();
                Ok(false)
            }
            Err(e) => {
                last = format!("{e:#}");
                Ok(false)
            }
        }
    };
    if wait_for("a resolve", RESOLVE_LIMIT, &mut resolved).is_err() {
        bail!(
            "node {to} of {} did not resolve {path} to {published} through routing within {RESOLVE_LIMIT:?} (last answer: {last})",
            client.dir.display()
        );
    }
    Ok(())
}

//! Five nodes on the private network ([`crate::network`]): the bootstrap
//! node, a publisher, a mirror and two clients, each of the last four with
//! its own system bus, polkitd, Kubo node and flatipfsd. Built on
//! [`Pair`] (bootstrap, publisher, first client, remote `main`); the
//! mirror's and the second client's daemons trust `main` too. Nothing
//! connects nodes or carries records: each knows only the bootstrap node.

use anyhow::{bail, Result};
use serde_json::Value;

use crate::ctl::ok_json;
use crate::pair::Pair;
use crate::stack::wait_for;
use crate::{StackOptions, TestStack};

/// The five nodes.
pub struct Fleet {
    /// Bootstrap node, publisher, first client.
    pub pair: Pair,
    /// A daemon that mirrors `main` (`flatipfsctl mirror add main`).
    pub mirror: TestStack,
    /// A second client.
    pub second: TestStack,
}

impl Fleet {
    /// Starts the five nodes; `client_config` goes to the first client's
    /// daemon, `mirror_config` to the mirror's.
    pub fn up(client_config: &str, mirror_config: &str) -> Fleet {
        let pair = Pair::up(client_config);
        let bootstrap = vec![pair.network.kubo_node(1).unwrap().address.clone()];
        let stack = |config: &str, rules: bool| {
            TestStack::up(&StackOptions {
                kubo_nodes: 1,
                bootstrap: bootstrap.clone(),
                extra_config: config.to_string(),
                test_polkit_rules: rules,
                ..Default::default()
            })
            .unwrap()
        };
        let mirror = stack(mirror_config, false);
        let second = stack("", true);
        let address = format!("/ipns/{}", pair.ipns);
        for s in [&mirror, &second] {
            ok_json(s, &["remote", "add", "main", &address, "--json"]);
        }
        Fleet {
            pair,
            mirror,
            second,
        }
    }

    /// The mirror's entry of `main` in `flatipfsctl mirror list --json`.
    pub fn mirror_entry(&self) -> Value {
        let listed = ok_json(&self.mirror, &["mirror", "list", "--json"]);
        listed["mirrors"]
            .as_array()
            .and_then(|m| m.iter().find(|e| e["remote"] == "main").cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits (bounded) until the mirror has synced the store index the
    /// publisher published last; returns its entry.
    pub fn wait_until_mirror_synced(&self) -> Result<Value> {
        let (_, index) = self.pair.current_index();
        let sequence = index["sequence"].as_u64().unwrap_or(0);
        let mut last = Value::Null;
        let mut synced = || {
            last = self.mirror_entry();
            Ok(last["sequence"].as_u64() >= Some(sequence)
                && last["last_sync"].as_u64() > Some(0)
                && last.get("last_error").is_none())
        };
        if wait_for(
            "the mirror to sync",
            std::time::Duration::from_secs(180),
            &mut synced,
        )
        .is_err()
        {
            bail!("the mirror did not sync index sequence {sequence}: {last}");
        }
        Ok(last)
    }
}

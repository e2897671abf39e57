//! Watches the Kubo node and publishes a [`KuboStatus`] whenever it changes.
//!
//! Polls `version` and `swarm/peers` every `kubo.status_interval` and at once
//! when the node's address changes (the embedded node restarted, or a
//! reloaded configuration names another API). Consumers subscribe to a
//! `watch` channel; the D-Bus layer turns changes into `PropertiesChanged`.
//!
//! The status names the API address of a configured node only (the
//! administrator's own choice); the embedded node's socket is for the
//! daemon alone and is never shown (`docs/security-kubo.md`).

use std::sync::Arc;

use flatipfs_dbus::KuboStatus;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;
use crate::kubo::{self, Client};

/// Where the node's API address comes from.
pub enum ApiSource {
    /// `kubo.api` of the (reloadable) configuration.
    Configured,
    /// The embedded node's supervisor.
    Embedded(watch::Receiver<Option<String>>),
}

/// Starts polling; `tx` always holds the latest status.
pub fn spawn(
    config: watch::Receiver<Arc<Config>>,
    source: ApiSource,
    tx: watch::Sender<KuboStatus>,
) {
    tokio::spawn(run(config, source, tx));
}

/// The status shown until the first look at the node.
pub fn starting(embedded: bool) -> KuboStatus {
    KuboStatus {
        embedded,
        error: "starting".into(),
        ..Default::default()
    }
}

async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    mut source: ApiSource,
    tx: watch::Sender<KuboStatus>,
) {
    loop {
        let current = config.borrow_and_update().clone();
        let (address, embedded) = match &mut source {
            ApiSource::Configured => (current.kubo.api.clone(), false),
            ApiSource::Embedded(api) => (api.borrow_and_update().clone(), true),
        };
        let status = probe(address.as_deref(), embedded, &current).await;
        let previous = tx.borrow().clone();
        if status != previous {
            let api = address.as_deref().unwrap_or_default();
            if status.usable() && !previous.usable() {
                info!(api, version = %status.version, "Kubo is reachable");
            } else if !status.usable() && previous.usable() {
                warn!(api, error = %status.error, "Kubo is not usable");
            }
            tx.send_replace(status);
        }
        let sleep = tokio::time::sleep(current.kubo.status_interval);
        match &mut source {
            ApiSource::Configured => tokio::select! {
                _ = sleep => {}
                changed = config.changed() => if changed.is_err() { return },
            },
            ApiSource::Embedded(api) => tokio::select! {
                _ = sleep => {}
                changed = config.changed() => if changed.is_err() { return },
                changed = api.changed() => if changed.is_err() { return },
            },
        }
    }
}

/// One look at the node.
pub async fn probe(address: Option<&str>, embedded: bool, config: &Config) -> KuboStatus {
    let mut status = KuboStatus {
        embedded,
        api: if embedded {
            String::new()
        } else {
            address.unwrap_or_default().to_string()
        },
        ..Default::default()
    };
    let Some(address) = address else {
        status.error = "the embedded Kubo node is not running".into();
        return status;
    };
    let client = match Client::new(address, config.kubo.request_timeout) {
        Ok(client) => client,
        Err(e) => {
            status.error = e.to_string();
            return status;
        }
    };
    match client.version().await {
        Ok(v) => {
            status.reachable = true;
            status.version = v.version.clone();
            if let Err(e) = kubo::check_version(&v.version) {
                status.error = e.to_string();
            }
        }
        Err(e) => {
            status.error = e.to_string();
            return status;
        }
    }
    match client.peer_count().await {
        Ok(peers) => status.peers = peers,
        Err(e) => warn!("cannot count Kubo's peers: {e}"),
    }
    status
}

//! The daemon's core state: the configuration in force and its reloading.
//!
//! Later concerns (apps, jobs, remotes) hang off [`Manager`] too; the D-Bus
//! objects in `api` only translate calls into methods of this type.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use flatipfs_dbus::KuboStatus;
use tokio::sync::Mutex;

use crate::apps::Apps;
use crate::config::{Config, ConfigError};
use crate::jobs::Jobs;
use crate::kubo::{self, Client};
use crate::publish::{PublishError, Publisher};
use crate::remotes::Remotes;
use crate::store::Store;
use crate::tree::Limits;

/// What the daemon is and knows.
pub struct Manager {
    config_path: PathBuf,
    config_missing_ok: bool,
    config: watch::Sender<Arc<Config>>,
    /// The Kubo node as the monitor last saw it.
    kubo: watch::Receiver<KuboStatus>,
    /// The embedded node's API address (its fixed unix socket), `None`
    /// when `kubo.api` names the node.
    embedded_api: Option<String>,
    /// Every job of this daemon.
    pub jobs: Jobs,
    /// The installed apps at run time.
    pub apps: Arc<Apps>,
    /// The automatic update scheduler's handle.
    pub scheduler: crate::updates::Scheduler,
    /// Startup set recordings in progress.
    pub recordings: crate::recording::Recordings,
    /// Wakes the mirror loop.
    pub mirrors: crate::mirror::Wake,
    /// Serializes every read-modify-write of the state file.
    state_lock: Arc<Mutex<()>>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq)]
pub struct Reloaded {
    /// Keys whose new value only takes effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Manager {
    /// A manager running with `config`, read from `config_path`.
    pub fn new(
        config_path: PathBuf,
        config_missing_ok: bool,
        config: watch::Sender<Arc<Config>>,
        kubo: watch::Receiver<KuboStatus>,
    ) -> Self {
        let embedded_api = {
            let config = config.borrow();
            config
                .kubo
                .api
                .is_none()
                .then(|| crate::kubo_node::socket_multiaddr(&config.embedded_kubo_socket()))
        };
        Manager {
            config_path,
            config_missing_ok,
            config,
            kubo,
            embedded_api,
            jobs: Jobs::default(),
            apps: Arc::default(),
            scheduler: Default::default(),
            recordings: Default::default(),
            mirrors: Default::default(),
            state_lock: Arc::default(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The state file.
    pub fn store(&self) -> Store {
        Store::new(&self.config.borrow().state_directory)
    }

    /// Serializes every read-modify-write of the state file.
    pub fn state_lock(&self) -> Arc<Mutex<()>> {
        self.state_lock.clone()
    }

    /// The node's API address: the embedded node's fixed socket, or
    /// `kubo.api` as configured now.
    pub fn kubo_address(&self) -> Result<String, kubo::KuboError> {
        self.embedded_api
            .clone()
            .or_else(|| self.config.borrow().kubo.api.clone())
            .ok_or_else(|| kubo::KuboError::NotUsable("no Kubo API address".into()))
    }

    /// The store of local files (`local_store`), when in use: with the
    /// embedded Kubo node and `fetch.local_files`.
    pub fn local_store(&self) -> Option<crate::local_store::LocalStore> {
        let config = self.config();
        (self.embedded_api.is_some() && config.fetch.local_files)
            .then(|| crate::local_store::LocalStore::new(&config.state_directory))
    }

    /// The FUSE pool that serves every mounted release, started on first
    /// use on `<state_directory>/fuse`. Its one Kubo client works
    /// whether or not the node is up: reads fail with EIO while it is down
    /// and go on once it is back (the embedded node's socket never moves;
    /// a configured `kubo.api` is read once, when the pool starts).
    pub fn pool(&self) -> Result<Arc<crate::fuse::Pool>, crate::install::InstallError> {
        self.apps.pool_or_start(|| {
            let config = self.config();
            // The pool bounds each read itself (fetch.read_timeout).
            let client = Client::new(
                &self.kubo_address()?,
                config.fetch.read_timeout + std::time::Duration::from_secs(5),
            )?;
            Ok(crate::fuse::Pool::start(
                &config.state_directory.join("fuse"),
                client,
                config.fetch.read_timeout,
                self.local_store(),
            )?)
        })
    }

    /// How long finished jobs stay on the bus.
    pub fn grace_period(&self) -> std::time::Duration {
        self.config.borrow().jobs.grace_period
    }

    /// A client of the Kubo node, if it is usable now.
    pub fn kubo(&self) -> Result<(Client, String), kubo::KuboError> {
        let status = self.kubo.borrow().clone();
        if !status.usable() {
            return Err(kubo::KuboError::NotUsable(if status.error.is_empty() {
                "not reachable".into()
            } else {
                status.error
            }));
        }
        let config = self.config.borrow().clone();
        Ok((
            Client::new(&self.kubo_address()?, config.kubo.request_timeout)?,
            status.version,
        ))
    }

    /// The remotes this daemon installs from.
    pub fn remotes(&self) -> Remotes {
        let config = self.config.borrow().clone();
        Remotes {
            store: Store::new(&config.state_directory),
            lock: self.state_lock.clone(),
            republish_interval: config.publishing.republish_interval,
        }
    }

    /// The publisher, bound to the current Kubo node and configuration.
    pub async fn publisher(&self) -> Result<Publisher, PublishError> {
        let (kubo, kubo_version) = self.kubo()?;
        let config = self.config.borrow().clone();
        Ok(Publisher {
            kubo,
            kubo_version,
            store: Store::new(&config.state_directory),
            scratch: config.state_directory.join("tmp"),
            limits: Limits {
                max_file_size: config.limits.max_file_size,
                max_entries: config.limits.max_entries,
            },
            encode: config.publish.encode_options(),
            lock: self.state_lock.clone(),
            records: config.publishing.clone(),
        })
    }

    /// Re-reads the configuration file. An invalid file changes nothing.
    pub fn reload_config(&self) -> Result<Reloaded, ConfigError> {
        let new = Config::load(&self.config_path, self.config_missing_ok)?;
        let old = self.config.borrow().clone();
        let mut reloaded = Reloaded::default();
        let fixed: [(&'static str, bool); 8] = [
            ("log_level", old.log_level != new.log_level),
            (
                "state_directory",
                old.state_directory != new.state_directory,
            ),
            (
                "kubo.api (embedded or not)",
                old.kubo.api.is_some() != new.kubo.api.is_some(),
            ),
            ("kubo.binary", old.kubo.binary != new.kubo.binary),
            ("kubo.user", old.kubo.user != new.kubo.user),
            (
                "kubo.init_profiles",
                old.kubo.init_profiles != new.kubo.init_profiles,
            ),
            (
                "kubo.restart_delay",
                old.kubo.restart_delay != new.kubo.restart_delay,
            ),
            ("installation", old.installation != new.installation),
        ];
        for (key, changed) in fixed {
            if changed {
                warn!(
                    "{key} changed in {}; it takes effect when flatipfsd restarts",
                    self.config_path.display()
                );
                reloaded.needs_restart.push(key);
            }
        }
        info!(path = %self.config_path.display(), "configuration reloaded");
        self.config.send_replace(Arc::new(new));
        Ok(reloaded)
    }
}

//! The daemon's core state: the configuration in force and its reloading.
//!
//! Later concerns (apps, jobs, remotes) hang off [`Manager`] too; the D-Bus
//! objects in `api` only translate calls into methods of this type.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, ConfigError};

/// What the daemon is and knows.
pub struct Manager {
    config_path: PathBuf,
    config_missing_ok: bool,
    config: watch::Sender<Arc<Config>>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq)]
pub struct Reloaded {
    /// Keys whose new value only takes effect after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Manager {
    /// A manager running with `config`, read from `config_path`.
    pub fn new(config_path: PathBuf, config_missing_ok: bool, config: Config) -> Self {
        let (config, _) = watch::channel(Arc::new(config));
        Manager {
            config_path,
            config_missing_ok,
            config,
        }
    }

    /// The configuration in force; follow it with `changed()`.
    pub fn config(&self) -> watch::Receiver<Arc<Config>> {
        self.config.subscribe()
    }

    /// Re-reads the configuration file. An invalid file changes nothing.
    pub fn reload_config(&self) -> Result<Reloaded, ConfigError> {
        let new = Config::load(&self.config_path, self.config_missing_ok)?;
        let old = self.config.borrow().clone();
        let mut reloaded = Reloaded::default();
        let fixed: [(&'static str, bool); 6] = [
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
            (
                "kubo.init_profiles",
                old.kubo.init_profiles != new.kubo.init_profiles,
            ),
            (
                "kubo.restart_delay",
                old.kubo.restart_delay != new.kubo.restart_delay,
            ),
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

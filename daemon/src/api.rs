//! The D-Bus objects of `org.flatipfs.Manager1`.
//!
//! This layer only translates: it validates arguments, asks the polkit gate,
//! calls into [`Manager`], and maps results and errors to D-Bus. Property
//! changes coming from below are emitted as `PropertiesChanged` here.

use std::collections::HashMap;
use std::sync::Arc;

use flatipfs_dbus::polkit::Action;
use flatipfs_dbus::{Error, ErrorKind, KuboStatus, MANAGER_PATH};
use tokio::sync::watch;
use tracing::warn;
use zbus::interface;
use zbus::message::Header;

use crate::manager::Manager;
use crate::policy::{Denied, Gate};

/// What this daemon implements, as the `Features` property lists it.
pub const FEATURES: &[&str] = &["kubo-status", "reload-config"];

/// The manager object at `/org/flatipfs/Manager1`.
pub struct ManagerObject {
    manager: Arc<Manager>,
    gate: Gate,
    kubo_status: KuboStatus,
}

impl ManagerObject {
    pub fn new(manager: Arc<Manager>, gate: Gate, kubo_status: KuboStatus) -> Self {
        ManagerObject {
            manager,
            gate,
            kubo_status,
        }
    }

    async fn authorize(
        &self,
        header: &Header<'_>,
        action: Action,
        details: &HashMap<&str, &str>,
    ) -> Result<(), Error> {
        self.gate
            .authorize(header, action, details)
            .await
            .map_err(|denied| match denied {
                Denied::Refused { .. } => Error::new(ErrorKind::AccessDenied, denied.to_string()),
                Denied::NeedsInteraction { .. } => Error::new(
                    ErrorKind::InteractiveAuthorizationRequired,
                    denied.to_string(),
                ),
            })
    }
}

#[interface(name = "org.flatipfs.Manager1")]
impl ManagerObject {
    /// Re-reads the configuration file. Polkit action `configure`.
    async fn reload_config(&self, #[zbus(header)] header: Header<'_>) -> Result<(), Error> {
        self.authorize(&header, Action::Configure, &HashMap::new())
            .await?;
        self.manager
            .reload_config()
            .map(|_| ())
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))
    }

    /// The daemon's version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// The capabilities this daemon implements.
    #[zbus(property(emits_changed_signal = "const"))]
    fn features(&self) -> Vec<String> {
        FEATURES.iter().map(|f| f.to_string()).collect()
    }

    /// How the daemon sees its Kubo node.
    #[zbus(property)]
    fn kubo_status(&self) -> KuboStatus {
        self.kubo_status.clone()
    }
}

/// Serves the manager object on `connection` and keeps its `KuboStatus`
/// property (with `PropertiesChanged`) in step with `status`.
pub async fn forward_kubo_status(
    connection: zbus::Connection,
    mut status: watch::Receiver<KuboStatus>,
) {
    let iface = match connection
        .object_server()
        .interface::<_, ManagerObject>(MANAGER_PATH)
        .await
    {
        Ok(iface) => iface,
        Err(e) => {
            warn!("manager object missing, KuboStatus will not update: {e}");
            return;
        }
    };
    while status.changed().await.is_ok() {
        let new = status.borrow_and_update().clone();
        let mut object = iface.get_mut().await;
        object.kubo_status = new;
        if let Err(e) = object.kubo_status_changed(iface.signal_emitter()).await {
            warn!("cannot emit PropertiesChanged for KuboStatus: {e}");
        }
    }
}

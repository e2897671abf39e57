//! Client-side proxies of the flatipfs objects.

use zbus::proxy;

use crate::{Error, KuboStatus};

/// `org.flatipfs.Manager1` at `/org/flatipfs/Manager1`.
#[proxy(
    interface = "org.flatipfs.Manager1",
    default_service = "org.flatipfs.Manager1",
    default_path = "/org/flatipfs/Manager1"
)]
pub trait Manager {
    /// Re-read the configuration file (polkit action `configure`).
    fn reload_config(&self) -> Result<(), Error>;

    /// The daemon's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// The capabilities this daemon implements.
    #[zbus(property)]
    fn features(&self) -> zbus::Result<Vec<String>>;

    /// How the daemon sees its Kubo node.
    #[zbus(property)]
    fn kubo_status(&self) -> zbus::Result<KuboStatus>;
}

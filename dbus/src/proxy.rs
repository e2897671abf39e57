//! Client-side proxies of the flatipfs objects.

use std::collections::HashMap;

use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::{Error, KuboStatus};

/// One entry of `ListRemotes`: name, IPNS name, details (`Publishing`: b).
pub type RemoteEntry = (String, String, HashMap<String, OwnedValue>);

/// One entry of `ListMirrors`: remote name, details (`LastSync`: t, ...).
pub type MirrorEntry = (String, HashMap<String, OwnedValue>);

/// One entry of `ListRemoteMirrors`: peer ID, addresses.
pub type MirrorPeer = (String, Vec<String>);

/// `org.flatipfs.Manager1` at `/org/flatipfs/Manager1`.
#[proxy(
    interface = "org.flatipfs.Manager1",
    default_service = "org.flatipfs.Manager1",
    default_path = "/org/flatipfs/Manager1"
)]
pub trait Manager {
    /// Re-read the configuration file (polkit action `configure`).
    fn reload_config(&self) -> Result<(), Error>;

    /// Create a publishing remote; returns its IPNS name (action `publish`).
    fn create_remote(&self, name: &str, options: HashMap<&str, Value<'_>>)
        -> Result<String, Error>;

    /// Trust a remote to install apps from (action `trust-remote`).
    fn add_remote(
        &self,
        name: &str,
        address: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(), Error>;

    /// Stop trusting a remote (action `trust-remote`).
    fn remove_remote(&self, name: &str, options: HashMap<&str, Value<'_>>) -> Result<(), Error>;

    /// Every remote: (name, IPNS name, details).
    fn list_remotes(&self) -> Result<Vec<RemoteEntry>, Error>;

    /// What a remote ("" for all) offers, from its cached catalog.
    fn list_available(&self, remote: &str) -> Result<Vec<HashMap<String, OwnedValue>>, Error>;

    /// Apps of every trusted remote matching all words.
    fn search_available(&self, words: &str) -> Result<Vec<HashMap<String, OwnedValue>>, Error>;

    /// A remote's cached catalog (AppStream XML).
    fn get_catalog(&self, remote: &str) -> Result<String, Error>;

    /// A cached icon (PNG).
    fn get_icon(&self, remote: &str, id: &str, size: u32) -> Result<Vec<u8>, Error>;

    /// Publish a release as a job (action `publish`).
    fn publish(
        &self,
        path: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<OwnedObjectPath, Error>;

    /// Install an app (`/ipfs/CID`, or an app id with option `remote`) as a
    /// job (action `install`); returns the app's object and the job.
    fn install(
        &self,
        source: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(OwnedObjectPath, OwnedObjectPath), Error>;

    /// Update every app installed from a remote, as one job (action `update`).
    fn update_all(&self, options: HashMap<&str, Value<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Check the remotes for newer releases, as a job (action `refresh`).
    fn refresh(&self, options: HashMap<&str, Value<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Remove releases beyond retention and collect garbage (action `manage-pins`).
    fn vacuum(&self, options: HashMap<&str, Value<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Check now and act as the automatic update policies say (action `refresh`).
    fn trigger_automatic_updates(&self) -> Result<(), Error>;

    /// Set the automatic update policy (action `configure`).
    fn set_automatic_update_policy(&self, policy: &str) -> Result<(), Error>;

    /// The installed apps and runtimes.
    fn list_apps(&self) -> Result<Vec<OwnedObjectPath>, Error>;

    /// The object of installed app `id`.
    fn get_app(&self, id: &str) -> Result<OwnedObjectPath, Error>;

    /// The jobs running or in their grace period.
    fn list_jobs(&self) -> Result<Vec<OwnedObjectPath>, Error>;

    /// Follow a trusted remote as a mirror (action `mirror`).
    fn add_mirror(&self, remote: &str, options: HashMap<&str, Value<'_>>) -> Result<(), Error>;

    /// Stop mirroring a remote (action `mirror`).
    fn remove_mirror(&self, remote: &str, options: HashMap<&str, Value<'_>>) -> Result<(), Error>;

    /// The remotes this daemon mirrors, with their sync state.
    fn list_mirrors(&self) -> Result<Vec<MirrorEntry>, Error>;

    /// List a mirror peer in a published remote's store index (action
    /// `manage-remote-mirrors`); returns the peer ID.
    fn add_remote_mirror(
        &self,
        remote: &str,
        peer: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<String, Error>;

    /// Stop listing a mirror peer (action `manage-remote-mirrors`).
    fn remove_remote_mirror(
        &self,
        remote: &str,
        peer: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<(), Error>;

    /// The mirror peers a published remote's store index lists.
    fn list_remote_mirrors(&self, remote: &str) -> Result<Vec<MirrorPeer>, Error>;

    /// A job finished.
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u64,
        path: OwnedObjectPath,
        result: &str,
        error_name: &str,
        error_message: &str,
    ) -> zbus::Result<()>;

    /// The daemon's version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// The capabilities this daemon implements.
    #[zbus(property)]
    fn features(&self) -> zbus::Result<Vec<String>>;

    /// How the daemon sees its Kubo node.
    #[zbus(property)]
    fn kubo_status(&self) -> zbus::Result<KuboStatus>;

    /// What automatic updates do.
    #[zbus(property)]
    fn automatic_update_policy(&self) -> zbus::Result<String>;

    /// When the scheduler last checked (seconds since the epoch).
    #[zbus(property)]
    fn last_automatic_check(&self) -> zbus::Result<u64>;

    /// When it checks next (seconds since the epoch; 0: not planned).
    #[zbus(property)]
    fn next_automatic_check(&self) -> zbus::Result<u64>;
}

/// `org.flatipfs.Manager1.Job` at `/org/flatipfs/Manager1/job/<n>`.
#[proxy(
    interface = "org.flatipfs.Manager1.Job",
    default_service = "org.flatipfs.Manager1"
)]
pub trait Job {
    /// Ask the job to stop.
    fn cancel(&self) -> Result<(), Error>;

    #[zbus(property)]
    fn id(&self) -> zbus::Result<u64>;
    #[zbus(property, name = "Type")]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn app(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn bytes_done(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_total(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn error_name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn error_message(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn details(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// `org.flatipfs.Manager1.App` at `/org/flatipfs/Manager1/app/<escaped id>`.
#[proxy(
    interface = "org.flatipfs.Manager1.App",
    default_service = "org.flatipfs.Manager1"
)]
pub trait App {
    /// Remove the app as a job (action `uninstall`).
    fn uninstall(&self, options: HashMap<&str, Value<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Update to `version` (`""`: the newest) as a job.
    fn update(
        &self,
        version: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> Result<OwnedObjectPath, Error>;

    /// Switch back to the previous kept release as a job.
    fn rollback(&self, options: HashMap<&str, Value<'_>>) -> Result<OwnedObjectPath, Error>;

    /// Keep release `version` whatever the retention says.
    fn pin(&self, version: &str) -> Result<(), Error>;

    /// Let retention remove release `version` again.
    fn unpin(&self, version: &str) -> Result<(), Error>;

    /// Start recording the app's startup set (action `record-startup`;
    /// option `seconds` (u): the daemon's own time limit).
    fn start_recording(&self, options: HashMap<&str, Value<'_>>) -> Result<(), Error>;

    /// Stop recording: (path, offset, length) in first-access order, and
    /// whether reads were left out (action `record-startup`).
    #[allow(clippy::type_complexity)]
    fn stop_recording(&self) -> Result<(Vec<(String, u64, u64)>, bool), Error>;

    /// Set this app's automatic update policy (`""`: the daemon's).
    fn set_update_policy(&self, policy: &str) -> Result<(), Error>;

    #[zbus(property)]
    fn available_version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn update_policy(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_checked(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn deployments(&self) -> zbus::Result<Vec<HashMap<String, OwnedValue>>>;
    /// What a held update would grant beyond the current release.
    #[zbus(property)]
    fn pending_permissions(&self) -> zbus::Result<Vec<String>>;

    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;
    #[zbus(property, name = "Kind")]
    fn kind(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn remote(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn source(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn current_version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn current_cid(&self) -> zbus::Result<String>;
    #[zbus(property, name = "Ref")]
    fn reference(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn runtime(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn fetched_bytes(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn total_bytes(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn mount_point(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_job(&self) -> zbus::Result<OwnedObjectPath>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
}

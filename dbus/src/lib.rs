//! The typed D-Bus interface of `flatipfsd`, shared by the daemon and its clients.
//!
//! This crate owns the names (bus name, object paths, interfaces), the error
//! type with its D-Bus error names, the polkit action ids, the shape of
//! structured properties such as `KuboStatus`, and the client-side proxies.
//! The committed introspection XML, the bus policy and the activation file
//! live beside it in this directory; `docs/dbus-api.md` documents all of it.

pub mod error;
pub mod kubo_status;
pub mod polkit;
pub mod proxy;

pub use error::{Error, ErrorKind};
pub use kubo_status::KuboStatus;

/// The well-known bus name the daemon owns on the system bus.
pub const BUS_NAME: &str = "org.flatipfs.Manager1";
/// The manager object; also an `org.freedesktop.DBus.ObjectManager`.
pub const MANAGER_PATH: &str = "/org/flatipfs/Manager1";
/// The manager interface.
pub const MANAGER_INTERFACE: &str = "org.flatipfs.Manager1";

/// The committed introspection XML of the manager interface.
pub const MANAGER_INTROSPECTION_XML: &str = include_str!("../org.flatipfs.Manager1.xml");
/// The job interface.
pub const JOB_INTERFACE: &str = "org.flatipfs.Manager1.Job";
/// The committed introspection XML of the job interface.
pub const JOB_INTROSPECTION_XML: &str = include_str!("../org.flatipfs.Manager1.Job.xml");
/// The bus policy file (installed in `/usr/share/dbus-1/system.d/`).
pub const BUS_POLICY_FILE: &str = "org.flatipfs.Manager1.conf";

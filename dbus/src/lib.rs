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
/// The app interface.
pub const APP_INTERFACE: &str = "org.flatipfs.Manager1.App";
/// The committed introspection XML of the app interface.
pub const APP_INTROSPECTION_XML: &str = include_str!("../org.flatipfs.Manager1.App.xml");

/// The object path of app `id`: `/org/flatipfs/Manager1/app/<escaped id>`,
/// where every byte outside `[A-Za-z0-9]` becomes `_` and two hex digits
/// (as systemd escapes unit names), so `org.test.Hello` is `org_2etest_2eHello`.
pub fn app_path(id: &str) -> String {
    let mut path = format!("{MANAGER_PATH}/app/");
    if id.is_empty() {
        path.push('_');
    }
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// The bus policy file (installed in `/usr/share/dbus-1/system.d/`).
pub const BUS_POLICY_FILE: &str = "org.flatipfs.Manager1.conf";

#[cfg(test)]
mod tests {
    #[test]
    fn app_paths_are_valid_and_distinct() {
        assert_eq!(
            super::app_path("org.test.Hello"),
            "/org/flatipfs/Manager1/app/org_2etest_2eHello"
        );
        assert_ne!(super::app_path("a_b"), super::app_path("a.b"));
        for id in ["org.test.Hello", "a_b", "x-y", ""] {
            zbus::zvariant::ObjectPath::try_from(super::app_path(id)).unwrap();
        }
    }
}

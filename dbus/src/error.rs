//! Errors of the `org.flatipfs.Manager1` API and their D-Bus names.
//!
//! Every failure a client can see has an [`ErrorKind`]; its D-Bus name is
//! `org.flatipfs.Manager1.Error.<Kind>`, except for the three standard names
//! clients such as GNOME Software already understand (`InvalidArgs`,
//! `AccessDenied`, `InteractiveAuthorizationRequired` under
//! `org.freedesktop.DBus.Error`). The same type is used on both sides: the
//! daemon replies with it, proxies return it.

use std::fmt;

use zbus::message::{Header, Message};
use zbus::names::ErrorName;
use zbus::DBusError;

const PREFIX: &str = "org.flatipfs.Manager1.Error.";
const FDO_PREFIX: &str = "org.freedesktop.DBus.Error.";

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $kind:ident => $name:literal ),* $(,)?) => {
        /// What went wrong, as a client needs to know it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( $(#[$doc])* $kind, )*
        }

        impl ErrorKind {
            /// Every kind, in documentation order.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind),*];

            /// The full D-Bus error name.
            pub fn dbus_name(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// No such app, remote, job or release.
    NotFound => "org.flatipfs.Manager1.Error.NotFound",
    /// The app is installed already.
    AlreadyInstalled => "org.flatipfs.Manager1.Error.AlreadyInstalled",
    /// The app is not installed.
    NotInstalled => "org.flatipfs.Manager1.Error.NotInstalled",
    /// Another mutating job runs for the same app.
    Busy => "org.flatipfs.Manager1.Error.Busy",
    /// The job was cancelled.
    Cancelled => "org.flatipfs.Manager1.Error.Cancelled",
    /// There is nothing to do (for example, no newer release).
    NothingToDo => "org.flatipfs.Manager1.Error.NothingToDo",
    /// An IPNS name could not be resolved in time.
    ResolveFailed => "org.flatipfs.Manager1.Error.ResolveFailed",
    /// Content could not be fetched.
    FetchFailed => "org.flatipfs.Manager1.Error.FetchFailed",
    /// A manifest, release or tree failed validation.
    VerificationFailed => "org.flatipfs.Manager1.Error.VerificationFailed",
    /// The update grants the app more than the installed release (new
    /// filesystems, sockets, devices, bus names, ...); the message lists the
    /// changes. Ask again with the option `allow-new-permissions` (polkit
    /// action `update-permissions`).
    PermissionsChanged => "org.flatipfs.Manager1.Error.PermissionsChanged",
    /// The source is not a trusted remote.
    Untrusted => "org.flatipfs.Manager1.Error.Untrusted",
    /// A remote's store index is older (lower sequence) than one already
    /// seen from it: a replayed or stale record, refused.
    StaleIndex => "org.flatipfs.Manager1.Error.StaleIndex",
    /// Not enough disk space.
    NoSpace => "org.flatipfs.Manager1.Error.NoSpace",
    /// A FUSE mount could not be set up.
    MountFailed => "org.flatipfs.Manager1.Error.MountFailed",
    /// Not supported by this daemon or its Kubo node.
    NotSupported => "org.flatipfs.Manager1.Error.NotSupported",
    /// The configuration file is invalid; the daemon keeps its previous one.
    InvalidConfig => "org.flatipfs.Manager1.Error.InvalidConfig",
    /// An internal failure; the message says what.
    Internal => "org.flatipfs.Manager1.Error.Internal",
    /// An argument or option is invalid (standard name).
    InvalidArgs => "org.freedesktop.DBus.Error.InvalidArgs",
    /// polkit refused the caller (standard name).
    AccessDenied => "org.freedesktop.DBus.Error.AccessDenied",
    /// polkit would ask for a password, but the call did not allow
    /// interaction (standard name).
    InteractiveAuthorizationRequired => "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
}

impl ErrorKind {
    /// The kind that carries this D-Bus error name, if any.
    pub fn from_dbus_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.dbus_name() == name)
    }

    /// The short name (`NotFound`, `AccessDenied`, ...).
    pub fn short_name(self) -> &'static str {
        let name = self.dbus_name();
        name.strip_prefix(PREFIX)
            .or_else(|| name.strip_prefix(FDO_PREFIX))
            .unwrap_or(name)
    }
}

/// An error of the flatipfs API: a known kind with a message, or a failure of
/// D-Bus itself (no bus, no daemon, an unknown error name).
#[derive(Debug)]
pub enum Error {
    /// A documented API error.
    Api(ErrorKind, String),
    /// Anything else that D-Bus reported.
    ZBus(zbus::Error),
}

impl Error {
    /// Shorthand for an API error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::Api(kind, message.into())
    }

    /// The API kind, if this is a documented API error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Api(kind, _) => Some(*kind),
            Error::ZBus(_) => None,
        }
    }
}

impl DBusError for Error {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        let description = self.description().unwrap_or_default().to_string();
        Message::error(call, self.name())?.build(&(description,))
    }

    fn name(&self) -> ErrorName<'_> {
        match self {
            Error::Api(kind, _) => ErrorName::from_static_str_unchecked(kind.dbus_name()),
            Error::ZBus(zbus::Error::MethodError(name, _, _)) => name.inner().clone(),
            Error::ZBus(_) => {
                ErrorName::from_static_str_unchecked("org.freedesktop.DBus.Error.Failed")
            }
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            Error::Api(_, message) => Some(message),
            Error::ZBus(zbus::Error::MethodError(_, description, _)) => description.as_deref(),
            Error::ZBus(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(_, message) => f.write_str(message),
            Error::ZBus(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Api(..) => None,
            Error::ZBus(e) => Some(e),
        }
    }
}

impl From<zbus::Error> for Error {
    fn from(e: zbus::Error) -> Self {
        let named = match &e {
            zbus::Error::MethodError(name, description, _) => {
                Some((name.as_str().to_string(), description.clone()))
            }
            zbus::Error::FDO(fdo) => Some((
                fdo.name().as_str().to_string(),
                fdo.description().map(str::to_string),
            )),
            _ => None,
        };
        match named.and_then(|(name, d)| Some((ErrorKind::from_dbus_name(&name)?, d))) {
            Some((kind, description)) => Error::Api(kind, description.unwrap_or_default()),
            None => Error::ZBus(e),
        }
    }
}

impl From<zbus::fdo::Error> for Error {
    fn from(e: zbus::fdo::Error) -> Self {
        zbus::Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_standard_names_stay_standard() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_dbus_name(kind.dbus_name()), Some(*kind));
        }
        assert_eq!(
            ErrorKind::AccessDenied.dbus_name(),
            "org.freedesktop.DBus.Error.AccessDenied"
        );
        assert_eq!(ErrorKind::Busy.short_name(), "Busy");
        assert_eq!(ErrorKind::InvalidArgs.short_name(), "InvalidArgs");
    }

    #[test]
    fn a_standard_fdo_error_maps_to_its_kind() {
        let e: Error = zbus::fdo::Error::AccessDenied("no".into()).into();
        assert_eq!(e.kind(), Some(ErrorKind::AccessDenied));
        assert_eq!(e.to_string(), "no");
        let other: Error = zbus::fdo::Error::ServiceUnknown("gone".into()).into();
        assert_eq!(other.kind(), None);
    }
}

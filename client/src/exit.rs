//! Exit codes of `flatipfsctl` and the failure type that carries them.

use flatipfs_dbus::{Error, ErrorKind};

/// Success.
pub const OK: i32 = 0;
/// Any failure without a more specific code.
pub const FAILURE: i32 = 1;
/// Invalid command line (also clap's code), or an unreadable local file.
pub const USAGE: i32 = 2;
/// An app, remote, job or release does not exist.
pub const NOT_FOUND: i32 = 3;
/// Not authorized (polkit refused, or needs a password the call could not ask for).
pub const NOT_AUTHORIZED: i32 = 4;
/// Nothing to do (already up to date, already installed, not installed).
pub const NOTHING_TO_DO: i32 = 5;
/// The daemon cannot be reached on the system bus.
pub const UNREACHABLE: i32 = 6;
/// Another job for the same app is running.
pub const BUSY: i32 = 7;
/// The update grants the app new permissions; nothing was changed. Review
/// them and ask again with `--allow-new-permissions`.
pub const PERMISSIONS_CHANGED: i32 = 8;

/// Every exit code with what it means, for `--help` and the man page
/// (docs/flatipfsctl.md has the same table).
pub const CODES: &[(i32, &str)] = &[
    (OK, "success"),
    (FAILURE, "failure (the message says what)"),
    (USAGE, "invalid command line, or an unreadable local file"),
    (NOT_FOUND, "an app, remote, job or release does not exist"),
    (
        NOT_AUTHORIZED,
        "not authorized (polkit refused, or a password was needed and not given)",
    ),
    (
        NOTHING_TO_DO,
        "nothing to do (already installed, not installed, no newer release)",
    ),
    (UNREACHABLE, "flatipfsd cannot be reached on the system bus"),
    (BUSY, "another job runs for the same app"),
    (
        PERMISSIONS_CHANGED,
        "the update would give the app new permissions; nothing was changed",
    ),
];

/// [`CODES`] as the text `--help` ends with.
pub fn help_text() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in CODES {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text
}

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    /// The D-Bus error name, when the daemon sent one.
    pub name: Option<String>,
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl Failure {
    /// The daemon (or the bus) is not there.
    pub fn unreachable(detail: &str) -> Self {
        Failure {
            code: UNREACHABLE,
            name: None,
            message: format!("cannot reach flatipfsd on the system bus: {detail}"),
            hint: Some("start it with `systemctl start flatipfsd` (or `flatipfs-stack up DIR` in a development tree)".into()),
        }
    }

    /// A problem with the command line or a local file.
    pub fn usage(message: String) -> Self {
        Failure {
            code: USAGE,
            name: None,
            message,
            hint: None,
        }
    }

    /// A failed call to the daemon.
    pub fn from_call(error: Error) -> Self {
        match error {
            Error::Api(kind, message) => {
                let (code, hint) = match kind {
                    ErrorKind::NotFound => (NOT_FOUND, None),
                    ErrorKind::AccessDenied => (
                        NOT_AUTHORIZED,
                        Some("run it as root, or as a member of the `flatipfs` group if the shipped polkit rules are installed"),
                    ),
                    ErrorKind::InteractiveAuthorizationRequired => (
                        NOT_AUTHORIZED,
                        Some("run it from a terminal with a polkit agent, or as root"),
                    ),
                    ErrorKind::NothingToDo | ErrorKind::AlreadyInstalled | ErrorKind::NotInstalled => {
                        (NOTHING_TO_DO, None)
                    }
                    ErrorKind::Busy => (BUSY, Some("wait for the running job (`flatipfsctl jobs`) and try again")),
                    ErrorKind::PermissionsChanged => (PERMISSIONS_CHANGED, Some("nothing was changed; if you trust the publisher with these permissions, run `flatipfsctl update --allow-new-permissions APP_ID` (asks for an administrator)")),
                    ErrorKind::InvalidConfig => (FAILURE, Some("fix the file; the daemon keeps running with its previous configuration")),
                    _ => (FAILURE, None),
                };
                Failure {
                    code,
                    name: Some(kind.dbus_name().to_string()),
                    message,
                    hint: hint.map(str::to_string),
                }
            }
            Error::ZBus(e) => {
                if let zbus::Error::MethodError(name, _, _) = &e {
                    let name = name.as_str();
                    if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                        || name == "org.freedesktop.DBus.Error.NameHasNoOwner"
                    {
                        return Failure::unreachable("flatipfsd is not running");
                    }
                }
                if let zbus::Error::FDO(fdo) = &e {
                    if matches!(
                        **fdo,
                        zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
                    ) {
                        return Failure::unreachable("flatipfsd is not running");
                    }
                }
                let name = match &e {
                    zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
                    _ => None,
                };
                Failure {
                    code: FAILURE,
                    name,
                    message: Error::ZBus(e).to_string(),
                    hint: None,
                }
            }
        }
    }
}

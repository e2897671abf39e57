//! The polkit gate every mutating method passes before any work is done.
//!
//! Order (see `../shared/design.md`, "Authorization"): the caller validates
//! its arguments first, without I/O; then root passes; everyone else is
//! checked with polkit's `CheckAuthorization` on a `system-bus-name` subject,
//! with user interaction allowed only when the call's message allows it.

use std::collections::HashMap;

use enumflags2::BitFlags;
use flatipfs_dbus::polkit::Action;
use tracing::{debug, info};
use zbus::message::{Flags, Header};
use zbus::names::BusName;
use zbus_polkit::policykit1::{AuthorityProxy, CheckAuthorizationFlags, Subject};

/// Why a caller may not go on.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// polkit said no (or polkit is not there and the caller is not root).
    #[error("not authorized for {action}: {reason}")]
    Refused {
        action: &'static str,
        reason: String,
    },
    /// polkit would ask for a password, but the call does not allow interaction.
    #[error("{action} needs authentication; call again allowing interactive authorization (for example from a terminal with a polkit agent)")]
    NeedsInteraction { action: &'static str },
}

/// The gate: one per daemon, shared by all D-Bus objects.
#[derive(Clone)]
pub struct Gate {
    connection: zbus::Connection,
}

impl Gate {
    /// A gate that asks polkit on `connection`'s bus.
    pub fn new(connection: zbus::Connection) -> Self {
        Gate { connection }
    }

    /// Decides whether the sender of the call with `header` may perform
    /// `action`. `details` reach polkit (and its rules) as action details.
    /// Returns the caller's uid.
    pub async fn authorize(
        &self,
        header: &Header<'_>,
        action: Action,
        details: &HashMap<&str, &str>,
    ) -> Result<u32, Denied> {
        let refused = |reason: String| Denied::Refused {
            action: action.id(),
            reason,
        };
        let sender = header
            .sender()
            .ok_or_else(|| refused("the call has no sender".into()))?;
        let uid = self
            .caller_uid(sender)
            .await
            .map_err(|e| refused(format!("cannot identify the caller: {e}")))?;
        if uid == 0 {
            debug!(
                action = action.id(),
                "root caller authorized without polkit"
            );
            return Ok(0);
        }
        let interactive = header
            .primary()
            .flags()
            .contains(Flags::AllowInteractiveAuth);
        let flags = if interactive {
            BitFlags::from(CheckAuthorizationFlags::AllowUserInteraction)
        } else {
            BitFlags::empty()
        };
        let subject = Subject::new_for_message_header(header)
            .map_err(|e| refused(format!("cannot describe the caller to polkit: {e}")))?;
        let authority = AuthorityProxy::new(&self.connection)
            .await
            .map_err(|e| refused(format!("polkit is not available: {e}")))?;
        let result = authority
            .check_authorization(&subject, action.id(), details, flags, "")
            .await
            .map_err(|e| {
                refused(format!(
                    "polkit is not available ({e}); only root may do this"
                ))
            })?;
        info!(
            action = action.id(),
            uid,
            interactive,
            authorized = result.is_authorized,
            challenge = result.is_challenge,
            "polkit decision"
        );
        if result.is_authorized {
            Ok(uid)
        } else if result.is_challenge && !interactive {
            Err(Denied::NeedsInteraction {
                action: action.id(),
            })
        } else if result.is_challenge {
            Err(refused(
                "authentication is required, but no polkit agent answered for the caller".into(),
            ))
        } else {
            Err(refused(format!("polkit refused uid {uid}")))
        }
    }

    /// The uid of the sender of the call with `header`.
    pub async fn uid_of(&self, header: &Header<'_>) -> zbus::Result<u32> {
        let sender = header
            .sender()
            .ok_or_else(|| zbus::Error::Failure("the call has no sender".into()))?;
        self.caller_uid(sender).await
    }

    async fn caller_uid(&self, sender: &zbus::names::UniqueName<'_>) -> zbus::Result<u32> {
        let dbus = zbus::fdo::DBusProxy::new(&self.connection).await?;
        Ok(dbus
            .get_connection_unix_user(BusName::Unique(sender.clone()))
            .await?)
    }
}

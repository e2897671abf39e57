//! The `KuboStatus` property: how the daemon sees its Kubo node.
//!
//! Sent as an `a{sv}` dictionary so that new keys can be added without
//! changing the property's signature; clients must ignore keys they do not
//! know.

use zbus::zvariant::{DeserializeDict, OwnedValue, SerializeDict, Type, Value};

/// The daemon's view of its Kubo node, as the `KuboStatus` property.
#[derive(
    Debug, Clone, Default, PartialEq, SerializeDict, DeserializeDict, Type, Value, OwnedValue,
)]
#[zvariant(signature = "a{sv}", rename_all = "PascalCase")]
pub struct KuboStatus {
    /// The last call to the node's RPC API answered.
    pub reachable: bool,
    /// Kubo's version as it reports it (`0.43.1`), empty when unknown.
    pub version: String,
    /// Number of connected swarm peers.
    pub peers: u32,
    /// The RPC API address in use (a multiaddr), empty when not known yet.
    pub api: String,
    /// True when the daemon runs and supervises this node itself.
    pub embedded: bool,
    /// Why the node is not usable, empty when it is.
    pub error: String,
}

impl KuboStatus {
    /// True when the node answers and is usable.
    pub fn usable(&self) -> bool {
        self.reachable && self.error.is_empty()
    }
}

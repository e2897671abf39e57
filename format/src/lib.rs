//! `flatipfs-format`: the documents flatipfs puts on IPFS and reads back,
//! and the checks each must pass before the daemon uses it.
//!
//! Pure logic, no I/O: everything here takes bytes or parsed values and
//! answers yes or no with a reason, so it can be unit-tested and fuzzed
//! (`fuzz/`) on its own. The daemon (`flatipfsd`) fetches, bounds and
//! stores; this crate decides what is acceptable.
//!
//! - [`appstream`]: AppStream components, the per-remote catalog and icons;
//! - [`release`]: the release manifest and its validation;
//! - [`encodings`]: the pack and deltas a schema 2 manifest names;
//! - [`index`]: the store index a remote publishes under its IPNS name, and
//!   [`index_shards`] its sharded layout (a root and shard documents);
//! - [`exports`]: what an app may export to the host (Flatpak's rules) and
//!   the rewritten files written in place of a release's `export/`.
//! - [`metadata`]: a release's Flatpak `metadata`, its checks against the
//!   manifest, the sandbox permissions it grants and what an update widens.

pub mod appstream;
pub mod encodings;
pub mod exports;
pub mod index;
pub mod index_shards;
pub mod metadata;
pub mod release;

//! Real-component test support for flatipfs.
//!
//! - [`stack`]: starts and stops a private system bus, polkitd, Kubo nodes and
//!   `flatipfsd` inside one directory (used by the tests and by the
//!   `flatipfs-stack` command).
//! - [`paths`]: where the project's files and built binaries are.
//! - [`users`]: test users and groups, and running commands as them.
//! - [`process`]: starting detached processes and stopping exactly those.

pub mod paths;
pub mod process;
pub mod stack;
pub mod users;

pub use stack::{Stack, StackOptions};

//! Real-component test support for flatipfs.
//!
//! - [`stack`]: starts and stops a private system bus, polkitd, Kubo nodes and
//!   `flatipfsd` inside one directory (used by the tests and by the
//!   `flatipfs-stack` command).
//! - [`network`]: the private IPFS network (Kubo configuration, waiting
//!   until a node resolves a name through routing).
//! - [`paths`]: where the project's files and built binaries are.
//! - [`users`]: test users and groups, and running commands as them.
//! - [`process`]: starting detached processes and stopping exactly those.
//! - [`embedded`]: the daemon's embedded Kubo node (user, socket, process).

pub mod catalogs;
pub mod container;
pub mod ctl;
pub mod edited_releases;
pub mod embedded;
pub mod fixtures;
pub mod fleet;
pub mod hostile;
pub mod index_layout;
pub mod introspection;
pub mod network;
pub mod pair;
pub mod paths;
pub mod process;
pub mod raw_metadata;
pub mod software_centre;
pub mod stack;
pub mod terminal;
pub mod trees;
pub mod users;
pub mod wire_releases;

pub use stack::{Stack, StackOptions};

/// A stack in its own temporary directory, stopped and removed on drop:
/// what every integration test starts with.
pub struct TestStack {
    pub stack: Stack,
    // Dropped after `stack` (fields drop in order), so `down` runs first.
    temp: Option<tempfile::TempDir>,
}

impl Drop for TestStack {
    /// A failing test's directory is kept (its daemons are stopped), so
    /// that the logs its message points to are still there.
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.temp.take() {
                eprintln!("kept for its logs: {}", dir.keep().display());
            }
        }
    }
}

impl TestStack {
    /// Starts a stack with `options` in a new temporary directory.
    /// Integration tests run as root; anything else fails with a clear message.
    pub fn up(options: &StackOptions) -> anyhow::Result<TestStack> {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("flatipfs-test-")
            .tempdir()?;
        let mut stack = Stack::up(dir.path(), options)?;
        stack.down_on_drop = true;
        Ok(TestStack {
            stack,
            temp: Some(dir),
        })
    }
}

impl std::ops::Deref for TestStack {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

/// Fails the calling test unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the integration tests start polkitd, FUSE mounts and test users: run them as root (scripts/test.sh does)"
    );
}

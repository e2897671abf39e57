//! `flatipfs-stack`: start and stop a private flatipfs stack of real
//! components (system bus, polkitd, Kubo nodes, flatipfsd) in a directory.
//!
//!     eval "$(flatipfs-stack up /tmp/s)"   # prints the environment to export
//!     flatipfsctl status
//!     flatipfs-stack down /tmp/s
//!
//! The Kubo nodes form a private IPFS network ([`flatipfs_tests::network`]):
//! with no `--bootstrap`, node 1 is its bootstrap node and the others know
//! only node 1; with `--bootstrap ADDR` (repeatable, as printed in
//! `FLATIPFS_KUBO_PEER_N` by another stack) every node joins that network.
//! Nodes find each other, records and providers through routing alone.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use flatipfs_tests::{Stack, StackOptions};

#[derive(Parser)]
#[command(about = "Start and stop a private flatipfs stack (must run as root)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a stack in DIR and print the environment to export.
    Up {
        dir: PathBuf,
        /// Number of Kubo nodes (node 1 serves the daemon).
        #[arg(long, default_value_t = 2)]
        kubo_nodes: usize,
        /// Bootstrap peer (full multiaddr with /p2p/) of every node, to
        /// join another stack's network; repeatable.
        #[arg(long)]
        bootstrap: Vec<String>,
        /// Only the Kubo nodes (a network's bootstrap node): no bus,
        /// polkitd or daemon.
        #[arg(long)]
        network_only: bool,
        /// Let flatipfsd run its own embedded Kubo node.
        #[arg(long)]
        embedded_kubo: bool,
        /// Do not start flatipfsd.
        #[arg(long)]
        no_daemon: bool,
    },
    /// Stop exactly the processes started in DIR and unmount what is mounted below it.
    Down { dir: PathBuf },
    /// Print the environment of the stack in DIR again.
    Env { dir: PathBuf },
    /// Stop the stack's flatipfsd (SIGTERM) and start it again; returns
    /// once it owns its bus name.
    RestartDaemon { dir: PathBuf },
    /// Print the pid of the stack's flatipfsd.
    DaemonPid { dir: PathBuf },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Up {
            dir,
            kubo_nodes,
            embedded_kubo,
            no_daemon,
            bootstrap,
            network_only,
        } => {
            let stack = Stack::up(
                &dir,
                &StackOptions {
                    kubo_nodes,
                    daemon: !no_daemon,
                    embedded_kubo,
                    bootstrap,
                    network_only,
                    ..Default::default()
                },
            )?;
            for line in stack.env_lines() {
                println!("{line}");
            }
            eprintln!(
                "stack running in {}; logs in {}/logs",
                stack.dir.display(),
                stack.dir.display()
            );
        }
        Cmd::Down { dir } => Stack::down(&dir)?,
        Cmd::RestartDaemon { dir } => {
            let stack = Stack::load(&dir)?;
            stack
                .process("flatipfsd")?
                .stop(std::time::Duration::from_secs(30))?;
            // The bus lets the name go a little after the process is gone.
            flatipfs_tests::stack::wait_until("the daemon's bus name released", || {
                Ok(!stack.name_has_owner(flatipfs_dbus::BUS_NAME)?)
            })?;
            stack.start_daemon()?;
        }
        Cmd::DaemonPid { dir } => println!("{}", Stack::load(&dir)?.process("flatipfsd")?.pid),
        Cmd::Env { dir } => {
            for line in Stack::load(&dir)?.env_lines() {
                println!("{line}");
            }
        }
    }
    Ok(())
}

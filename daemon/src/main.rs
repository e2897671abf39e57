//! `flatipfsd`: the flatipfs system daemon.
//!
//! Start-up order: read the configuration (a bad file is fatal and names the
//! file, line and key), lock the state directory (`owner`), claim
//! `org.flatipfs.Manager1` on the system bus without allowing replacement
//! (`DBUS_SYSTEM_BUS_ADDRESS` is honoured) with `KuboStatus` "starting",
//! reach Kubo (configured API, or an embedded node it supervises) and refuse
//! one older than 0.42 (exiting), then serve until SIGTERM or SIGINT, or
//! exit non-zero if the bus name is lost.

mod api;
mod apps;
mod appstream;
mod block_shards;
mod car;
mod catalog;
mod codec;
mod config;
mod decode;
mod deploy_data;
mod directory_car;
mod durable;
mod encode;
mod fetch;
mod flatpak;
mod freshness;
mod fuse;
mod index_layout;
mod install;
mod installation;
mod jobs;
mod kubo;
mod kubo_monitor;
mod kubo_node;
mod local_files;
mod local_store;
mod logging;
mod manager;
mod manual;
mod mirror;
mod mounts;
mod owner;
mod peering;
mod permissions;
mod policy;
mod publish;
mod range_blocks;
mod recording;
mod remote_mirrors;
mod remotes;
mod republish;
mod source;
mod startup;
mod store;
mod subprocess;
mod supervised;
mod tools;
mod tree;
mod trees;
mod triggers;
mod unixfs;
mod update;
mod updates;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use flatipfs_dbus::{BUS_NAME, MANAGER_PATH};
// The formats live in their own crate (pure, fuzzed); `crate::release` and
// `crate::index` keep naming them inside the daemon.
use flatipfs_format::{index, release};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::config::Config;
use crate::kubo_monitor::ApiSource;
use crate::kubo_node::{Node, NodeSettings};

#[derive(Parser)]
#[command(version, about = "flatipfs system daemon: Flatpak apps from IPFS")]
struct Args {
    /// Configuration file.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// Diagnosis tools; without one, flatipfsd runs as the daemon.
#[derive(clap::Subcommand)]
enum Tool {
    /// Serve one release's files/ read-only on MOUNTPOINT (as root), in the
    /// foreground until SIGTERM or SIGINT: the filesystem installed apps get.
    MountRelease {
        /// Kubo RPC API (multiaddr or http:// URL).
        #[arg(long)]
        kubo_api: String,
        /// How long a read may wait for Kubo before it fails with EIO.
        #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
        read_timeout: Duration,
        /// Instead of MOUNTPOINT's files/ alone: lay the release out as a
        /// deploy in the Flatpak installation at this path (registered as
        /// `flatipfs` in --flatpak-config-dir/installations.d), mount its
        /// files/, and make it active, so `flatpak run` starts it.
        #[arg(long, value_name = "PATH")]
        installation: Option<PathBuf>,
        /// Flatpak's configuration directory, with --installation.
        #[arg(long, value_name = "DIR", default_value = "/etc/flatpak")]
        flatpak_config_dir: PathBuf,
        /// The release root CID.
        release: String,
        /// Where to mount files/ (ignored with --installation).
        mountpoint: Option<PathBuf>,
    },
}

/// How long start-up waits for the embedded node's first start.
const EMBEDDED_START_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::main]
async fn main() {
    // `flatipfsd --generate-man DIR` (scripts/package.sh) is no part of the
    // clap definition, so that `--help` does not list it.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, flag, dir] = &raw[..] {
        if flag == "--generate-man" {
            let dir = std::path::Path::new(dir);
            if let Err(e) = manual::generate(Args::command(), dir) {
                eprintln!("flatipfsd: cannot write into {}: {e}", dir.display());
                std::process::exit(1);
            }
            return;
        }
    }
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("flatipfsd: error: {e:#}");
        tracing::error!("{e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    if let Some(Tool::MountRelease {
        kubo_api,
        read_timeout,
        installation,
        flatpak_config_dir,
        release,
        mountpoint,
    }) = args.tool
    {
        let target = match (installation, mountpoint) {
            (Some(path), _) => tools::Target::Installation(installation::Installation {
                id: "flatipfs".into(),
                path,
                config_dir: flatpak_config_dir,
            }),
            (None, Some(mountpoint)) => tools::Target::Mountpoint(mountpoint),
            (None, None) => anyhow::bail!("give a MOUNTPOINT or --installation PATH"),
        };
        return tools::mount_release(&kubo_api, read_timeout, &release, target).await;
    }
    let (config_path, missing_ok) = match args.config {
        Some(path) => (path, false),
        None => (PathBuf::from(config::DEFAULT_PATH), true),
    };
    let config = Config::load(&config_path, missing_ok)?;
    logging::init(&config.log_level);
    info!(version = env!("CARGO_PKG_VERSION"), config = %config_path.display(), "flatipfsd starting");
    // One daemon per state directory: held until the process ends.
    let state_lock = owner::lock_state_directory(&config.state_directory)?;
    info!(lock = %state_lock.path.display(), "state directory locked");

    let (config_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config.clone()));
    let connection = zbus::connection::Builder::system()
        .context("cannot use the system bus address")?
        .build()
        .await
        .context("cannot connect to the system bus")?;
    // The bus name is claimed before Kubo is reached, so that clients (and
    // systemd's Type=dbus) see the daemon at once; KuboStatus says "starting"
    // until the first look at the node.
    let (status_tx, status) =
        tokio::sync::watch::channel(kubo_monitor::starting(config.kubo.api.is_none()));
    let manager = Arc::new(manager::Manager::new(
        config_path,
        missing_ok,
        config_tx,
        status.clone(),
    ));
    let gate = policy::Gate::new(connection.clone());
    tokio::spawn(api::forward_apps(
        connection.clone(),
        manager.clone(),
        gate.clone(),
    ));
    connection
        .object_server()
        .at(MANAGER_PATH, zbus::fdo::ObjectManager)
        .await?;
    connection
        .object_server()
        .at(
            MANAGER_PATH,
            api::ManagerObject::new(manager.clone(), gate.clone(), status.borrow().clone()),
        )
        .await?;
    tokio::spawn(api::forward_kubo_status(connection.clone(), status));
    // Watched before the name is claimed, so that no NameLost is missed.
    let name_lost = {
        let connection = connection.clone();
        tokio::spawn(async move {
            if let Err(e) = owner::name_lost(&connection, BUS_NAME).await {
                // Not watched is not lost: keep serving.
                warn!("cannot watch for NameLost: {e}");
                std::future::pending::<()>().await;
            }
        })
    };
    owner::claim_bus_name(&connection, BUS_NAME).await?;
    info!("owning {BUS_NAME} on the system bus");

    let (source, node) = match &config.kubo.api {
        Some(address) => {
            check_configured_kubo(address, &config).await?;
            (ApiSource::Configured, None)
        }
        None => {
            let node = start_embedded_kubo(&config).await?;
            (ApiSource::Embedded(node.api()), Some(node))
        }
    };
    kubo_monitor::spawn(config_rx, source, status_tx);
    supervised::spawn_logged("the start-up restore", install::restore(manager.clone()));
    supervised::spawn_logged("the mount sweep", sweep_mounts(manager.clone()));
    tokio::spawn(api::forward_scheduler(connection.clone(), manager.clone()));
    supervised::spawn_logged("the record republisher", republish::run(manager.clone()));
    supervised::spawn_logged("the mirror", mirror::run(manager.clone()));
    supervised::spawn_logged(
        "the update scheduler",
        updates::run(
            manager.clone(),
            api::launcher(connection.clone(), manager.clone(), gate.clone()),
        ),
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let lost = tokio::select! {
        _ = term.recv() => { info!("SIGTERM received, stopping"); false }
        _ = int.recv() => { info!("SIGINT received, stopping"); false }
        _ = name_lost => true,
    };
    manager.recordings.shutdown();
    manager.apps.shutdown();
    if let Some(node) = node {
        node.stop().await;
    }
    if lost {
        bail!("lost {BUS_NAME} on the system bus; stopping");
    }
    Ok(())
}

/// Every few seconds, unmounts the releases no one needs any more (an old
/// release a sandbox was still running after an update, for one).
async fn sweep_mounts(manager: Arc<manager::Manager>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let apps = manager.apps.clone();
        let _ = tokio::task::spawn_blocking(move || apps.sweep()).await;
    }
}

/// A configured node that answers must be new enough; one that does not
/// answer yet is waited for by the monitor.
async fn check_configured_kubo(address: &str, config: &Config) -> Result<()> {
    let client = kubo::Client::new(address, config.kubo.request_timeout)?;
    match client.version().await {
        Ok(v) => {
            kubo::check_version(&v.version)
                .with_context(|| format!("refusing the Kubo node at {address}"))?;
            info!(api = address, version = %v.version, "using Kubo");
        }
        Err(e) => warn!("{e}; will keep trying"),
    }
    Ok(())
}

async fn start_embedded_kubo(config: &Config) -> Result<Node> {
    let node = Node::start(NodeSettings {
        binary: config.kubo.binary.clone(),
        repo: config.embedded_kubo_repo(),
        socket: config.embedded_kubo_socket(),
        user: config.kubo.user.clone(),
        init_profiles: config.kubo.init_profiles.clone(),
        restart_delay: config.kubo.restart_delay,
    })
    .await
    .context("cannot start the embedded Kubo node")?;
    let mut api = node.api();
    let address = tokio::time::timeout(EMBEDDED_START_TIMEOUT, api.wait_for(Option::is_some))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the embedded Kubo node did not start within {EMBEDDED_START_TIMEOUT:?}"
            )
        })?
        .context("the embedded Kubo supervisor stopped")?
        .clone()
        .unwrap_or_default();
    let version = kubo::Client::new(&address, config.kubo.request_timeout)?
        .version()
        .await?;
    if let Err(e) = kubo::check_version(&version.version) {
        node.stop().await;
        bail!(
            "refusing the embedded Kubo node ({}): {e}",
            config.kubo.binary.display()
        );
    }
    info!(api = %address, version = %version.version, "embedded Kubo node running");
    Ok(node)
}

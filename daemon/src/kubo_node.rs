//! The embedded Kubo node: used when the configuration names no Kubo API.
//!
//! Owns the node's repository under the state directory (`<state>/kubo`),
//! creates it on first start, runs `ipfs daemon`, publishes the API address
//! the node wrote to `$IPFS_PATH/api`, and restarts the node when it exits.
//! Stopping the daemon stops the node (SIGTERM, then SIGKILL).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

/// How long a freshly started node may take to write its `api` file.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a node may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Failures preparing the embedded node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot run the Kubo binary {binary:?} ({what}): {source}; install Kubo (scripts/build-kubo.sh) or set kubo.binary or kubo.api in the config file")]
    Spawn {
        binary: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot create {path}: {source}")]
    Repo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings of the embedded node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub binary: PathBuf,
    pub repo: PathBuf,
    pub init_profiles: Vec<String>,
    pub restart_delay: Duration,
}

/// A running supervisor; dropping it does not stop the node, [`Node::stop`] does.
pub struct Node {
    api: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Creates the repository if needed, then starts supervising the node.
    pub async fn start(settings: NodeSettings) -> Result<Node, NodeError> {
        prepare_repo(&settings).await?;
        let (api_tx, api) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(settings, api_tx, stop_rx));
        Ok(Node { api, stop, task })
    }

    /// The node's API address while it runs, `None` while it is down.
    pub fn api(&self) -> watch::Receiver<Option<String>> {
        self.api.clone()
    }

    /// Stops the node and waits for it to exit.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn ipfs(settings: &NodeSettings) -> Command {
    let mut command = Command::new(&settings.binary);
    command
        .env("IPFS_PATH", &settings.repo)
        .stdin(Stdio::null());
    command
}

/// Runs an `ipfs` subcommand to completion.
async fn run(settings: &NodeSettings, args: &[&str]) -> Result<(), NodeError> {
    let output = crate::subprocess::output(ipfs(settings).args(args), Duration::from_secs(120))
        .await
        .map_err(|e| NodeError::Spawn {
            binary: settings.binary.clone(),
            what: "ipfs init/config",
            source: e.into(),
        })?;
    if !output.status.success() {
        return Err(NodeError::Command {
            command: format!("ipfs {}", args.join(" ")),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Creates the repository on first start: `ipfs init`, with the API and
/// gateway on random loopback ports (only flatipfsd talks to them).
async fn prepare_repo(settings: &NodeSettings) -> Result<(), NodeError> {
    if settings.repo.join("config").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&settings.repo).map_err(|source| NodeError::Repo {
        path: settings.repo.clone(),
        source,
    })?;
    info!(repo = %settings.repo.display(), "creating the embedded Kubo repository");
    let mut init = vec!["init".to_string()];
    if !settings.init_profiles.is_empty() {
        init.push(format!("--profile={}", settings.init_profiles.join(",")));
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    run(settings, &init).await?;
    run(
        settings,
        &["config", "Addresses.API", "/ip4/127.0.0.1/tcp/0"],
    )
    .await?;
    run(
        settings,
        &["config", "Addresses.Gateway", "/ip4/127.0.0.1/tcp/0"],
    )
    .await?;
    Ok(())
}

async fn supervise(
    settings: NodeSettings,
    api: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match spawn_daemon(&settings) {
            Ok(mut child) => {
                let pid = child.id();
                info!(pid, "embedded Kubo started");
                tokio::select! {
                    found = wait_for_api(&settings.repo, &mut child) => match found {
                        Some(address) => {
                            info!(api = %address, "embedded Kubo is ready");
                            let _ = api.send(Some(address));
                        }
                        None => warn!("embedded Kubo did not write its API address"),
                    },
                    _ = stop.changed() => {}
                }
                if !*stop.borrow() {
                    tokio::select! {
                        status = child.wait() => {
                            warn!(?status, "embedded Kubo exited; restarting in {:?}", settings.restart_delay);
                        }
                        _ = stop.changed() => {}
                    }
                }
                let _ = api.send(None);
                if *stop.borrow() {
                    terminate(&mut child).await;
                    return;
                }
                // Make sure the old process is gone before a new one takes the repo lock.
                terminate(&mut child).await;
            }
            Err(e) => error!("{e}; retrying in {:?}", settings.restart_delay),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.restart_delay) => {}
            _ = stop.changed() => return,
        }
    }
}

fn spawn_daemon(settings: &NodeSettings) -> Result<Child, NodeError> {
    // A stale `api` file would point at a port nobody listens on.
    let _ = std::fs::remove_file(settings.repo.join("api"));
    let mut command = ipfs(settings);
    command
        .args(["daemon", "--migrate=true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // If flatipfsd dies without stopping the node, the node goes too.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|source| NodeError::Spawn {
        binary: settings.binary.clone(),
        what: "ipfs daemon",
        source,
    })?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(target: "flatipfsd::kubo_node::output", "{line}");
            }
        });
    }
    Ok(child)
}

/// Waits until the node wrote `$IPFS_PATH/api`, or exited, or took too long.
async fn wait_for_api(repo: &Path, child: &mut Child) -> Option<String> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(repo.join("api")) {
            let text = text.trim();
            if !text.is_empty() {
                return Some(text.to_string());
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
async fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        warn!("embedded Kubo did not stop after SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

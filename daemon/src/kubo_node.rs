//! The embedded Kubo node: used when the configuration names no Kubo API.
//!
//! Owns the node's repository under the state directory (`<state>/kubo`),
//! creates it on first start, runs `ipfs daemon`, publishes the node's API
//! address once the node is ready, and restarts the node when it exits.
//! Stopping the daemon stops the node (SIGTERM, then SIGKILL).
//!
//! The node is closed to everyone but the daemon: it runs as its own
//! unprivileged user (`kubo.user`: no supplementary groups, no
//! capabilities, `no_new_privs`), which owns the repository, and its RPC API
//! listens only on a unix socket in a directory that user owns with mode
//! 0700 (root reaches it by its DAC override; nobody else can). The gateway
//! is off. Both addresses are written on every start, so a repository made
//! by an older flatipfsd (TCP API, owned by root) is brought in line.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};
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
    #[error("the Kubo user {user:?} (kubo.user) does not exist; create it with `useradd --system --no-create-home --shell /usr/sbin/nologin {user}` (scripts/setup.sh does) or set kubo.user to another unprivileged user")]
    NoUser { user: String },
    #[error("kubo.user {user:?} is root (uid 0); the embedded Kubo node must run as an unprivileged user")]
    RootUser { user: String },
    #[error("cannot look up the Kubo user {user:?}: {source}")]
    UserLookup {
        user: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot give {path} to the Kubo user: {source}")]
    Chown {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Socket(#[from] crate::kubo::KuboError),
}

/// Settings of the embedded node.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub binary: PathBuf,
    pub repo: PathBuf,
    /// The API socket; its directory is made the Kubo user's, mode 0700.
    pub socket: PathBuf,
    /// The system user the node runs as.
    pub user: String,
    pub init_profiles: Vec<String>,
    pub restart_delay: Duration,
}

/// The `/unix/…` multiaddr of the API socket `socket`.
pub fn socket_multiaddr(socket: &Path) -> String {
    format!("/unix{}", socket.display())
}

/// Who the node runs as, and the binary it runs.
#[derive(Debug, Clone)]
struct Runner {
    settings: NodeSettings,
    uid: Uid,
    gid: Gid,
    /// The `ipfs` binary, opened by root; executed through `/proc/self/fd`
    /// when the Kubo user cannot reach its path (one under `/root`).
    binary: Arc<std::fs::File>,
    /// Whether every other user can reach and execute the binary's path.
    binary_public: bool,
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
        let runner = Runner::new(settings)?;
        prepare_repo(&runner).await?;
        let (api_tx, api) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(runner, api_tx, stop_rx));
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

impl Runner {
    /// Looks the Kubo user up and opens the binary.
    fn new(settings: NodeSettings) -> Result<Runner, NodeError> {
        crate::kubo::check_socket_path(&settings.socket.to_string_lossy())?;
        let user = User::from_name(&settings.user)
            .map_err(|source| NodeError::UserLookup {
                user: settings.user.clone(),
                source,
            })?
            .ok_or_else(|| NodeError::NoUser {
                user: settings.user.clone(),
            })?;
        if user.uid.is_root() {
            return Err(NodeError::RootUser {
                user: settings.user.clone(),
            });
        }
        let path = find_binary(&settings.binary);
        let binary = std::fs::File::open(&path).map_err(|source| NodeError::Spawn {
            binary: path.clone(),
            what: "opening it",
            source,
        })?;
        Ok(Runner {
            uid: user.uid,
            gid: user.gid,
            binary: Arc::new(binary),
            binary_public: reachable_by_all(&path),
            settings: NodeSettings {
                binary: path,
                ..settings
            },
        })
    }

    /// `ipfs` as the Kubo user: no supplementary groups, no capabilities
    /// (a setuid from root to another uid clears them), `no_new_privs`,
    /// SIGTERM when flatipfsd dies.
    fn ipfs(&self) -> Command {
        let mut command = if self.binary_public {
            Command::new(&self.settings.binary)
        } else {
            Command::new(format!("/proc/self/fd/{}", self.binary.as_raw_fd()))
        };
        command
            .arg0("ipfs")
            .env("IPFS_PATH", &self.settings.repo)
            .env("HOME", &self.settings.repo)
            .current_dir("/")
            .stdin(Stdio::null());
        let (uid, gid) = (self.uid, self.gid);
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
                nix::sys::prctl::set_no_new_privs()?;
                // After the uid change, which clears the parent-death signal.
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                Ok(())
            });
        }
        command
    }

    /// Runs an `ipfs` subcommand to completion.
    async fn run(&self, args: &[&str]) -> Result<(), NodeError> {
        let output = crate::subprocess::output(self.ipfs().args(args), Duration::from_secs(120))
            .await
            .map_err(|e| NodeError::Spawn {
                binary: self.settings.binary.clone(),
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

    /// Makes `root` and everything below it the Kubo user's: a repository
    /// left by an older flatipfsd (owned by root), or files an
    /// administrator's `ipfs` command run as root added (a key imported, the
    /// config rewritten). Only what differs is changed. Block files (under
    /// `blocks/`, possibly hundreds of thousands) are looked at one by one
    /// only when `blocks/` itself is not the user's (a repository created
    /// as root, whose block files `ipfs` made mode 0600): otherwise the
    /// directories holding them are checked.
    fn own(&self, root: &Path) -> Result<(), NodeError> {
        let chown_error = |path: &Path, source| NodeError::Chown {
            path: path.to_owned(),
            source,
        };
        let (uid, gid) = (self.uid.as_raw(), self.gid.as_raw());
        let blocks = root.join("blocks");
        let blocks_too = std::fs::symlink_metadata(&blocks)
            .map(|m| m.uid() != uid || m.gid() != gid)
            .unwrap_or(false);
        let mut changed = 0usize;
        let mut fix = |path: &Path, meta: &std::fs::Metadata| -> Result<(), NodeError> {
            if meta.uid() != uid || meta.gid() != gid {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid))
                    .map_err(|e| chown_error(path, e))?;
                changed += 1;
            }
            Ok(())
        };
        let meta = std::fs::symlink_metadata(root).map_err(|e| chown_error(root, e))?;
        fix(root, &meta)?;
        let mut dirs = vec![root.to_owned()];
        while let Some(dir) = dirs.pop() {
            for child in std::fs::read_dir(&dir).map_err(|e| chown_error(&dir, e))? {
                let child = child.map_err(|e| chown_error(&dir, e))?;
                let path = child.path();
                let is_dir = child
                    .file_type()
                    .map_err(|e| chown_error(&path, e))?
                    .is_dir();
                if !is_dir && !blocks_too && path.starts_with(&blocks) {
                    continue;
                }
                // The daemon's own marker stays root's (`block_shards`
                // trusts only a marker of root's).
                if path == crate::block_shards::marker(root) {
                    continue;
                }
                let meta = child.metadata().map_err(|e| chown_error(&path, e))?;
                fix(&path, &meta)?;
                if is_dir {
                    dirs.push(path);
                }
            }
        }
        if changed > 0 {
            info!(path = %root.display(), user = %self.settings.user, changed, "gave files of the embedded Kubo node to its user");
        }
        Ok(())
    }

    /// Creates `dir` if needed, mode 0700, the Kubo user's.
    fn private_dir(&self, dir: &Path) -> Result<(), NodeError> {
        let repo_error = |source| NodeError::Repo {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(repo_error)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(repo_error)?;
        self.own(dir)
    }
}

/// `binary` itself when it names a path, else the first executable of that
/// name on `PATH`.
fn find_binary(binary: &Path) -> PathBuf {
    if binary.components().count() > 1 || binary.is_absolute() {
        return binary.to_owned();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(binary))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| binary.to_owned())
}

/// Whether `path` and each directory above it grant execute (search) to
/// every user.
fn reachable_by_all(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Creates the repository on first start (`ipfs init`, as the Kubo user),
/// gives an older root-owned one to the Kubo user, and on every start
/// writes the API address (the unix socket) and turns the gateway off.
async fn prepare_repo(runner: &Runner) -> Result<(), NodeError> {
    let settings = &runner.settings;
    let socket_dir = settings
        .socket
        .parent()
        .expect("the socket is in a directory")
        .to_owned();
    runner.private_dir(&socket_dir)?;
    runner.private_dir(&settings.repo)?;
    if !settings.repo.join("config").exists() {
        info!(repo = %settings.repo.display(), "creating the embedded Kubo repository");
        let mut init = vec!["init".to_string()];
        if !settings.init_profiles.is_empty() {
            init.push(format!("--profile={}", settings.init_profiles.join(",")));
        }
        let init: Vec<&str> = init.iter().map(String::as_str).collect();
        runner.run(&init).await?;
        crate::block_shards::mark(&settings.repo).map_err(|source| NodeError::Repo {
            path: settings.repo.clone(),
            source,
        })?;
    }
    // A repository just created (or whose change a crash interrupted) gets
    // 32 block shard directories instead of 1,024 (`block_shards`).
    if crate::block_shards::apply(&settings.repo).map_err(|source| NodeError::Repo {
        path: settings.repo.clone(),
        source,
    })? {
        info!(repo = %settings.repo.display(), shards = crate::block_shards::SHARD_FUNC, "block directory sharded");
    }
    let api = socket_multiaddr(&settings.socket);
    runner.run(&["config", "Addresses.API", &api]).await?;
    runner
        .run(&["config", "--json", "Addresses.Gateway", "[]"])
        .await?;
    // Fetched files are kept once, as local files Kubo serves its blocks
    // from (`local_store`).
    runner
        .run(&["config", "--json", "Experimental.FilestoreEnabled", "true"])
        .await?;
    Ok(())
}

async fn supervise(
    runner: Runner,
    api: watch::Sender<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let settings = &runner.settings;
    loop {
        match spawn_daemon(&runner) {
            Ok(mut child) => {
                let pid = child.id();
                info!(pid, "embedded Kubo started");
                tokio::select! {
                    found = wait_for_api(&settings.repo, &mut child) => match found {
                        Some(_) => {
                            // The address is ours, not what the node wrote.
                            let address = socket_multiaddr(&settings.socket);
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

fn spawn_daemon(runner: &Runner) -> Result<Child, NodeError> {
    let settings = &runner.settings;
    // A stale `api` file would say the node is ready before it is; a stale
    // socket (the node was killed) would make its bind fail.
    let _ = std::fs::remove_file(settings.repo.join("api"));
    let _ = std::fs::remove_file(&settings.socket);
    let mut command = runner.ipfs();
    command
        .args(["daemon", "--migrate=true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
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

//! A complete flatipfs stack of real components inside one directory.
//!
//! `Stack::up(DIR)` starts, all inside DIR: a private system-style
//! `dbus-daemon` whose configuration includes the project's bus policy; a real
//! `polkitd` on that bus (with the project's polkit files installed where
//! polkitd reads them); Kubo nodes on the private network of
//! [`crate::network`] (loopback, a DHT like the public one), which know each
//! other only through their bootstrap list; and `flatipfsd` configured for
//! the first node (or for its own embedded node). `Stack::down(DIR)` stops exactly the processes it started,
//! by pid and start time, and unmounts whatever is mounted under DIR.
//! Two stacks in two directories share nothing but the polkit files.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths;
use crate::process::{self, Owned};

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Number of Kubo nodes (0 to 2 or more); node 1 serves the daemon.
    pub kubo_nodes: usize,
    /// Start `flatipfsd`.
    pub daemon: bool,
    /// Let the daemon run its own embedded node instead of using node 1.
    pub embedded_kubo: bool,
    /// Extra TOML appended to the daemon's configuration file.
    pub extra_config: String,
    /// Also install the test-only polkit rules (`tests/fixtures/polkit`).
    pub test_polkit_rules: bool,
    /// The bootstrap list (full `/p2p/` multiaddrs) of every node of this
    /// stack, the embedded one included. Empty: node 1 is the network's
    /// bootstrap node (it knows no one) and the others bootstrap from it.
    pub bootstrap: Vec<String>,
    /// Only Kubo nodes: no system bus, polkitd or daemon (a network's
    /// bootstrap node).
    pub network_only: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            kubo_nodes: 2,
            daemon: true,
            embedded_kubo: false,
            extra_config: String::new(),
            test_polkit_rules: false,
            bootstrap: Vec::new(),
            network_only: false,
        }
    }
}

/// One Kubo node of a stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KuboNode {
    /// 1-based number; the process is named `kubo-N`.
    pub number: usize,
    /// `IPFS_PATH`.
    pub repo: PathBuf,
    /// RPC API multiaddr (fixed port, so a restarted node keeps it).
    pub api: String,
    /// Swarm multiaddr with its peer ID (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`),
    /// what other nodes put in their bootstrap list.
    #[serde(default)]
    pub address: String,
}

/// A running stack; `down` (or drop, for tests) stops it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stack {
    pub dir: PathBuf,
    /// `unix:path=DIR/system_bus_socket`.
    pub bus_address: String,
    pub kubo: Vec<KuboNode>,
    /// The daemon's configuration file.
    pub config: PathBuf,
    /// Stop everything when the value is dropped (tests); not for `up`.
    #[serde(skip)]
    pub down_on_drop: bool,
}

const STATE_FILE: &str = "stack.json";
const PIDS_FILE: &str = "pids";
const START_TIMEOUT: Duration = Duration::from_secs(90);

impl Stack {
    /// Starts a stack in `dir` (created if needed; must not hold a running stack).
    pub fn up(dir: &Path, options: &StackOptions) -> Result<Stack> {
        fs::create_dir_all(dir.join("logs"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        if process::read(&dir.join(PIDS_FILE))?
            .iter()
            .any(Owned::alive)
        {
            bail!(
                "a stack is already running in {}; run `flatipfs-stack down {}` first",
                dir.display(),
                dir.display()
            );
        }
        let _ = fs::remove_file(dir.join(PIDS_FILE));
        // polkitd (as user polkitd) and clients running as other users must
        // reach the bus socket inside.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        for ancestor in dir.ancestors().skip(1) {
            let mode = fs::metadata(ancestor)?.permissions().mode();
            if mode & 0o001 == 0 {
                bail!(
                    "{} is not searchable by other users (mode {:o}): polkitd and unprivileged clients could not reach the bus socket in {}; use a directory whose parents are world-searchable, like /tmp/NAME",
                    ancestor.display(),
                    mode & 0o7777,
                    dir.display()
                );
            }
        }
        let mut stack = Stack {
            bus_address: format!("unix:path={}", dir.join("system_bus_socket").display()),
            config: dir.join("flatipfsd.toml"),
            kubo: Vec::new(),
            dir: dir.clone(),
            down_on_drop: false,
        };
        let started = stack.start_all(options);
        if let Err(e) = started {
            let _ = Stack::down(&dir);
            return Err(e.context(format!(
                "stack in {} did not start; logs are in {}/logs",
                dir.display(),
                dir.display()
            )));
        }
        stack.save()?;
        Ok(stack)
    }

    fn start_all(&mut self, options: &StackOptions) -> Result<()> {
        let kubo = paths::kubo_binary()?;
        if !options.network_only {
            install_polkit_files(options.test_polkit_rules)?;
            self.start_bus()?;
            self.start_polkit()?;
        }
        for number in 1..=options.kubo_nodes {
            let bootstrap = match (&options.bootstrap[..], self.kubo.first()) {
                ([], None) => Vec::new(),
                ([], Some(first)) => vec![first.address.clone()],
                (list, _) => list.to_vec(),
            };
            let node = self.init_kubo(&kubo, number, &bootstrap)?;
            self.kubo.push(node);
            self.start_kubo(number)?;
        }
        if options.daemon && !options.network_only {
            let api = if options.embedded_kubo {
                None
            } else {
                Some(
                    self.kubo
                        .first()
                        .context("the daemon needs a Kubo node, or embedded_kubo")?
                        .api
                        .clone(),
                )
            };
            if options.embedded_kubo {
                crate::embedded::ensure_kubo_user()?;
                if !options.bootstrap.is_empty() {
                    // The daemon takes over a repository it finds (and
                    // gives it to its Kubo user): created here, it joins
                    // the network.
                    let node = crate::embedded::node(&self.dir, self.kubo.len() + 1);
                    fs::create_dir_all(&node.repo)?;
                    run_ok(
                        Command::new(&kubo)
                            .env("IPFS_PATH", &node.repo)
                            .args(["init", "--profile=test"]),
                    )?;
                    // As the daemon marks a repository it creates: at its
                    // start it shards the block directory 32 ways
                    // (`block_shards`).
                    fs::write(node.repo.join("flatipfs-block-shards"), b"")?;
                    crate::network::configure(
                        &node.repo,
                        &node.api,
                        free_port()?,
                        &options.bootstrap,
                    )?;
                }
            }
            self.write_config(&kubo, api.as_deref(), &options.extra_config)?;
            self.start_daemon()?;
            if options.embedded_kubo {
                // The embedded node is the stack's next node: root reaches
                // it through its socket (`ipfs` finds it in the repo's `api`).
                let number = self.kubo.len() + 1;
                let mut node = crate::embedded::node(&self.dir, number);
                // Known once the daemon created its repository (or here, on a network).
                node.address = crate::network::peer_address(&node.repo).unwrap_or_default();
                self.kubo.push(node);
            }
        }
        Ok(())
    }

    /// Reads the stack saved in `dir` by `up`.
    pub fn load(dir: &Path) -> Result<Stack> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).with_context(|| {
            format!("no stack in {} ({} missing)", dir.display(), path.display())
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    fn save(&self) -> Result<()> {
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        fs::rename(tmp, self.dir.join(STATE_FILE))?;
        Ok(())
    }

    /// The lines to `eval` in a shell to use this stack.
    pub fn env_lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("export DBUS_SYSTEM_BUS_ADDRESS={}", self.bus_address),
            format!(
                "export FLATPAK_CONFIG_DIR={}",
                self.flatpak_config_dir().display()
            ),
        ];
        for node in &self.kubo {
            lines.push(format!(
                "export FLATIPFS_KUBO_API_{}={}",
                node.number, node.api
            ));
            lines.push(format!(
                "export FLATIPFS_KUBO_PATH_{}={}",
                node.number,
                node.repo.display()
            ));
            lines.push(format!(
                "export FLATIPFS_KUBO_PEER_{}={}",
                node.number, node.address
            ));
        }
        lines
    }

    /// Stops every process started in `dir`, newest first, and unmounts
    /// whatever is mounted below `dir`.
    pub fn down(dir: &Path) -> Result<()> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut failures = Vec::new();
        unmount_below(&dir, &mut failures);
        for owned in process::read(&dir.join(PIDS_FILE))?.iter().rev() {
            if let Err(e) = owned.stop(Duration::from_secs(15)) {
                failures.push(e.to_string());
            }
        }
        unmount_below(&dir, &mut failures);
        if !failures.is_empty() {
            bail!(
                "stopping the stack in {}: {}",
                dir.display(),
                failures.join("; ")
            );
        }
        Ok(())
    }

    /// The processes this stack started that still run.
    pub fn processes(&self) -> Result<Vec<Owned>> {
        Ok(process::read(&self.dir.join(PIDS_FILE))?
            .into_iter()
            .filter(Owned::alive)
            .collect())
    }

    /// The live process named `name` (`dbus`, `polkitd`, `kubo-1`, `flatipfsd`).
    pub fn process(&self, name: &str) -> Result<Owned> {
        self.processes()?
            .into_iter()
            .find(|o| o.name == name)
            .with_context(|| format!("{name} is not running in {}", self.dir.display()))
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// Starts another process that belongs to this stack (stopped by `down`).
    pub fn start_process(&self, name: &str, command: Command) -> Result<Owned> {
        self.spawn(name, command)
    }

    fn spawn(&self, name: &str, command: Command) -> Result<Owned> {
        let owned = process::spawn(name, command, &self.log(name))?;
        process::record(&self.dir.join(PIDS_FILE), &owned)?;
        Ok(owned)
    }

    /// A command with this stack's bus in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        command
    }

    fn start_bus(&self) -> Result<()> {
        let dbus_daemon = paths::system_program("/usr/bin/dbus-daemon", "dbus-daemon")?;
        let policy = paths::project_root()
            .join("dbus")
            .join(flatipfs_dbus::BUS_POLICY_FILE);
        let polkit_policy = paths::system_program(
            "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf",
            "polkitd",
        )?;
        let socket = self.dir.join("system_bus_socket");
        let _ = fs::remove_file(&socket);
        let conf = self.dir.join("bus.conf");
        fs::write(&conf, bus_config(&socket, &policy, &polkit_policy))?;
        let mut command = Command::new(dbus_daemon);
        command
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"]);
        self.spawn("dbus", command)?;
        wait_until("the system bus socket", || Ok(self.bus().is_ok()))?;
        Ok(())
    }

    /// A new connection to this stack's bus.
    pub fn bus(&self) -> Result<zbus::blocking::Connection> {
        Ok(zbus::blocking::connection::Builder::address(self.bus_address.as_str())?.build()?)
    }

    /// Whether `name` has an owner on this stack's bus.
    pub fn name_has_owner(&self, name: &str) -> Result<bool> {
        let bus = self.bus()?;
        let dbus = zbus::blocking::fdo::DBusProxy::new(&bus)?;
        Ok(dbus.name_has_owner(name.try_into()?)?)
    }

    fn start_polkit(&self) -> Result<()> {
        let polkitd = paths::system_program("/usr/lib/polkit-1/polkitd", "polkitd")?;
        let mut command = self.command(polkitd);
        command.arg("--no-debug");
        self.spawn("polkitd", command)?;
        wait_until("polkitd on the bus", || {
            self.name_has_owner("org.freedesktop.PolicyKit1")
        })
    }

    fn init_kubo(&self, kubo: &Path, number: usize, bootstrap: &[String]) -> Result<KuboNode> {
        let repo = self.dir.join(format!("kubo-{number}"));
        if !repo.join("config").exists() {
            run_ok(
                Command::new(kubo)
                    .env("IPFS_PATH", &repo)
                    .args(["init", "--profile=test"]),
            )?;
        }
        let api = format!("/ip4/127.0.0.1/tcp/{}", free_port()?);
        // A fixed swarm port too: a restarted node keeps its address, and
        // peers that know it (bootstrap, peering) reconnect by themselves.
        crate::network::configure(&repo, &api, free_port()?, bootstrap)?;
        let address = crate::network::peer_address(&repo)?;
        Ok(KuboNode {
            number,
            repo,
            api,
            address,
        })
    }

    /// Starts (or restarts) node `number`; waits until its API answers.
    pub fn start_kubo(&self, number: usize) -> Result<()> {
        let kubo = paths::kubo_binary()?;
        let node = self.kubo_node(number)?;
        let _ = fs::remove_file(node.repo.join("api"));
        let mut command = Command::new(&kubo);
        command
            .env("IPFS_PATH", &node.repo)
            .env("IPFS_TELEMETRY", "off")
            .arg("daemon");
        let name = format!("kubo-{number}");
        self.spawn(&name, command)?;
        wait_until(&name, || {
            Ok(node.repo.join("api").exists()
                && Command::new(&kubo)
                    .env("IPFS_PATH", &node.repo)
                    .args(["id", "-f", "<id>"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false))
        })
    }

    /// Waits until the daemon sees its Kubo node as usable again (after
    /// the node was restarted).
    pub fn wait_kubo_usable(&self) -> Result<()> {
        wait_until("flatipfsd to see Kubo again", || {
            let bus = self.bus()?;
            let manager = flatipfs_dbus::proxy::ManagerProxyBlocking::new(&bus)?;
            Ok(manager.kubo_status()?.usable())
        })
    }

    /// Stops node `number` (SIGTERM, then SIGKILL).
    pub fn stop_kubo(&self, number: usize) -> Result<()> {
        self.process(&format!("kubo-{number}"))?
            .stop(Duration::from_secs(15))
    }

    /// Node `number` (1-based).
    pub fn kubo_node(&self, number: usize) -> Result<&KuboNode> {
        self.kubo
            .get(number.wrapping_sub(1))
            .with_context(|| format!("this stack has no Kubo node {number}"))
    }

    fn write_config(&self, kubo: &Path, api: Option<&str>, extra: &str) -> Result<()> {
        let state = self.dir.join("state");
        fs::create_dir_all(&state)?;
        let mut text = format!(
            "# Written by flatipfs-stack for this stack only.\nstate_directory = \"{}\"\nlog_level = \"info,flatipfsd=debug\"\n\n[kubo]\nbinary = \"{}\"\ninit_profiles = [\"test\"]\nstatus_interval = \"500ms\"\nrestart_delay = \"500ms\"\n",
            state.display(),
            kubo.display()
        );
        if let Some(api) = api {
            text.push_str(&format!("api = \"{api}\"\n"));
        }
        // Short fetch timings, so that failures and retries show within a test.
        text.push_str(&format!(
            "\n[installation]\nflatpak_config_dir = \"{}\"\n\n[fetch]\nread_timeout = \"10s\"\nresolve_timeout = \"10s\"\ndocument_timeout = \"20s\"\nstall_timeout = \"10s\"\nretry_delay = \"1s\"\nretry_max_delay = \"4s\"\n",
            self.flatpak_config_dir().display()
        ));
        text.push_str(extra);
        fs::write(&self.config, text)?;
        Ok(())
    }

    /// Starts (or restarts) the daemon; waits until it owns its bus name.
    pub fn start_daemon(&self) -> Result<()> {
        let mut command = self.command(paths::binary("flatipfsd")?);
        command.arg("--config").arg(&self.config);
        let owned = self.spawn("flatipfsd", command)?;
        let alive = || -> Result<()> {
            if owned.alive() {
                Ok(())
            } else {
                Err(Fatal(format!(
                    "flatipfsd exited; see {}",
                    self.log("flatipfsd").display()
                ))
                .into())
            }
        };
        wait_until("flatipfsd on the bus", || {
            alive()?;
            self.name_has_owner(flatipfs_dbus::BUS_NAME)
        })?;
        // Ready once the daemon has had its first look at Kubo.
        wait_until("flatipfsd's first Kubo status", || {
            alive()?;
            let bus = self.bus()?;
            let manager = flatipfs_dbus::proxy::ManagerProxyBlocking::new(&bus)?;
            Ok(manager.kubo_status()?.error != "starting")
        })
    }

    /// Runs the `ipfs` CLI against node `number`; returns stdout.
    pub fn ipfs(&self, number: usize, args: &[&str]) -> Result<String> {
        let kubo = paths::kubo_binary()?;
        let node = self.kubo_node(number)?;
        // A bound, so that a block that never arrives fails the test instead of hanging it.
        run_ok(
            Command::new(kubo)
                .env("IPFS_PATH", &node.repo)
                .arg("--timeout=60s")
                .args(args),
        )
    }

    /// Like [`Stack::ipfs`], returning stdout's raw bytes.
    pub fn ipfs_bytes(&self, number: usize, args: &[&str]) -> Result<Vec<u8>> {
        let output = Command::new(paths::kubo_binary()?)
            .env("IPFS_PATH", &self.kubo_node(number)?.repo)
            .arg("--timeout=60s")
            .args(args)
            .output()?;
        if !output.status.success() {
            bail!(
                "ipfs {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output.stdout)
    }

    /// The Flatpak configuration directory the daemon registers its
    /// installation in (`FLATPAK_CONFIG_DIR` for `flatpak` commands).
    pub fn flatpak_config_dir(&self) -> PathBuf {
        self.dir.join("flatpak-config")
    }

    /// The daemon's Flatpak installation.
    pub fn installation(&self) -> PathBuf {
        self.dir.join("state/installation")
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.log("flatipfsd")).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.down_on_drop {
            if let Err(e) = Stack::down(&self.dir) {
                eprintln!("{e:#}");
            }
        }
    }
}

/// The private bus's configuration: Debian's system bus policy, minus what
/// needs a real system, plus the project's policy and polkit's.
fn bus_config(socket: &Path, policy: &Path, polkit_policy: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <include>{policy}</include>
  <include>{polkit_policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display(),
        polkit_policy = polkit_policy.display(),
    )
}

/// Installs the project's polkit action file and rules where polkitd reads
/// them (its directories are compiled in). Atomic and idempotent, so parallel
/// stacks do not disturb each other; left in place afterwards.
fn install_polkit_files(test_rules: bool) -> Result<()> {
    let root = paths::project_root();
    let mut files = vec![
        (
            root.join("polkit/org.flatipfs.manager1.policy"),
            PathBuf::from("/usr/share/polkit-1/actions/org.flatipfs.manager1.policy"),
        ),
        (
            root.join("polkit/50-org.flatipfs.manager1.rules"),
            PathBuf::from("/etc/polkit-1/rules.d/50-org.flatipfs.manager1.rules"),
        ),
    ];
    if test_rules {
        files.push((
            root.join("tests/fixtures/polkit/40-flatipfs-tests.rules"),
            PathBuf::from("/etc/polkit-1/rules.d/40-flatipfs-tests.rules"),
        ));
    }
    for (from, to) in files {
        let content = fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        if fs::read(&to).ok().as_deref() == Some(&content[..]) {
            continue;
        }
        let dir = to.parent().context("target has a parent")?;
        if !dir.is_dir() {
            bail!(
                "{} is missing: install the Debian package `polkitd`",
                dir.display()
            );
        }
        let tmp = dir.join(format!(
            ".{}.{}",
            to.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        fs::write(&tmp, &content)
            .with_context(|| format!("cannot write {} (run as root)", tmp.display()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
        fs::rename(&tmp, &to)?;
    }
    Ok(())
}

/// Unmounts (lazily) every mount point at or below `dir`, deepest first.
fn unmount_below(dir: &Path, failures: &mut Vec<String>) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        if let Err(e) = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
            failures.push(format!("cannot unmount {}: {e}", point.display()));
        }
    }
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code = u8::from_str_radix(&p[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// An error that ends [`wait_for`] at once (the awaited process died).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Polls `check` until it is true, for at most [`START_TIMEOUT`].
pub fn wait_until(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    wait_for(what, START_TIMEOUT, &mut check)
}

/// Polls `check` until it is true or `limit` passes. The limit only keeps a
/// broken run from hanging; no test asserts how long anything took.
pub fn wait_for(
    what: &str,
    limit: Duration,
    check: &mut dyn FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last_error = None;
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.is::<Fatal>() => return Err(e),
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match last_error {
        Some(e) => Err(e.context(format!("gave up waiting for {what} after {limit:?}"))),
        None => bail!("gave up waiting for {what} after {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::unescape_mount_path;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}

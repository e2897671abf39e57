//! A person at a terminal, for the password prompt tests: a test user with a
//! password, a polkit rule that makes that user authenticate, and a command
//! run in a detached `tmux` session whose screen is read and typed into.
//!
//! The setuid `polkit-agent-helper-1` ignores `DBUS_SYSTEM_BUS_ADDRESS` and
//! talks to `/run/dbus/system_bus_socket`, so the command runs in a private
//! mount namespace where the stack's directory (which holds its
//! `system_bus_socket`) is bound over `/run/dbus`
//! (`../shared/reference/system-services.md`, "A polkit text agent").

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::User;

use crate::{paths, Stack};

/// A user in no admin group, with a password.
pub const PASSWORD_USER: &str = "flatipfs-t-pw";
/// [`PASSWORD_USER`]'s password.
pub const PASSWORD: &str = "correct-horse-4821";

const RULES: &str = "40-flatipfs-tests-password.rules";

/// Creates [`PASSWORD_USER`] (with [`PASSWORD`]) and installs the rule that
/// makes it authenticate for every flatipfs action. Call before the stack
/// starts (polkitd reads rules at start).
pub fn ensure_password_user() -> Result<()> {
    let lock = File::create("/run/flatipfs-tests-users.lock")
        .context("cannot create /run/flatipfs-tests-users.lock (tests must run as root)")?;
    let _guard = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("cannot lock the test users")?;
    if User::from_name(PASSWORD_USER)?.is_none() {
        run(Command::new("useradd").args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            PASSWORD_USER,
        ]))?;
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run chpasswd (Debian package `passwd`)")?;
    use std::io::Write;
    chpasswd
        .stdin
        .take()
        .context("chpasswd stdin")?
        .write_all(format!("{PASSWORD_USER}:{PASSWORD}\n").as_bytes())?;
    if !chpasswd.wait()?.success() {
        bail!("chpasswd failed for {PASSWORD_USER}");
    }
    let from = paths::project_root()
        .join("tests/fixtures/polkit")
        .join(RULES);
    let to = Path::new("/etc/polkit-1/rules.d").join(RULES);
    let content = fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
    if fs::read(&to).ok().as_deref() != Some(&content[..]) {
        let tmp = to.with_extension("tmp");
        fs::write(&tmp, &content)?;
        fs::rename(&tmp, &to)?;
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `flatipfsctl ARGS` as `user`, on the terminal of a detached tmux session;
/// its exit code is written to a file when it ends. The server is killed on
/// drop.
pub struct Terminal {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Terminal {
    /// Starts `flatipfsctl ARGS` as `user` against `stack`.
    pub fn flatipfsctl(stack: &Stack, user: &str, args: &[&str]) -> Result<Terminal> {
        let account = User::from_name(user)?.with_context(|| format!("no user {user}"))?;
        let dir = tempfile::Builder::new().prefix("flatipfs-tty-").tempdir()?;
        let socket = dir.path().join("tmux.sock");
        let status = dir.path().join("status");
        let bin = paths::binary("flatipfsctl")?;
        let quoted: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "set -u\n\
             mkdir -p /run/dbus\n\
             mount --bind {stack_dir} /run/dbus || exit 99\n\
             env -i TERM=screen PATH=/usr/bin:/bin HOME=/ \
             DBUS_SYSTEM_BUS_ADDRESS={bus} FLATPAK_CONFIG_DIR={flatpak} \
             setpriv --reuid={uid} --regid={gid} --init-groups -- {bin} {args}\n\
             echo $? > {status}.tmp && mv {status}.tmp {status}\n\
             sleep 600\n",
            stack_dir = shell_quote(&stack.dir.to_string_lossy()),
            bus = shell_quote(&stack.bus_address),
            flatpak = shell_quote(&stack.flatpak_config_dir().to_string_lossy()),
            uid = account.uid,
            gid = account.gid,
            bin = shell_quote(&bin.to_string_lossy()),
            args = quoted.join(" "),
            status = shell_quote(&status.to_string_lossy()),
        );
        let script_path = dir.path().join("run.sh");
        fs::write(&script_path, script)?;
        let command = format!(
            "unshare --mount --propagation private sh {}",
            shell_quote(&script_path.to_string_lossy())
        );
        let terminal = Terminal { dir, socket };
        run(terminal
            .tmux()
            .args(["new-session", "-d", "-x", "200", "-y", "50"])
            .arg(command))?;
        Ok(terminal)
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.arg("-S").arg(&self.socket);
        command
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> Result<String> {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-S", "-50"])
            .output()
            .context("cannot run tmux (Debian package `tmux`)")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the screen shows `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen()?;
            if screen.contains(text) {
                return Ok(screen);
            }
            if start.elapsed() > timeout {
                bail!("the terminal never showed {text:?}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, text: &str) -> Result<()> {
        run(self.tmux().args(["send-keys", "-l", text]))?;
        run(self.tmux().args(["send-keys", "Enter"]))
    }

    /// Waits for the command to end; its exit code.
    pub fn exit_code(&self, timeout: Duration) -> Result<i32> {
        let status = self.dir.path().join("status");
        let start = Instant::now();
        while !status.exists() {
            if start.elapsed() > timeout {
                bail!(
                    "flatipfsctl did not end; the terminal shows:\n{}",
                    self.screen()?
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(fs::read_to_string(&status)?.trim().parse()?)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

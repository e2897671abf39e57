//! `flatipfsctl`: the command-line client of `flatipfsd`.
//!
//! A thin layer over the D-Bus API: every command is one or a few calls,
//! printed as text or, with `--json`, as JSON on stdout (errors included).
//! Exit codes are listed in `docs/flatipfsctl.md` and in [`exit`].

mod exit;
mod output;

use clap::{Parser, Subcommand};
use flatipfs_dbus::proxy::ManagerProxy;
use flatipfs_dbus::Error;
use zbus::proxy::MethodFlags;

use crate::exit::Failure;

#[derive(Parser)]
#[command(
    version,
    about = "Install, update and roll back Flatpak apps from IPFS"
)]
struct Cli {
    /// Print JSON on stdout instead of text (errors too).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the daemon's version and its Kubo node's status.
    Status,
    /// Make the daemon re-read its configuration file (needs authorization).
    ReloadConfig,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    let result = run(&cli).await;
    let code = match result {
        Ok(()) => exit::OK,
        Err(failure) => {
            output::failure(cli.json, &failure);
            failure.code
        }
    };
    std::process::exit(code);
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| Failure::unreachable(&e.to_string()))?;
    let manager = ManagerProxy::new(&connection)
        .await
        .map_err(|e| Failure::from_call(e.into()))?;
    match cli.command {
        Command::Status => status(cli.json, &manager).await,
        Command::ReloadConfig => {
            call_mutating(&manager, "ReloadConfig", &()).await?;
            output::done(cli.json, "configuration reloaded");
            Ok(())
        }
    }
}

async fn status(json: bool, manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let version = manager
        .version()
        .await
        .map_err(|e| Failure::from_call(e.into()))?;
    let features = manager
        .features()
        .await
        .map_err(|e| Failure::from_call(e.into()))?;
    let kubo = manager
        .kubo_status()
        .await
        .map_err(|e| Failure::from_call(e.into()))?;
    output::status(json, &version, &features, &kubo);
    Ok(())
}

/// Calls a polkit-gated method, allowing interactive authorization when a
/// person is at the terminal (so a polkit agent may ask for a password).
async fn call_mutating<B>(manager: &ManagerProxy<'_>, method: &str, body: &B) -> Result<(), Failure>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    let flags = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        MethodFlags::AllowInteractiveAuth.into()
    } else {
        Default::default()
    };
    manager
        .inner()
        .call_with_flags::<_, _, ()>(method, flags, body)
        .await
        .map(|_| ())
        .map_err(|e| Failure::from_call(Error::from(e)))
}

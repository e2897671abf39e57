//! `flatipfsctl`: the command-line client of `flatipfsd`.
//!
//! A thin layer over the D-Bus API: every command is one or a few calls,
//! printed as text or, with `--json`, as JSON on stdout (errors included).
//! Exit codes are listed in `docs/flatipfsctl.md` and in [`exit`].

/// Every line `flatipfsctl` prints goes through [`output::displayable`]:
/// what the daemon sends (versions, ids, statuses, error messages) comes
/// from the network and could carry terminal escape sequences. Defined
/// before the modules, these shadow `std`'s macros in every one of them.
macro_rules! println {
    () => { ::std::println!() };
    ($($arg:tt)*) => {
        ::std::println!("{}", $crate::output::displayable(&::std::format!($($arg)*)))
    };
}

/// [`println!`] for stderr.
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::output::displayable(&::std::format!($($arg)*)))
    };
}

mod agent;
mod apps;
mod catalog;
mod exit;
mod jobs;
mod manual;
mod mirrors;
mod output;
mod startup;
mod updates;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use flatipfs_dbus::proxy::ManagerProxy;
use flatipfs_dbus::Error;
use std::collections::HashMap;

use zbus::proxy::MethodFlags;
use zbus::zvariant::Value;

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
    /// Remotes: stores of apps on IPFS.
    Remote {
        #[command(subcommand)]
        command: RemoteCommand,
    },
    /// Publish a Flatpak build to a remote: DEPLOY_DIR, or --repo PATH REF.
    Publish(PublishArgs),
    /// Install an app: REMOTE APP_ID, or /ipfs/<release root> for a fixed release.
    Install {
        /// Return once the app can run, leaving the rest of the fetch to the daemon.
        #[arg(long)]
        no_wait: bool,
        #[arg(required = true, num_args = 1..=2, value_names = ["REMOTE", "APP_ID"])]
        source: Vec<String>,
    },
    /// Uninstall an app (unmounted, unpinned, its files removed).
    Uninstall { app_id: String },
    /// List installed apps and runtimes.
    List,
    /// Search the apps trusted remotes offer (id, name, summary, description).
    Search {
        #[arg(required = true)]
        words: Vec<String>,
    },
    /// Show one installed app.
    Info { app_id: String },
    /// Run an app with `flatpak run`, warning while it is still being fetched.
    Run {
        app_id: String,
        /// Arguments for the app.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Update apps (all installed from a remote when none is named).
    Update {
        /// Only check for newer releases and show them.
        #[arg(long)]
        check: bool,
        /// Fetch the new release completely but do not switch to it.
        #[arg(long, conflicts_with_all = ["cached_only", "check"])]
        download_only: bool,
        /// Switch to a release downloaded before; no network.
        #[arg(long, conflicts_with = "check")]
        cached_only: bool,
        /// Go to this version, also an older one (needs more authorization).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Apply the update even if it gives the app new permissions (shown
        /// when an update stops with exit code 8; needs an administrator).
        #[arg(long, conflicts_with = "check")]
        allow_new_permissions: bool,
        /// Ask the daemon to check now and act as its automatic update
        /// policy says (what flatipfs-update.timer runs).
        #[arg(long, conflicts_with_all = ["check", "download_only", "cached_only", "version", "allow_new_permissions", "app_ids"])]
        trigger_automatic_update_policy: bool,
        app_ids: Vec<String>,
    },
    /// Switch back to the previous kept release, without the network.
    Rollback { app_id: String },
    /// List the releases kept on this machine.
    Pins,
    /// Keep a release whatever the retention says.
    Pin { app_id: String, version: String },
    /// Let retention remove a release again.
    Unpin { app_id: String, version: String },
    /// Remove releases beyond retention and collect Kubo's garbage.
    Vacuum,
    /// Show or set the automatic update policy: none, check, download, apply
    /// (with --app, for one app; `default` follows the daemon's).
    Policy {
        #[arg(long, value_name = "APP_ID")]
        app: Option<String>,
        policy: Option<String>,
    },
    /// List the jobs running or recently finished.
    Jobs,
    /// Cancel a job (yours; another user's needs authorization).
    Cancel {
        /// The job's number, as `jobs` shows it.
        job: u64,
    },
    /// Mirror remotes: keep their releases pinned and provided for others.
    Mirror {
        #[command(subcommand)]
        command: MirrorCommand,
    },
    /// Startup sets: what an app reads when it starts (for publishers).
    StartupSet {
        #[command(subcommand)]
        command: StartupSetCommand,
    },
}

#[derive(Subcommand)]
enum StartupSetCommand {
    /// Run an installed app with `flatpak run` while the daemon records the
    /// byte ranges it reads in its first seconds; prints (or writes) the
    /// list `publish --startup-set` takes. Needs authorization.
    Record {
        app_id: String,
        /// How long to record; the app is stopped then if still running.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=570))]
        seconds: u32,
        /// Write the list to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Arguments for the app (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum MirrorCommand {
    /// Follow a trusted remote: keep its store index, catalog, every current
    /// release and past ones pinned and provided, synced on a schedule
    /// (needs authorization).
    Add {
        remote: String,
        /// Past releases kept per app (default: the daemon's mirror.history).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=16))]
        history: Option<u32>,
    },
    /// Stop mirroring a remote; what the mirror pinned is unpinned (needs authorization).
    Remove { remote: String },
    /// List mirrored remotes: last sync, releases held, bytes.
    List,
}

#[derive(Subcommand)]
enum RemoteMirrorsCommand {
    /// List PEER (a peer ID, or /ip4/ADDRESS/tcp/PORT/p2p/ID) as a mirror
    /// in the published remote's store index (needs authorization).
    Add { remote: String, peer: String },
    /// Stop listing a mirror peer (its ID or address; needs authorization).
    Remove { remote: String, peer: String },
    /// List the mirror peers a published remote's index names.
    List { remote: String },
}

#[derive(Subcommand)]
enum RemoteCommand {
    /// Create a remote to publish to; prints its /ipns/ name.
    Create { name: String },
    /// Trust a remote to install apps from: NAME for the index at /ipns/….
    Add { name: String, address: String },
    /// Stop trusting a remote.
    Remove { name: String },
    /// List remotes (installed from, and published to).
    List,
    /// List the apps a remote offers (from its catalog, fetched on refresh).
    Ls { name: String },
    /// The mirror peers a remote you publish lists in its store index.
    Mirrors {
        #[command(subcommand)]
        command: RemoteMirrorsCommand,
    },
}

#[derive(clap::Args)]
struct PublishArgs {
    /// The remote to publish to.
    #[arg(long)]
    remote: String,
    /// Version string of the release (default: the previous one plus 1).
    #[arg(long)]
    version: Option<String>,
    /// A Flatpak repository (what `flatpak build-export` writes); then give REF.
    #[arg(long, value_name = "PATH")]
    repo: Option<std::path::PathBuf>,
    /// A file listing what the app reads at start-up, in order: paths
    /// (relative to deploy/) or PATH<TAB>OFFSET<TAB>LENGTH ranges, one per
    /// line (what `startup-set record` writes).
    #[arg(long, value_name = "FILE")]
    startup_set: Option<std::path::PathBuf>,
    /// Arch of a deploy directory (default: this machine's).
    #[arg(long)]
    arch: Option<String>,
    /// Branch of a deploy directory (default: master).
    #[arg(long)]
    branch: Option<String>,
    /// Make no compressed pack of the release (default: as configured, on).
    #[arg(long)]
    no_pack: bool,
    /// Make no deltas from earlier releases (default: as configured, on).
    #[arg(long)]
    no_deltas: bool,
    /// Make deltas from this many earlier releases (default: as configured, 2).
    #[arg(long, value_name = "K")]
    delta_releases: Option<u32>,
    /// DEPLOY_DIR, or with --repo: the ref (app/ID/ARCH/BRANCH).
    target: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `flatipfsctl --generate-docs DIR` (scripts/package.sh) is no part of
    // the clap definition, so that no completion offers it.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let [_, flag, dir] = &args[..] {
        if flag == "--generate-docs" {
            let dir = std::path::Path::new(dir);
            if let Err(e) = manual::generate(cli_command(), dir) {
                eprintln!("flatipfsctl: cannot write into {}: {e}", dir.display());
                std::process::exit(exit::FAILURE);
            }
            std::process::exit(exit::OK);
        }
    }
    let cli = Cli::from_arg_matches(&cli_command().get_matches()).unwrap_or_else(|e| e.exit());
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

/// The command line definition, `--help` ending with the exit codes.
fn cli_command() -> clap::Command {
    Cli::command().after_help(exit::help_text())
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let connection = zbus::Connection::system()
        .await
        .map_err(|e| Failure::unreachable(&e.to_string()))?;
    let manager = ManagerProxy::new(&connection)
        .await
        .map_err(|e| Failure::from_call(e.into()))?;
    match &cli.command {
        Command::Status => status(cli.json, &manager).await,
        Command::ReloadConfig => {
            call_mutating::<_, ()>(&manager, "ReloadConfig", &()).await?;
            output::done(cli.json, "configuration reloaded");
            Ok(())
        }
        Command::Remote {
            command: RemoteCommand::Create { name },
        } => {
            let options: HashMap<&str, Value<'_>> = HashMap::new();
            let ipns: String =
                call_mutating(&manager, "CreateRemote", &(name.as_str(), options)).await?;
            output::remote_created(cli.json, name, &ipns);
            Ok(())
        }
        Command::Remote {
            command: RemoteCommand::Add { name, address },
        } => {
            let options: HashMap<&str, Value<'_>> = HashMap::new();
            call_mutating::<_, ()>(
                &manager,
                "AddRemote",
                &(name.as_str(), address.as_str(), options),
            )
            .await?;
            output::done(cli.json, &format!("remote {name} added"));
            Ok(())
        }
        Command::Remote {
            command: RemoteCommand::Remove { name },
        } => {
            let options: HashMap<&str, Value<'_>> = HashMap::new();
            call_mutating::<_, ()>(&manager, "RemoveRemote", &(name.as_str(), options)).await?;
            output::done(cli.json, &format!("remote {name} removed"));
            Ok(())
        }
        Command::Remote {
            command: RemoteCommand::List,
        } => {
            let remotes = manager.list_remotes().await.map_err(Failure::from_call)?;
            output::remotes(cli.json, &remotes);
            Ok(())
        }
        Command::Remote {
            command: RemoteCommand::Ls { name },
        } => catalog::list(cli.json, &manager, name).await,
        Command::Remote {
            command: RemoteCommand::Mirrors { command },
        } => match command {
            RemoteMirrorsCommand::Add { remote, peer } => {
                mirrors::add_peer(cli.json, &manager, remote, peer).await
            }
            RemoteMirrorsCommand::Remove { remote, peer } => {
                mirrors::remove_peer(cli.json, &manager, remote, peer).await
            }
            RemoteMirrorsCommand::List { remote } => {
                mirrors::list_peers(cli.json, &manager, remote).await
            }
        },
        Command::Mirror { command } => match command {
            MirrorCommand::Add { remote, history } => {
                mirrors::add(cli.json, &manager, remote, *history).await
            }
            MirrorCommand::Remove { remote } => mirrors::remove(cli.json, &manager, remote).await,
            MirrorCommand::List => mirrors::list(cli.json, &manager).await,
        },
        Command::Search { words } => catalog::search(cli.json, &manager, &words.join(" ")).await,
        Command::Publish(args) => publish(cli.json, &manager, args).await,
        Command::Install { no_wait, source } => {
            apps::install(cli.json, &manager, source, *no_wait).await
        }
        Command::Uninstall { app_id } => apps::uninstall(cli.json, &manager, app_id).await,
        Command::List => apps::list(cli.json, &manager).await,
        Command::Info { app_id } => apps::info(cli.json, &manager, app_id).await,
        Command::Run { app_id, args } => apps::run(&manager, app_id, args).await,
        Command::StartupSet {
            command:
                StartupSetCommand::Record {
                    app_id,
                    seconds,
                    output,
                    args,
                },
        } => {
            startup::record(
                cli.json,
                &manager,
                app_id,
                *seconds,
                output.as_deref(),
                args,
            )
            .await
        }
        Command::Update {
            check,
            download_only,
            cached_only,
            version,
            allow_new_permissions,
            app_ids,
            trigger_automatic_update_policy,
        } => {
            if *trigger_automatic_update_policy {
                call_mutating::<_, ()>(&manager, "TriggerAutomaticUpdates", &()).await?;
                output::done(cli.json, "automatic update check started");
                return Ok(());
            }
            let args = updates::UpdateArgs {
                ids: app_ids,
                check: *check,
                download_only: *download_only,
                cached_only: *cached_only,
                version: version.as_deref(),
                allow_new_permissions: *allow_new_permissions,
            };
            updates::update(cli.json, &manager, args).await
        }
        Command::Rollback { app_id } => updates::rollback(cli.json, &manager, app_id).await,
        Command::Pins => updates::pins(cli.json, &manager).await,
        Command::Pin { app_id, version } => {
            updates::pin(cli.json, &manager, app_id, version, true).await
        }
        Command::Unpin { app_id, version } => {
            updates::pin(cli.json, &manager, app_id, version, false).await
        }
        Command::Vacuum => updates::vacuum(cli.json, &manager).await,
        Command::Policy { app, policy } => {
            updates::policy(cli.json, &manager, policy.as_deref(), app.as_deref()).await
        }
        Command::Jobs => {
            let paths = manager.list_jobs().await.map_err(Failure::from_call)?;
            let mut listed = Vec::new();
            for path in paths {
                // A job may vanish between the list and the read: skip it.
                if let Ok(job) = jobs::describe(&manager, path).await {
                    listed.push(job);
                }
            }
            output::jobs(cli.json, &listed);
            Ok(())
        }
        Command::Cancel { job } => {
            jobs::cancel(&manager, *job).await?;
            output::done(cli.json, &format!("job {job} cancelled"));
            Ok(())
        }
    }
}

async fn publish(
    json: bool,
    manager: &ManagerProxy<'_>,
    args: &PublishArgs,
) -> Result<(), Failure> {
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p)
            .map_err(|e| Failure::usage(format!("invalid path {}: {e}", p.display())))
    };
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    options.insert("remote", Value::from(args.remote.as_str()));
    if let Some(v) = &args.version {
        options.insert("version", Value::from(v.as_str()));
    }
    if let Some(a) = &args.arch {
        options.insert("arch", Value::from(a.as_str()));
    }
    if let Some(b) = &args.branch {
        options.insert("branch", Value::from(b.as_str()));
    }
    if args.no_pack {
        options.insert("pack", Value::from(false));
    }
    if args.no_deltas {
        options.insert("deltas", Value::from(false));
    }
    if let Some(k) = args.delta_releases {
        options.insert("delta-releases", Value::from(k));
    }
    if let Some(file) = &args.startup_set {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::usage(format!(
                "cannot read the startup set {}: {e}",
                file.display()
            ))
        })?;
        match startup::parse(&text)
            .map_err(|e| Failure::usage(format!("startup set {}: {e}", file.display())))?
        {
            startup::StartupSet::Files(paths) => {
                options.insert("startup-set", Value::from(paths));
            }
            startup::StartupSet::Ranges(ranges) => {
                options.insert("startup-ranges", Value::from(ranges));
            }
        }
    }
    let path = match &args.repo {
        Some(repo) => {
            options.insert("ref", Value::from(args.target.as_str()));
            absolute(repo)?
        }
        None => absolute(std::path::Path::new(&args.target))?,
    };
    let path = path.to_string_lossy().into_owned();
    let body = (path.as_str(), options);
    let start = call_mutating(manager, "Publish", &body);
    let details = jobs::start_and_follow(manager, json, start).await?;
    output::published(json, &details);
    Ok(())
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
    let remotes = manager.list_remotes().await.map_err(Failure::from_call)?;
    // A daemon without mirrors (older) has no ListMirrors.
    let mirrors = if features.iter().any(|f| f == "mirrors") {
        manager.list_mirrors().await.map_err(Failure::from_call)?
    } else {
        Vec::new()
    };
    output::status(json, &version, &features, &kubo, &remotes, &mirrors);
    Ok(())
}

/// Allows interactive authorization when a person is at the terminal (so a
/// polkit agent may ask for a password).
pub(crate) fn interactive_flags() -> enumflags2::BitFlags<MethodFlags> {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        MethodFlags::AllowInteractiveAuth.into()
    } else {
        Default::default()
    }
}

/// Calls a polkit-gated method, allowing interactive authorization when a
/// person is at the terminal, with a text agent of our own that may ask for
/// a password (`agent`).
async fn call_mutating<B, R>(
    manager: &ManagerProxy<'_>,
    method: &str,
    body: &B,
) -> Result<R, Failure>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let _agent = agent::Agent::start().await;
    manager
        .inner()
        .call_with_flags::<_, _, R>(method, interactive_flags(), body)
        .await
        .map_err(|e| Failure::from_call(Error::from(e)))?
        .ok_or_else(|| {
            Failure::from_call(Error::new(
                flatipfs_dbus::ErrorKind::Internal,
                "the daemon sent no reply",
            ))
        })
}

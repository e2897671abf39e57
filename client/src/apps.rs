//! The app commands: `install`, `uninstall`, `list`, `info` and `run`.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use flatipfs_dbus::proxy::{AppProxy, ManagerProxy};
use flatipfs_dbus::{Error, ErrorKind};
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::exit::{self, Failure};
use crate::{call_mutating, jobs};

/// What `list` and `info` show of one app.
#[derive(Debug, serde::Serialize)]
pub struct Described {
    pub id: String,
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub version: String,
    pub release: String,
    pub state: String,
    pub status: String,
    pub remote: String,
    pub source: String,
    pub runtime: String,
    pub fetched_bytes: u64,
    pub total_bytes: u64,
    pub mount_point: String,
    /// The newer version a check found; empty: none.
    pub available: String,
    /// This app's automatic update policy; empty: the daemon's.
    pub update_policy: String,
    pub deployments: Vec<Deployment>,
    /// What the held update would grant beyond the current release.
    pub pending_permissions: Vec<String>,
}

/// One kept release of an app.
#[derive(Debug, serde::Serialize)]
pub struct Deployment {
    pub version: String,
    pub release: String,
    pub sequence: u64,
    pub current: bool,
    pub pinned: bool,
    pub complete: bool,
    pub held: bool,
}

impl Described {
    /// Percent fetched, 0 to 100.
    pub fn percent(&self) -> u64 {
        match self.total_bytes {
            0 => 0,
            total => self.fetched_bytes.min(total) * 100 / total,
        }
    }
}

fn call(e: zbus::Error) -> Failure {
    Failure::from_call(Error::from(e))
}

pub(crate) async fn app_proxy<'a>(
    manager: &'a ManagerProxy<'_>,
    path: OwnedObjectPath,
) -> Result<AppProxy<'a>, Failure> {
    proxy_with(manager, path, zbus::proxy::CacheProperties::No).await
}

/// An app's proxy whose properties are read at once with one `GetAll`
/// (for one-shot reads of many apps: `list`).
async fn app_proxy_read_once<'a>(
    manager: &'a ManagerProxy<'_>,
    path: OwnedObjectPath,
) -> Result<AppProxy<'a>, Failure> {
    proxy_with(manager, path, zbus::proxy::CacheProperties::Yes).await
}

async fn proxy_with<'a>(
    manager: &'a ManagerProxy<'_>,
    path: OwnedObjectPath,
    cache: zbus::proxy::CacheProperties,
) -> Result<AppProxy<'a>, Failure> {
    AppProxy::builder(manager.inner().connection())
        .path(path)
        .map_err(call)?
        .cache_properties(cache)
        .build()
        .await
        .map_err(call)
}

pub(crate) async fn describe(app: &AppProxy<'_>) -> Result<Described, Failure> {
    let flag = |m: &HashMap<String, zbus::zvariant::OwnedValue>, k: &str| {
        m.get(k)
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false)
    };
    let deployments = app
        .deployments()
        .await
        .map_err(call)?
        .iter()
        .map(|m| Deployment {
            version: jobs::text(m, "Version"),
            release: jobs::text(m, "Release"),
            sequence: jobs::number(m, "Sequence"),
            current: flag(m, "Current"),
            pinned: flag(m, "Pinned"),
            complete: flag(m, "Complete"),
            held: flag(m, "Held"),
        })
        .collect();
    Ok(Described {
        available: app.available_version().await.map_err(call)?,
        update_policy: app.update_policy().await.map_err(call)?,
        pending_permissions: app.pending_permissions().await.map_err(call)?,
        deployments,
        id: app.id().await.map_err(call)?,
        kind: app.kind().await.map_err(call)?,
        reference: app.reference().await.map_err(call)?,
        version: app.current_version().await.map_err(call)?,
        release: app.current_cid().await.map_err(call)?,
        state: app.state().await.map_err(call)?,
        status: app.status().await.map_err(call)?,
        remote: app.remote().await.map_err(call)?,
        source: app.source().await.map_err(call)?,
        runtime: app.runtime().await.map_err(call)?,
        fetched_bytes: app.fetched_bytes().await.map_err(call)?,
        total_bytes: app.total_bytes().await.map_err(call)?,
        mount_point: app.mount_point().await.map_err(call)?,
    })
}

/// The object of installed app `id`, or exit code 3 with advice.
pub(crate) async fn find<'a>(
    manager: &'a ManagerProxy<'_>,
    id: &str,
) -> Result<AppProxy<'a>, Failure> {
    match manager.get_app(id).await {
        Ok(path) => app_proxy(manager, path).await,
        Err(Error::Api(ErrorKind::NotInstalled, message)) => Err(Failure {
            code: exit::NOT_FOUND,
            name: Some(ErrorKind::NotInstalled.dbus_name().into()),
            message,
            hint: Some(format!(
                "see `flatipfsctl list`; install it with `flatipfsctl install REMOTE {id}`"
            )),
        }),
        Err(e) => Err(Failure::from_call(e)),
    }
}

/// `flatipfsctl install`: follows the job to its end, or with `no_wait`
/// only until the app is runnable.
pub async fn install(
    json: bool,
    manager: &ManagerProxy<'_>,
    source: &[String],
    no_wait: bool,
) -> Result<(), Failure> {
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    let target = match source {
        [release] if release.starts_with("/ipfs/") => release.clone(),
        [remote, id] => {
            options.insert("remote", Value::from(remote.as_str()));
            id.clone()
        }
        _ => {
            return Err(Failure::usage(
                "give REMOTE APP_ID, or /ipfs/<release root> for a fixed release".into(),
            ))
        }
    };
    let removals = jobs::subscribe(manager).await?;
    let (app_path, job): (OwnedObjectPath, OwnedObjectPath) =
        call_mutating(manager, "Install", &(target.as_str(), options)).await?;
    // Files of the release's export/ the daemon did not export, one
    // "path: reason" a line (known only when the install is followed).
    let mut refused = Vec::new();
    let mut fetched = None;
    if no_wait {
        wait_runnable(manager, app_path.clone(), &job).await?;
    } else {
        let details = jobs::follow(manager, removals, job, json).await?;
        refused = jobs::text(&details, "RefusedExports")
            .lines()
            .map(String::from)
            .collect();
        let n = |k: &str| jobs::number(&details, k);
        fetched = Some(json!({"delta": n("DeltaBytes"), "pack": n("PackBytes"),
            "plain": n("PlainBytes"), "delta_files": n("DeltaFiles"),
            "pack_files": n("PackFiles"), "refused_decodings": n("RefusedDecodings")}));
    }
    let app = app_proxy(manager, app_path).await?;
    let described = describe(&app).await?;
    if json {
        let mut out = json!(described);
        out["refused_exports"] = json!(refused);
        if let Some(bytes) = &fetched {
            out["bytes"] = bytes.clone();
        }
        println!("{out}");
    } else {
        for line in &refused {
            eprintln!("warning: not exported: {line}");
        }
        println!(
            "installed {} {} ({})",
            described.id, described.version, described.state
        );
        if let Some(b) = &fetched {
            println!(
                "fetched: {} bytes as deltas ({} files), {} as pack ({} files), {} as plain blocks",
                b["delta"], b["delta_files"], b["pack"], b["pack_files"], b["plain"]
            );
            if b["refused_decodings"].as_u64().unwrap_or(0) > 0 {
                eprintln!(
                    "warning: {} decoded files did not verify and came as plain blocks",
                    b["refused_decodings"]
                );
            }
        }
        println!("run it with: flatpak run {}", described.id);
    }
    Ok(())
}

/// Waits until the app's state is `degraded` or `installed` (or its job
/// failed).
async fn wait_runnable(
    manager: &ManagerProxy<'_>,
    app_path: OwnedObjectPath,
    job: &OwnedObjectPath,
) -> Result<(), Failure> {
    loop {
        if let Ok(app) = app_proxy(manager, app_path.clone()).await {
            if let Ok(state) = app.state().await {
                if state == "degraded" || state == "installed" {
                    return Ok(());
                }
            }
        }
        match jobs::describe(manager, job.clone()).await {
            Ok(j) if j.state == "finished" && j.result != "success" => {
                let proxy = flatipfs_dbus::proxy::JobProxy::builder(manager.inner().connection())
                    .path(job.clone())
                    .map_err(call)?
                    .cache_properties(zbus::proxy::CacheProperties::No)
                    .build()
                    .await
                    .map_err(call)?;
                let name = proxy.error_name().await.unwrap_or_default();
                let message = proxy.error_message().await.unwrap_or_default();
                let kind = ErrorKind::from_dbus_name(&name).unwrap_or(ErrorKind::Internal);
                return Err(Failure::from_call(Error::new(kind, message)));
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Calls a polkit-gated method of the object of installed app `id`.
pub(crate) async fn call_app<B, R>(
    manager: &ManagerProxy<'_>,
    id: &str,
    method: &str,
    body: &B,
) -> Result<R, Failure>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let app = find(manager, id).await?;
    let _agent = crate::agent::Agent::start().await;
    app.inner()
        .call_with_flags::<_, _, R>(method, crate::interactive_flags(), body)
        .await
        .map_err(|e| Failure::from_call(Error::from(e)))?
        .ok_or_else(|| Failure::from_call(Error::new(ErrorKind::Internal, "no reply")))
}

/// `flatipfsctl uninstall APP_ID`.
pub async fn uninstall(json: bool, manager: &ManagerProxy<'_>, id: &str) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    let body = (options,);
    jobs::start_and_follow(manager, json, call_app(manager, id, "Uninstall", &body)).await?;
    crate::output::done(json, &format!("{id} uninstalled"));
    Ok(())
}

/// `flatipfsctl list`.
pub async fn list(json: bool, manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let paths = manager.list_apps().await.map_err(Failure::from_call)?;
    let mut apps = Vec::new();
    for path in paths {
        // An app may go away between the list and the read: skip it.
        if let Ok(app) = app_proxy_read_once(manager, path).await {
            if let Ok(described) = describe(&app).await {
                apps.push(described);
            }
        }
    }
    if json {
        println!("{}", json!({ "apps": apps }));
        return Ok(());
    }
    if apps.is_empty() {
        println!("no apps installed");
    }
    for a in &apps {
        let state = if a.state == "degraded" {
            format!("degraded ({}% fetched)", a.percent())
        } else {
            a.state.clone()
        };
        println!("{}\t{}\t{}\t{}", a.id, a.version, a.kind, state);
    }
    Ok(())
}

/// `flatipfsctl info APP_ID`.
pub async fn info(json: bool, manager: &ManagerProxy<'_>, id: &str) -> Result<(), Failure> {
    let app = find(manager, id).await?;
    let a = match describe(&app).await {
        Ok(a) => a,
        Err(e) => {
            // Uninstalled between GetApp and reading its object: that is
            // "not installed", not a failure of the call.
            find(manager, id).await?;
            return Err(e);
        }
    };
    if json {
        println!("{}", json!(a));
        return Ok(());
    }
    println!("{} {}", a.id, a.version);
    println!("ref:         {}", a.reference);
    println!("state:       {}", a.state);
    if !a.status.is_empty() {
        println!("status:      {}", a.status);
    }
    println!(
        "fetched:     {} of {} bytes ({}%)",
        a.fetched_bytes,
        a.total_bytes,
        a.percent()
    );
    println!("release:     /ipfs/{}", a.release);
    println!(
        "remote:      {}",
        if a.remote.is_empty() { "-" } else { &a.remote }
    );
    println!("source:      {}", a.source);
    if !a.runtime.is_empty() {
        println!("runtime:     {}", a.runtime);
    }
    if !a.available.is_empty() && a.pending_permissions.is_empty() {
        println!(
            "available:   {} (update with `flatipfsctl update {}`)",
            a.available, a.id
        );
    } else if !a.available.is_empty() {
        println!(
            "available:   {} (held: it needs new permissions; review them and apply with `flatipfsctl update --allow-new-permissions {}`)",
            a.available, a.id
        );
        println!("new permissions:");
        for change in &a.pending_permissions {
            println!("  - {change}");
        }
    }
    println!(
        "kept:        {}",
        a.deployments
            .iter()
            .map(|d| format!(
                "{}{}{}{}",
                d.version,
                if d.current { " (current)" } else { "" },
                if d.pinned { " (pinned)" } else { "" },
                if d.held { " (held)" } else { "" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("mount point: {}", a.mount_point);
    Ok(())
}

/// `flatipfsctl run APP_ID [ARGS]`: warns while the app is still being
/// fetched, then becomes `flatpak run APP_ID ARGS`.
pub async fn run(manager: &ManagerProxy<'_>, id: &str, args: &[String]) -> Result<(), Failure> {
    let app = find(manager, id).await?;
    let a = describe(&app).await?;
    if a.state == "degraded" {
        eprintln!(
            "warning: {id} is still being fetched ({}% of {} bytes local); what is missing is fetched as the app reads it, so it may start slowly",
            a.percent(),
            a.total_bytes
        );
    }
    let error = std::process::Command::new("flatpak")
        .arg("run")
        .arg(id)
        .args(args)
        .exec();
    Err(Failure {
        code: exit::FAILURE,
        name: None,
        message: format!("cannot run flatpak: {error}"),
        hint: Some("install the Debian package `flatpak`".into()),
    })
}

//! The update commands: `update` (with `--check`, `--download-only`,
//! `--cached-only`, `--version`), `rollback`, `pins`, `pin`, `unpin`,
//! `vacuum` and `policy`.

use std::collections::HashMap;

use flatipfs_dbus::proxy::ManagerProxy;
use flatipfs_dbus::{Error, ErrorKind};
use serde_json::json;
use zbus::zvariant::Value;

use crate::apps::{app_proxy, call_app, describe, find};
use crate::exit::{self, Failure};
use crate::{call_mutating, jobs, output};

/// How `flatipfsctl update` was asked to run.
pub struct UpdateArgs<'a> {
    pub ids: &'a [String],
    pub check: bool,
    pub download_only: bool,
    pub cached_only: bool,
    pub version: Option<&'a str>,
    pub allow_new_permissions: bool,
}

/// Runs an app job (`Update`, `Rollback`) and follows it; its details.
async fn app_job<B: serde::Serialize + zbus::zvariant::DynamicType>(
    json: bool,
    manager: &ManagerProxy<'_>,
    id: &str,
    method: &str,
    body: &B,
) -> Result<HashMap<String, zbus::zvariant::OwnedValue>, Failure> {
    jobs::start_and_follow(manager, json, call_app(manager, id, method, body)).await
}

/// Runs a manager job and follows it; its details.
async fn manager_job<B: serde::Serialize + zbus::zvariant::DynamicType>(
    json: bool,
    manager: &ManagerProxy<'_>,
    method: &str,
    body: &B,
) -> Result<HashMap<String, zbus::zvariant::OwnedValue>, Failure> {
    jobs::start_and_follow(manager, json, call_mutating(manager, method, body)).await
}

/// `flatipfsctl update`.
pub async fn update(
    json: bool,
    manager: &ManagerProxy<'_>,
    args: UpdateArgs<'_>,
) -> Result<(), Failure> {
    if args.version.is_some() && args.ids.len() != 1 {
        return Err(Failure::usage("--version needs exactly one APP_ID".into()));
    }
    if args.check {
        return check(json, manager, args.ids).await;
    }
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    if args.download_only {
        options.insert("download-only", Value::from(true));
    }
    if args.cached_only {
        options.insert("cached-only", Value::from(true));
    }
    if args.allow_new_permissions {
        if args.ids.is_empty() {
            return Err(Failure::usage(
                "--allow-new-permissions needs the APP_IDs it is for: review each app's new permissions".into(),
            ));
        }
        options.insert("allow-new-permissions", Value::from(true));
    }
    if args.ids.is_empty() {
        let d = manager_job(json, manager, "UpdateAll", &(options,)).await?;
        let (updated, current, failed, held) = (
            jobs::text(&d, "Updated"),
            jobs::text(&d, "UpToDate"),
            jobs::text(&d, "Failed"),
            jobs::text(&d, "HeldForPermissions"),
        );
        if json {
            println!(
                "{}",
                json!({"updated": split(&updated), "up_to_date": split(&current), "failed": split(&failed),
                       "held_for_permissions": split(&held)})
            );
        } else {
            println!(
                "updated:    {}",
                if updated.is_empty() {
                    "nothing"
                } else {
                    &updated
                }
            );
            println!("up to date: {current}");
            if !held.is_empty() {
                println!("held (they need new permissions; see `flatipfsctl info APP_ID`): {held}");
            }
            if !failed.is_empty() {
                println!("failed:     {failed}");
            }
        }
        if !failed.is_empty() {
            return Err(Failure::from_call(Error::new(
                ErrorKind::FetchFailed,
                format!("some updates failed: {failed}"),
            )));
        }
        return Ok(());
    }
    for id in args.ids {
        let version = args.version.unwrap_or("");
        let d = match app_job(json, manager, id, "Update", &(version, options.clone())).await {
            Ok(d) => d,
            Err(f) if f.code == exit::PERMISSIONS_CHANGED => {
                // The daemon held the update and lists its changes on the app.
                let changes = match find(manager, id).await {
                    Ok(app) => app.pending_permissions().await.unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                return Err(explain_permissions(f, id, &changes));
            }
            Err(f) => return Err(f),
        };
        let applied = jobs::number(&d, "Applied") == 1;
        // Files of the new release's export/ the daemon did not export, one
        // "path: reason" a line (as `install` shows them).
        let refused = jobs::text(&d, "RefusedExports");
        let refused: Vec<&str> = refused.lines().filter(|l| !l.is_empty()).collect();
        if json {
            println!(
                "{}",
                json!({"app": id, "from": jobs::text(&d, "From"), "to": jobs::text(&d, "To"),
                       "release": jobs::text(&d, "Release"), "applied": applied,
                       "removed": split(&jobs::text(&d, "Removed")),
                       "refused_exports": refused,
                       "bytes": {"delta": jobs::number(&d, "DeltaBytes"),
                                 "pack": jobs::number(&d, "PackBytes"),
                                 "plain": jobs::number(&d, "PlainBytes"),
                                 "delta_files": jobs::number(&d, "DeltaFiles"),
                                 "pack_files": jobs::number(&d, "PackFiles"),
                                 "refused_decodings": jobs::number(&d, "RefusedDecodings")}})
            );
            continue;
        }
        println!(
            "fetched {id} {}: {} bytes as deltas ({} files), {} as pack ({} files), {} as plain blocks",
            jobs::text(&d, "To"),
            jobs::number(&d, "DeltaBytes"),
            jobs::number(&d, "DeltaFiles"),
            jobs::number(&d, "PackBytes"),
            jobs::number(&d, "PackFiles"),
            jobs::number(&d, "PlainBytes")
        );
        if jobs::number(&d, "RefusedDecodings") > 0 {
            eprintln!(
                "warning: {} decoded files did not verify and came as plain blocks",
                jobs::number(&d, "RefusedDecodings")
            );
        }
        for line in &refused {
            eprintln!("warning: not exported: {line}");
        }
        if applied {
            println!(
                "updated {id} {} -> {}; the next start uses it (running instances keep theirs)",
                jobs::text(&d, "From"),
                jobs::text(&d, "To")
            );
        } else {
            println!(
                "downloaded {id} {}; apply it with `flatipfsctl update --cached-only {id}`",
                jobs::text(&d, "To")
            );
        }
    }
    Ok(())
}

/// A `PermissionsChanged` failure, told for people: the changes (the app's
/// `PendingPermissions`) one per line; the daemon's own message if they
/// cannot be read.
fn explain_permissions(failure: Failure, id: &str, changes: &[String]) -> Failure {
    if changes.is_empty() {
        return failure;
    }
    let mut message = format!(
        "the update of {id} was not applied: the new release would give it permissions it does not have now:"
    );
    for change in changes {
        message.push_str("\n  - ");
        message.push_str(change);
    }
    Failure {
        message,
        hint: Some(format!(
            "the installed release keeps running unchanged. If you trust the publisher with this, run `flatipfsctl update --allow-new-permissions {id}` (polkit action update-permissions: an administrator must agree)"
        )),
        ..failure
    }
}

fn split(list: &str) -> Vec<&str> {
    list.split(", ").filter(|s| !s.is_empty()).collect()
}

/// `flatipfsctl update --check`: a refresh, then what each app could get.
async fn check(json: bool, manager: &ManagerProxy<'_>, ids: &[String]) -> Result<(), Failure> {
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    if !ids.is_empty() {
        options.insert("apps", Value::from(ids.to_vec()));
    }
    let details = manager_job(json, manager, "Refresh", &(options,)).await?;
    let catalog_errors: Vec<String> = jobs::text(&details, "CatalogErrors")
        .lines()
        .map(String::from)
        .collect();
    let mut rows = Vec::new();
    for path in manager.list_apps().await.map_err(Failure::from_call)? {
        let Ok(app) = app_proxy(manager, path).await else {
            continue;
        };
        let Ok(a) = describe(&app).await else {
            continue;
        };
        if ids.is_empty() || ids.contains(&a.id) {
            rows.push((a.id, a.version, a.available));
        }
    }
    if json {
        let apps: Vec<_> = rows
            .iter()
            .map(|(id, v, a)| json!({"id": id, "version": v, "available": a}))
            .collect();
        println!(
            "{}",
            json!({ "apps": apps, "catalog_errors": catalog_errors })
        );
    } else {
        for e in &catalog_errors {
            eprintln!("warning: {e}");
        }
        for (id, version, available) in &rows {
            if available.is_empty() {
                println!("{id}\t{version}\tup to date");
            } else {
                println!("{id}\t{version}\t{available} available");
            }
        }
    }
    Ok(())
}

/// `flatipfsctl rollback APP_ID`.
pub async fn rollback(json: bool, manager: &ManagerProxy<'_>, id: &str) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    let d = app_job(json, manager, id, "Rollback", &(options,)).await?;
    if json {
        println!(
            "{}",
            json!({"app": id, "from": jobs::text(&d, "From"), "to": jobs::text(&d, "To"),
                   "release": jobs::text(&d, "Release")})
        );
    } else {
        println!(
            "rolled {id} back {} -> {}; {} is held until a newer release is published",
            jobs::text(&d, "From"),
            jobs::text(&d, "To"),
            jobs::text(&d, "From")
        );
    }
    Ok(())
}

/// `flatipfsctl pins`: every kept release of every app.
pub async fn pins(json: bool, manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let mut all = Vec::new();
    for path in manager.list_apps().await.map_err(Failure::from_call)? {
        if let Ok(app) = app_proxy(manager, path).await {
            if let Ok(a) = describe(&app).await {
                all.push(a);
            }
        }
    }
    if json {
        let apps: Vec<_> = all
            .iter()
            .map(|a| json!({"id": a.id, "deployments": a.deployments}))
            .collect();
        println!("{}", json!({ "apps": apps }));
        return Ok(());
    }
    for a in &all {
        for d in &a.deployments {
            let mut marks = Vec::new();
            if d.current {
                marks.push("current");
            }
            if d.pinned {
                marks.push("pinned");
            }
            if d.held {
                marks.push("held");
            }
            if !d.complete {
                marks.push("incomplete");
            }
            println!(
                "{}\t{}\t/ipfs/{}\t{}",
                a.id,
                d.version,
                d.release,
                marks.join(",")
            );
        }
    }
    Ok(())
}

/// `flatipfsctl pin|unpin APP_ID VERSION`.
pub async fn pin(
    json: bool,
    manager: &ManagerProxy<'_>,
    id: &str,
    version: &str,
    pinned: bool,
) -> Result<(), Failure> {
    let method = if pinned { "Pin" } else { "Unpin" };
    call_app::<_, ()>(manager, id, method, &(version,)).await?;
    output::done(
        json,
        &if pinned {
            format!("{id} {version} is kept whatever the retention says")
        } else {
            format!("{id} {version} follows the retention again")
        },
    );
    Ok(())
}

/// `flatipfsctl vacuum`.
pub async fn vacuum(json: bool, manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    let d = manager_job(json, manager, "Vacuum", &(options,)).await?;
    let removed = jobs::text(&d, "Removed");
    let gc = jobs::number(&d, "GarbageCollected") == 1;
    if json {
        println!(
            "{}",
            json!({"removed": split(&removed), "garbage_collected": gc})
        );
    } else {
        println!(
            "removed: {}",
            if removed.is_empty() {
                "nothing"
            } else {
                &removed
            }
        );
        println!(
            "{}",
            if gc {
                "garbage collected"
            } else {
                "garbage collection skipped: other jobs are running"
            }
        );
    }
    Ok(())
}

/// `flatipfsctl policy [POLICY] [--app APP_ID]`.
pub async fn policy(
    json: bool,
    manager: &ManagerProxy<'_>,
    policy: Option<&str>,
    app: Option<&str>,
) -> Result<(), Failure> {
    let value = policy.map(|p| if p == "default" { "" } else { p });
    match (value, app) {
        (Some(p), Some(id)) => {
            call_app::<_, ()>(manager, id, "SetUpdatePolicy", &(p,)).await?;
            output::done(
                json,
                &format!(
                    "automatic update policy of {id}: {}",
                    policy.unwrap_or_default()
                ),
            );
            Ok(())
        }
        (Some(p), None) => {
            call_mutating::<_, ()>(manager, "SetAutomaticUpdatePolicy", &(p,)).await?;
            output::done(
                json,
                &format!("automatic update policy: {}", policy.unwrap_or_default()),
            );
            Ok(())
        }
        (None, Some(id)) => {
            let app = find(manager, id).await?;
            let a = describe(&app).await?;
            let shown = if a.update_policy.is_empty() {
                "default"
            } else {
                &a.update_policy
            };
            if json {
                println!("{}", json!({"app": id, "policy": shown}));
            } else {
                println!("{id}: {shown}");
            }
            Ok(())
        }
        (None, None) => {
            let call = |e: zbus::Error| Failure::from_call(e.into());
            let policy = manager.automatic_update_policy().await.map_err(call)?;
            let last = manager.last_automatic_check().await.map_err(call)?;
            let next = manager.next_automatic_check().await.map_err(call)?;
            if json {
                println!(
                    "{}",
                    json!({"policy": policy, "last_check": last, "next_check": next})
                );
            } else {
                println!("policy:     {policy}");
                println!("last check: {}", when(last));
                println!("next check: {}", when(next));
            }
            Ok(())
        }
    }
}

/// Seconds since the epoch, for people.
fn when(t: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if t >= now {
        format!("in {} s (at {t})", t - now)
    } else {
        format!("{} s ago (at {t})", now - t)
    }
}

//! The browsing commands: `search` and `remote ls`, from the daemon's
//! cached catalogs of the trusted remotes.

use std::collections::HashMap;

use flatipfs_dbus::proxy::ManagerProxy;
use serde_json::json;
use zbus::zvariant::OwnedValue;

use crate::exit::Failure;
use crate::jobs::{number, text};

/// What `search` and `remote ls` show of one app.
#[derive(Debug, serde::Serialize)]
struct Offered {
    remote: String,
    id: String,
    name: String,
    summary: String,
    version: String,
    download_size: u64,
    installed: bool,
    installed_version: String,
}

fn offered(d: &HashMap<String, OwnedValue>) -> Offered {
    Offered {
        remote: text(d, "Remote"),
        id: text(d, "Id"),
        name: text(d, "Name"),
        summary: text(d, "Summary"),
        version: text(d, "Version"),
        download_size: number(d, "DownloadSize"),
        installed: d
            .get("Installed")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(false),
        installed_version: text(d, "InstalledVersion"),
    }
}

fn print(json: bool, apps: &[HashMap<String, OwnedValue>], empty: &str) {
    let apps: Vec<Offered> = apps.iter().map(offered).collect();
    if json {
        println!("{}", json!({ "apps": apps }));
        return;
    }
    if apps.is_empty() {
        println!("{empty}");
    }
    for a in apps {
        let installed = if a.installed {
            format!("installed {}", a.installed_version)
        } else {
            "available".to_string()
        };
        let size = if a.download_size > 0 {
            format!("{} bytes", a.download_size)
        } else {
            "size unknown".to_string()
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}: {}",
            a.remote, a.id, a.version, size, installed, a.name, a.summary
        );
    }
}

/// `flatipfsctl remote ls REMOTE`.
pub async fn list(json: bool, manager: &ManagerProxy<'_>, remote: &str) -> Result<(), Failure> {
    let apps = manager
        .list_available(remote)
        .await
        .map_err(Failure::from_call)?;
    print(json, &apps, &format!("remote {remote} offers no apps"));
    Ok(())
}

/// `flatipfsctl search WORDS`.
pub async fn search(json: bool, manager: &ManagerProxy<'_>, words: &str) -> Result<(), Failure> {
    let apps = manager
        .search_available(words)
        .await
        .map_err(Failure::from_call)?;
    print(json, &apps, &format!("no app matches {words:?}"));
    Ok(())
}

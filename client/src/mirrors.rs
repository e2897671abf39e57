//! `flatipfsctl mirror …` (this daemon follows remotes as a mirror) and
//! `flatipfsctl remote mirrors …` (the mirror peers a published remote's
//! store index lists).

use std::collections::HashMap;

use flatipfs_dbus::proxy::{ManagerProxy, MirrorEntry};
use serde_json::json;
use zbus::zvariant::Value;

use crate::exit::Failure;
use crate::jobs::{number, text};

/// `flatipfsctl mirror add REMOTE [--history N]`.
pub async fn add(
    json: bool,
    manager: &ManagerProxy<'_>,
    remote: &str,
    history: Option<u32>,
) -> Result<(), Failure> {
    let mut options: HashMap<&str, Value<'_>> = HashMap::new();
    if let Some(h) = history {
        options.insert("history", Value::from(h));
    }
    crate::call_mutating::<_, ()>(manager, "AddMirror", &(remote, options)).await?;
    crate::output::done(
        json,
        &format!(
            "mirroring remote {remote}: the first sync runs now (see `flatipfsctl mirror list`)"
        ),
    );
    Ok(())
}

/// `flatipfsctl mirror remove REMOTE`.
pub async fn remove(json: bool, manager: &ManagerProxy<'_>, remote: &str) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    crate::call_mutating::<_, ()>(manager, "RemoveMirror", &(remote, options)).await?;
    crate::output::done(json, &format!("remote {remote} is no longer mirrored"));
    Ok(())
}

/// One mirror as JSON.
pub fn mirror_json((name, d): &MirrorEntry) -> serde_json::Value {
    let mut entry = json!({
        "remote": name,
        "added": number(d, "Added"),
        "last_sync": number(d, "LastSync"),
        "sequence": number(d, "Sequence"),
        "releases": number(d, "Releases"),
        "bytes": number(d, "Bytes"),
        "history": number(d, "History"),
    });
    let error = text(d, "LastError");
    if !error.is_empty() {
        entry["last_error"] = json!(error);
    }
    entry
}

/// One mirror as a line of text.
pub fn mirror_line((name, d): &MirrorEntry) -> String {
    let last = match number(d, "LastSync") {
        0 => "never synced".to_string(),
        t => format!(
            "synced {}",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)
            )
        ),
    };
    let error = text(d, "LastError");
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("; last sync failed: {error}")
    };
    format!(
        "{name}\t{last}, index sequence {}, {} releases ({} past per app), {} bytes{error}",
        number(d, "Sequence"),
        number(d, "Releases"),
        number(d, "History"),
        number(d, "Bytes"),
    )
}

/// `flatipfsctl mirror list`.
pub async fn list(json: bool, manager: &ManagerProxy<'_>) -> Result<(), Failure> {
    let mirrors = manager.list_mirrors().await.map_err(Failure::from_call)?;
    if json {
        let list: Vec<_> = mirrors.iter().map(mirror_json).collect();
        println!("{}", json!({ "mirrors": list }));
        return Ok(());
    }
    if mirrors.is_empty() {
        println!("no mirrors; follow a trusted remote with `flatipfsctl mirror add REMOTE`");
    }
    for m in &mirrors {
        println!("{}", mirror_line(m));
    }
    Ok(())
}

/// `flatipfsctl remote mirrors add REMOTE PEER`.
pub async fn add_peer(
    json: bool,
    manager: &ManagerProxy<'_>,
    remote: &str,
    peer: &str,
) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    let id: String =
        crate::call_mutating(manager, "AddRemoteMirror", &(remote, peer, options)).await?;
    crate::output::done(
        json,
        &format!("remote {remote} lists mirror {id}; its store index is published again"),
    );
    Ok(())
}

/// `flatipfsctl remote mirrors remove REMOTE PEER`.
pub async fn remove_peer(
    json: bool,
    manager: &ManagerProxy<'_>,
    remote: &str,
    peer: &str,
) -> Result<(), Failure> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    crate::call_mutating::<_, ()>(manager, "RemoveRemoteMirror", &(remote, peer, options)).await?;
    crate::output::done(
        json,
        &format!(
            "remote {remote} no longer lists mirror {peer}; its store index is published again"
        ),
    );
    Ok(())
}

/// `flatipfsctl remote mirrors list REMOTE`.
pub async fn list_peers(
    json: bool,
    manager: &ManagerProxy<'_>,
    remote: &str,
) -> Result<(), Failure> {
    let peers = manager
        .list_remote_mirrors(remote)
        .await
        .map_err(Failure::from_call)?;
    if json {
        let list: Vec<_> = peers
            .iter()
            .map(|(id, addrs)| json!({ "id": id, "addrs": addrs }))
            .collect();
        println!("{}", json!({ "remote": remote, "mirrors": list }));
        return Ok(());
    }
    if peers.is_empty() {
        println!("remote {remote} lists no mirrors; add one with `flatipfsctl remote mirrors add {remote} /ip4/…/tcp/…/p2p/PEER_ID`");
    }
    for (id, addrs) in &peers {
        println!("{id}\t{}", addrs.join(" "));
    }
    Ok(())
}

//! Keeping the store index records of the remotes this daemon publishes
//! alive: every `publishing.republish_interval` each remote's record is
//! signed and published again (same index, next IPNS sequence, a fresh
//! lifetime), so that it never expires while the daemon runs; and the
//! warning `ListRemotes` (hence `flatipfsctl status`) shows when a record
//! will expire before it can be republished.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::debug;

use crate::manager::Manager;
use crate::store::PublishingRemote;

/// Republishes what is due, for ever: checked every republish interval
/// (at least once a minute, so that a reload shortening it takes effect).
pub async fn run(manager: Arc<Manager>) {
    loop {
        let interval = manager.config().publishing.republish_interval;
        match manager.publisher().await {
            Ok(publisher) => {
                publisher.republish_due(interval).await;
            }
            Err(e) => debug!("republishing later: {e}"),
        }
        tokio::time::sleep(interval.min(Duration::from_secs(60))).await;
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn when(seconds: u64) -> String {
    humantime_serde::re::humantime::format_rfc3339_seconds(
        UNIX_EPOCH + Duration::from_secs(seconds),
    )
    .to_string()
}

/// What is wrong with `remote`'s record, if anything: expired, or due to
/// expire before two more republications (which means republishing fails
/// or the daemon was off). `None` while all is well or nothing is known.
pub fn warning(remote: &PublishingRemote, interval: Duration) -> Option<String> {
    warning_at(remote, interval, now())
}

fn warning_at(remote: &PublishingRemote, interval: Duration, now: u64) -> Option<String> {
    if remote.expires == 0 {
        return None;
    }
    let cause = remote
        .republish_error
        .as_deref()
        .map(|e| format!("; the last republication failed: {e}"))
        .unwrap_or_default();
    if now >= remote.expires {
        return Some(format!(
            "its store index record expired at {}: clients cannot resolve it until it is republished{cause}",
            when(remote.expires)
        ));
    }
    let left = remote.expires - now;
    if left < interval.as_secs().saturating_mul(2) {
        return Some(format!(
            "its store index record expires in {} (at {}) and has not been republished in time{cause}",
            humantime_serde::re::humantime::format_duration(Duration::from_secs(left)),
            when(remote.expires)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_close_to_its_end_of_life_is_warned_about() {
        let hour = Duration::from_secs(3600);
        let mut remote = PublishingRemote {
            expires: 100_000,
            ..Default::default()
        };
        assert_eq!(warning_at(&remote, hour, 100_000 - 3 * 3600), None);
        let soon = warning_at(&remote, hour, 100_000 - 3600).unwrap();
        assert!(soon.contains("expires in 1h"), "{soon}");
        remote.republish_error = Some("Kubo is down".into());
        let expired = warning_at(&remote, hour, 100_000).unwrap();
        assert!(
            expired.contains("expired at") && expired.contains("Kubo is down"),
            "{expired}"
        );
        remote.expires = 0;
        assert_eq!(warning_at(&remote, hour, 1), None);
    }
}

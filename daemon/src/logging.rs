//! Logging: `tracing` to journald when a journal socket exists, else to stderr.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides `level` (the
/// config's `log_level`, already validated).
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let journald = tracing_journald::layer()
        .ok()
        .map(|l| l.with_syslog_identifier("flatipfsd".into()));
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .init();
}

/// Whether `level` is a valid filter (checked when the config is loaded).
pub fn valid_filter(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| format!("invalid log_level {level:?}: {e}"))
}

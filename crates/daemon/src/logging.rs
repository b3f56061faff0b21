//! journald logging for the daemon when systemd runs it.

use tracing_subscriber::layer::SubscriberExt;

/// When `JOURNAL_STREAM` says stderr is the journal, sends this thread's events to journald
/// with their levels as priorities (the daemon's runtime is single-threaded, so this covers
/// it). Keep the guard alive for as long as the daemon runs. `None`: not under systemd, or
/// journald is unreachable; the binary's stderr logging stays in place.
pub fn journald() -> Option<tracing::subscriber::DefaultGuard> {
    std::env::var_os("JOURNAL_STREAM")?;
    let layer = match tracing_journald::layer() {
        Ok(layer) => layer.with_syslog_identifier("cairn".to_string()),
        Err(e) => {
            tracing::warn!("journald unreachable, logging to stderr: {e}");
            return None;
        }
    };
    let filter = std::env::var("CAIRN_LOG").unwrap_or_else(|_| "info".to_string());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(filter))
        .with(layer);
    Some(tracing::subscriber::set_default(subscriber))
}

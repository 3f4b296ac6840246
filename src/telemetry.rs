//! Logging setup: `tracing` with pretty or JSON lines. Nothing logs tokens or passwords:
//! secrets live in types whose `Debug` prints `[redacted]`.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // "Database migrated to version N" on every start is noise (and would precede the
    // one-line error of a failed start).
    let filter = match "rusqlite_migration=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// Names the caller on the current request's span (`routes::log_request` declares the
/// fields), so every line the request logs, its summary included, says whose request
/// it was. Ids only: never a token, a password or a name.
pub fn record_caller(user_id: &str, session_id: &str, client_id: &str) {
    let span = tracing::Span::current();
    span.record("user_id", user_id);
    span.record("session_id", session_id);
    span.record("client_id", client_id);
}

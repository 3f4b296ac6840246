//! `latchkey check-config` (docs/contract.md "Command line"): everything `serve` loads
//! at start, without listening.

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::Settings;

/// Loads the TLS files (when set), the database and the keys as `serve` would; any
/// problem is the command's error.
pub(super) fn run(settings: Settings) -> anyhow::Result<()> {
    if let Some(tls) = &settings.server.tls {
        crate::startup::load_tls(tls)?;
    }
    crate::AppState::new(settings, Arc::new(SystemClock))?;
    println!("configuration ok");
    Ok(())
}

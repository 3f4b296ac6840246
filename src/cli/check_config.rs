//! `latchkey check-config` (docs/contract.md "Command line"): everything `serve` loads
//! at start, without listening.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

/// Loads the TLS files (when set), the database and the keys as `serve` would (on a
/// blocking thread: it reads files and the database); any
/// problem is the command's error. Also refuses a key schedule with a moment when no key
/// would sign, and warns (without failing) about key files others can read.
pub(super) fn run(settings: Settings) -> anyhow::Result<()> {
    if let Some(tls) = &settings.server.tls {
        crate::startup::load_tls(tls)?;
    }
    let grace = chrono::Duration::from_std(settings.retired_key_grace())?;
    let state = crate::AppState::new(settings, Arc::new(SystemClock))?;
    let storage = state.key_storage.as_ref();
    let now = crate::clock::to_datetime(SystemClock.now_millis());
    crate::keys::read_manifest(storage)?
        .check_schedule(now, grace)
        .map_err(|e| {
            anyhow::anyhow!("the key schedule in {} is broken: {e}", storage.describe())
        })?;
    for (path, mode) in storage.loose_permissions() {
        eprintln!(
            "latchkey: warning: {path} is readable by group or others (mode {mode:04o}); \
             run chmod 600 on it"
        );
    }
    println!("configuration ok");
    Ok(())
}

//! `latchkey check-config` (docs/contract.md "Command line"): everything `serve` loads
//! at start, without listening.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

/// Loads the TLS files (when set), the database and the keys as `serve` would; any
/// problem is the command's error. Also refuses a key schedule with a moment when no key
/// would sign, and warns (without failing) about key files others can read.
pub(super) fn run(settings: Settings) -> anyhow::Result<()> {
    if let Some(tls) = &settings.server.tls {
        crate::startup::load_tls(tls)?;
    }
    let dir = settings.keys.dir.clone();
    let grace = chrono::Duration::from_std(settings.retired_key_grace())?;
    crate::AppState::new(settings, Arc::new(SystemClock))?;
    let now = crate::clock::to_datetime(SystemClock.now_millis());
    crate::keys::read_manifest(&dir)?
        .check_schedule(now, grace)
        .map_err(|e| anyhow::anyhow!("the key schedule in {} is broken: {e}", dir.display()))?;
    for (path, mode) in crate::keys::loose_permissions(&dir) {
        eprintln!(
            "latchkey: warning: {} is readable by group or others (mode {mode:04o}); \
             run chmod 600 on it",
            path.display()
        );
    }
    println!("configuration ok");
    Ok(())
}

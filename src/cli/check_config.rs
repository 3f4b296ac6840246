//! `latchkey check-config` (docs/contract.md "Command line"): everything `serve` loads
//! at start, without listening.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;

/// Loads the TLS files (when set), the database and the keys as `serve` would (on a
/// blocking thread: it reads files and the database); any
/// problem is the command's error. Also refuses a key schedule with a moment when no key
/// would sign, and warns (without failing) about key files others can read.
///
/// It only checks: what `serve` would create on a first start (the SQLite file, a
/// first signing key in an empty keys folder) is created in a scratch folder that is
/// removed afterwards, and said so, never beside the configuration.
pub(super) fn run(settings: Settings) -> anyhow::Result<()> {
    if let Some(tls) = &settings.server.tls {
        crate::startup::load_tls(tls)?;
    }
    note_passkeys(&settings)?;
    let grace = chrono::Duration::from_std(settings.retired_key_grace())?;
    let scratch = Scratch::new()?;
    let mut settings = settings;
    if settings.store.postgres_url().is_none() && !settings.store.sqlite_path().exists() {
        println!(
            "note: no database at {} yet: latchkey serve creates it",
            settings.store.sqlite_path().display()
        );
        settings.store.path = Some(scratch.0.join("latchkey.db"));
    }
    let keys_in_folder = !crate::store::Store::keeps_keys(&settings.store);
    let manifest = settings.keys.dir.join(crate::keys::MANIFEST);
    if keys_in_folder && !manifest.exists() {
        println!(
            "note: no signing key in {} yet: latchkey serve generates one",
            settings.keys.dir.display()
        );
        settings.keys.dir = scratch.0.join("keys");
    }
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

/// Says what `[passkeys]` leaves out when it is left to its defaults.
fn note_passkeys(settings: &Settings) -> anyhow::Result<()> {
    let Some(rp) = settings.relying_party()? else {
        println!(
            "note: passkeys are off: the issuer's host is an IP address; set passkeys.rp_id \
             (a domain) to use them"
        );
        return Ok(());
    };
    for origin in rp.left_out {
        println!(
            "note: passkeys: origin {origin} is left out: the default passkeys.rp_id does not \
             cover it (set passkeys.rp_id and passkeys.origins to use passkeys there)"
        );
    }
    Ok(())
}

/// A folder of our own under the system's temporary directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("latchkey-check-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

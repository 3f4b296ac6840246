//! `latchkey keys list|generate|rotate|retire|revoke|import|init-kek` (docs/contract.md
//! "Command line"). Every change goes through `crate::keys`, which locks the key storage
//! (`keys.dir`, or the database that keeps the keys) and replaces its manifest
//! atomically, so every running server picks it up on its next reload. These run on a
//! blocking thread (`cli::run`): the storage may be a database.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::KeysCommand;
use crate::clock::{Clock, Millis, SystemClock};
use crate::config::Settings;
use crate::domain::Algorithm;
use crate::keys::{self, KeyStorage};
use crate::store::Store;

/// What every `keys` subcommand needs: the storage, the time, and the key timings.
struct KeyTimes<'a> {
    settings: &'a Settings,
    storage: Arc<dyn KeyStorage>,
    now: Millis,
    now_dt: DateTime<Utc>,
    /// How long a retired key stays published.
    grace: chrono::Duration,
    /// How long a rotated key is published before it signs.
    publish_ahead: chrono::Duration,
}

pub(super) fn run(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    if let KeysCommand::InitKek { file } = &command {
        return init_kek(file);
    }
    let now = SystemClock.now_millis();
    let t = KeyTimes {
        settings,
        storage: storage(settings)?,
        now,
        now_dt: crate::clock::to_datetime(now),
        grace: chrono::Duration::from_std(settings.retired_key_grace())?,
        publish_ahead: chrono::Duration::from_std(settings.publish_ahead().0)?,
    };
    match command {
        KeysCommand::List => list(&t),
        KeysCommand::Generate { alg } => generate(&t, alg),
        KeysCommand::Rotate { alg, now: at_once } => rotate(&t, alg, at_once),
        KeysCommand::Import {
            file,
            alg,
            now: at_once,
        } => import(&t, &file, alg, at_once),
        KeysCommand::Retire { kid } => retire(&t, &kid),
        KeysCommand::Revoke { kid } => revoke(&t, &kid),
        KeysCommand::InitKek { .. } => unreachable!("handled above"),
    }
}

/// The storage the server uses (`keys::storage_for`). The database is opened only when
/// the store keeps the keys: on SQLite these commands work on `keys.dir` alone, as they
/// always have, and never create or lock the database file.
fn storage(settings: &Settings) -> anyhow::Result<Arc<dyn KeyStorage>> {
    if !Store::keeps_keys(&settings.store) {
        return Ok(keys::folder_storage(settings));
    }
    let store = Store::from_settings(&settings.store, 1, None)?;
    keys::storage_for(settings, &store)
}

/// `latchkey keys init-kek FILE`: a new KEK, mode 0600; never over an existing file.
fn init_kek(file: &Path) -> anyhow::Result<()> {
    keys::init_kek_file(file)?;
    println!("{}", file.display());
    eprintln!(
        "wrote a {}-byte key-encryption key (mode 0600); point keys.kek_file at it on every \
         instance and keep a copy somewhere safe: without it the keys sealed in the database \
         cannot be opened",
        keys::KEK_LEN
    );
    Ok(())
}

/// A time as the key commands print it: RFC 3339, whole seconds, `Z`.
fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One line per key; `*` marks the key that signs now.
fn list(t: &KeyTimes<'_>) -> anyhow::Result<()> {
    let keys = keys::Keys::open(
        t.storage.clone(),
        t.settings.keys.algorithm,
        t.settings.retired_key_grace(),
        t.now,
    )?;
    let set = keys.current(t.now);
    if let Err(e) = keys::read_manifest(t.storage.as_ref())?.check_schedule(t.now_dt, t.grace) {
        eprintln!("latchkey: warning: the key schedule is broken: {e}");
    }
    println!(
        "  {:<43} {:<6} {:<8} {:<20} {:<20} {:<20} LEAVES JWKS",
        "KID", "ALG", "STATE", "CREATED", "SIGNS FROM", "RETIRES"
    );
    for (e, state) in &set.entries {
        let signing = if e.kid == set.signing.kid { "*" } else { " " };
        println!(
            "{signing} {:<43} {:<6} {:<8} {:<20} {:<20} {:<20} {}",
            e.kid,
            e.alg.as_str(),
            state.as_str(),
            at(e.created_at),
            at(e.signs_from),
            e.retired_at.map(at).unwrap_or_else(|| "-".into()),
            e.unpublished_at(t.grace)
                .map(at)
                .unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}

/// A key that signs at once.
fn generate(t: &KeyTimes<'_>, alg: Option<Algorithm>) -> anyhow::Result<()> {
    let alg = alg.unwrap_or(t.settings.keys.algorithm);
    let entry = keys::generate(t.storage.as_ref(), alg, t.now_dt, t.grace)?;
    println!("{}", entry.kid);
    Ok(())
}

/// Stages a new key: published now, signing after `keys.publish_ahead` (or at once).
fn rotate(t: &KeyTimes<'_>, alg: Option<Algorithm>, at_once: bool) -> anyhow::Result<()> {
    let alg = alg.unwrap_or(t.settings.keys.algorithm);
    let ahead = t.ahead(at_once);
    let (entry, retiring) = keys::rotate(t.storage.as_ref(), alg, None, t.now_dt, ahead, t.grace)?;
    report_rotation(&entry, &retiring, t.grace);
    Ok(())
}

/// Adds an operator's PKCS#8 PEM key as a rotation would.
fn import(t: &KeyTimes<'_>, file: &Path, alg: Algorithm, at_once: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let der = keys::pkcs8_from_pem(&text)?;
    let ahead = t.ahead(at_once);
    let (entry, retiring) =
        keys::rotate(t.storage.as_ref(), alg, Some(der), t.now_dt, ahead, t.grace)?;
    report_rotation(&entry, &retiring, t.grace);
    Ok(())
}

/// Stops a key signing now; it stays published for the grace.
fn retire(t: &KeyTimes<'_>, kid: &str) -> anyhow::Result<()> {
    match keys::retire(t.storage.as_ref(), kid, t.now_dt, t.grace)? {
        keys::Retired::Now(until) => {
            println!(
                "{kid} no longer signs; it stays in the JWKS until {}",
                at(until)
            )
        }
        keys::Retired::Already(since) => {
            println!("{kid} was already retired at {}", at(since))
        }
    }
    Ok(())
}

/// Revokes a compromised key: out of the JWKS, and its tokens refused, by every running
/// instance at its next manifest reload.
fn revoke(t: &KeyTimes<'_>, kid: &str) -> anyhow::Result<()> {
    match keys::revoke(t.storage.as_ref(), kid, t.now_dt, t.grace)? {
        keys::Revoked::Now => println!(
            "{kid} is revoked: running servers drop it from the JWKS and refuse its tokens \
             within keys.reload_interval ({}s; SIGHUP applies it at once)",
            t.settings.keys.reload_interval.as_secs()
        ),
        keys::Revoked::Already(since) => println!("{kid} was already revoked at {}", at(since)),
    }
    Ok(())
}

impl KeyTimes<'_> {
    /// How long a rotated or imported key waits before it signs.
    fn ahead(&self, at_once: bool) -> chrono::Duration {
        if at_once {
            chrono::Duration::zero()
        } else {
            self.publish_ahead
        }
    }
}

/// The new kid on standard output; when it signs and what retires on standard error.
fn report_rotation(entry: &keys::KeyEntry, retiring: &[String], grace: chrono::Duration) {
    println!("{}", entry.kid);
    eprintln!(
        "published now; signs from {}; {} retire(s) then and leave the JWKS at {}",
        at(entry.signs_from),
        if retiring.is_empty() {
            "no keys".to_owned()
        } else {
            retiring.join(", ")
        },
        at(entry.signs_from + grace)
    );
}

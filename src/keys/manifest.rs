//! `manifest.json`: the key storage's only state (kid, algorithm, file and dates per
//! key), and the storage lock under which every change to it is made.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::storage::{locked, KeyStorage};
use crate::domain::Algorithm;

pub const MANIFEST: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub kid: String,
    pub alg: Algorithm,
    pub file: String,
    pub created_at: DateTime<Utc>,
    pub signs_from: DateTime<Utc>,
    #[serde(default)]
    pub retired_at: Option<DateTime<Utc>>,
    /// Set by `latchkey keys revoke` (a compromised key): from then on the key neither
    /// signs, nor verifies, nor is published, whatever the other dates say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Staged,
    Active,
    Retired,
    Expired,
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Staged => "staged",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
            KeyState::Revoked => "revoked",
        }
    }
}

impl KeyEntry {
    /// `retired_grace`: how long a retired key stays published (longest token TTL +
    /// JWKS max-age). `retired_at` may lie in the future: `keys rotate` schedules the old
    /// key's retirement for the moment the new one starts signing.
    /// A revoked key is revoked at every moment (not from `revoked_at` on): instances
    /// whose clocks disagree must not disagree about a compromised key.
    pub fn state(&self, now: DateTime<Utc>, retired_grace: chrono::Duration) -> KeyState {
        if self.revoked_at.is_some() {
            return KeyState::Revoked;
        }
        match self.retired_at {
            Some(r) if now >= r + retired_grace => KeyState::Expired,
            Some(r) if now >= r => KeyState::Retired,
            _ if now < self.signs_from => KeyState::Staged,
            _ => KeyState::Active,
        }
    }

    /// When this key leaves the JWKS (RFC 7517; OIDC Core §10.1.1: only after every token
    /// it signed has expired and every cached JWKS has been refetched).
    pub fn unpublished_at(&self, retired_grace: chrono::Duration) -> Option<DateTime<Utc>> {
        self.revoked_at
            .or_else(|| self.retired_at.map(|r| r + retired_grace))
    }

    /// The next moment after `now` at which this key's state changes.
    pub(super) fn next_transition(
        &self,
        now: DateTime<Utc>,
        retired_grace: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        if self.revoked_at.is_some() {
            return None;
        }
        [
            Some(self.signs_from),
            self.retired_at,
            self.unpublished_at(retired_grace),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub keys: Vec<KeyEntry>,
}

impl Manifest {
    /// The whole future schedule, not just `now`: from `now` on, at every moment some key
    /// signs. States only change at a key's transitions, so checking `now` and each later
    /// transition covers every moment. Every `latchkey keys` change must leave this true
    /// (a staged key retired before it signs, or a key revoked with no successor, would
    /// otherwise leave the service with nothing to sign with once its time came).
    pub fn check_schedule(
        &self,
        now: DateTime<Utc>,
        retired_grace: chrono::Duration,
    ) -> anyhow::Result<()> {
        let mut moments: Vec<DateTime<Utc>> = self
            .keys
            .iter()
            .flat_map(|k| {
                [
                    Some(k.signs_from),
                    k.retired_at,
                    k.unpublished_at(retired_grace),
                ]
            })
            .flatten()
            .filter(|t| *t > now)
            .collect();
        moments.push(now);
        moments.sort_unstable();
        for t in moments {
            let signs = self
                .keys
                .iter()
                .any(|k| k.state(t, retired_grace) == KeyState::Active);
            if !signs {
                let when = if t == now {
                    "now".to_owned()
                } else {
                    format!(
                        "from {}",
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                };
                anyhow::bail!(
                    "this would leave no key that signs {when}; keep a key that signs \
                     (`latchkey keys rotate --now` adds one that signs at once)"
                );
            }
        }
        Ok(())
    }
}

pub fn read_manifest(storage: &dyn KeyStorage) -> anyhow::Result<Manifest> {
    Ok(read_manifest_bytes(storage)?.1)
}

/// The manifest as stored and parsed; no manifest yet is an empty one.
pub(super) fn read_manifest_bytes(storage: &dyn KeyStorage) -> anyhow::Result<(Vec<u8>, Manifest)> {
    match storage.read(MANIFEST)? {
        Some(bytes) => {
            let manifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("malformed key manifest {}", storage.locate(MANIFEST)))?;
            Ok((bytes, manifest))
        }
        None => Ok((Vec::new(), Manifest::default())),
    }
}

/// Runs `change` on the manifest under the storage's exclusive lock (`keys/.lock`, or the
/// database's), then writes it back atomically if `change` succeeded, so two `latchkey
/// keys …` commands or two first starts never lose each other's keys and a reader never
/// sees half a manifest.
pub fn with_locked_manifest<T>(
    storage: &dyn KeyStorage,
    change: impl FnOnce(&mut Manifest) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    locked(storage, || {
        let (before, mut manifest) = read_manifest_bytes(storage)?;
        let out = change(&mut manifest)?;
        let after = serde_json::to_vec_pretty(&manifest)?;
        if after != before && !(before.is_empty() && manifest.keys.is_empty()) {
            storage.write(MANIFEST, &after, false)?;
        }
        Ok(out)
    })
}

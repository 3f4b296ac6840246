//! The changes behind `latchkey keys generate|rotate|retire|revoke|import` (`import`
//! rotates to a key read by `pkcs8_from_pem`): each is one change to the manifest under
//! the key storage's lock (a folder or the shared database), refused unless some key signs at every moment of the resulting
//! schedule (`Manifest::check_schedule`). Running instances pick the result up on their
//! next reload.

use anyhow::bail;
use chrono::{DateTime, Utc};

use super::manifest::{with_locked_manifest, KeyEntry};
use super::pem::{add_key, generate_der, generate_key};
use super::storage::KeyStorage;
use crate::domain::Algorithm;

/// `latchkey keys rotate`: stages a new key that is published at once and signs from
/// `now + publish_ahead`, and schedules every key still signing to retire at that same
/// moment. Verifiers that refresh their JWKS within `publish_ahead` (the default is twice
/// the JWKS max-age) know the new key before they see a token signed with it
/// (RFC 7517; OIDC Core §10.1.1).
pub fn rotate(
    storage: &dyn KeyStorage,
    alg: Algorithm,
    der: Option<Vec<u8>>,
    now: DateTime<Utc>,
    publish_ahead: chrono::Duration,
    retired_grace: chrono::Duration,
) -> anyhow::Result<(KeyEntry, Vec<String>)> {
    let der = match der {
        Some(der) => der,
        None => generate_der(alg)?,
    };
    let signs_from = now + publish_ahead;
    with_locked_manifest(storage, |manifest| {
        let entry = add_key(storage, alg, &der, now, signs_from)?;
        if manifest.keys.iter().any(|k| k.kid == entry.kid) {
            bail!("key {} is already in the manifest", entry.kid);
        }
        let mut retiring = Vec::new();
        for old in &mut manifest.keys {
            if old.revoked_at.is_none() && old.retired_at.is_none_or(|r| r > signs_from) {
                old.retired_at = Some(signs_from);
                retiring.push(old.kid.clone());
            }
        }
        manifest.keys.push(entry.clone());
        manifest.check_schedule(now, retired_grace)?;
        Ok((entry, retiring))
    })
}

/// What `latchkey keys retire KID` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// Stopped signing now; stays published until the given time.
    Now(DateTime<Utc>),
    /// It was already retired (at the given time); nothing changed.
    Already(DateTime<Utc>),
}

/// Stops `kid` signing at once. It stays published (and verifies the tokens it signed
/// before now) until every token it signed has expired and every cached JWKS has been
/// refetched. Refused if some moment of the resulting schedule would have no key to sign
/// with, now or later (e.g. retiring a staged key whose predecessor retires when it was
/// due to start signing).
pub fn retire(
    storage: &dyn KeyStorage,
    kid: &str,
    now: DateTime<Utc>,
    retired_grace: chrono::Duration,
) -> anyhow::Result<Retired> {
    with_locked_manifest(storage, |manifest| {
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            bail!("no key with kid {kid:?} (see `latchkey keys list`)");
        };
        if manifest.keys[i].revoked_at.is_some() {
            bail!("{kid} is revoked; it neither signs nor verifies");
        }
        if let Some(r) = manifest.keys[i].retired_at.filter(|r| *r <= now) {
            return Ok(Retired::Already(r));
        }
        manifest.keys[i].retired_at = Some(now);
        manifest
            .check_schedule(now, retired_grace)
            .map_err(|e| anyhow::anyhow!("cannot retire {kid}: {e}"))?;
        Ok(Retired::Now(now + retired_grace))
    })
}

/// What `latchkey keys revoke KID` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Revoked {
    /// Revoked now: out of the JWKS and refused for verification by every instance at
    /// its next reload.
    Now,
    /// It was already revoked (at the given time); nothing changed.
    Already(DateTime<Utc>),
}

/// Revokes a compromised key: unlike retirement there is no grace, so tokens it signed
/// stop verifying as soon as each instance reloads the manifest (`keys.reload_interval`,
/// or at once on SIGHUP), and it leaves the JWKS. Refused if no other key would sign.
pub fn revoke(
    storage: &dyn KeyStorage,
    kid: &str,
    now: DateTime<Utc>,
    retired_grace: chrono::Duration,
) -> anyhow::Result<Revoked> {
    with_locked_manifest(storage, |manifest| {
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            bail!("no key with kid {kid:?} (see `latchkey keys list`)");
        };
        if let Some(r) = manifest.keys[i].revoked_at {
            return Ok(Revoked::Already(r));
        }
        manifest.keys[i].revoked_at = Some(now);
        manifest
            .check_schedule(now, retired_grace)
            .map_err(|e| anyhow::anyhow!("cannot revoke {kid}: {e}"))?;
        Ok(Revoked::Now)
    })
}

/// `latchkey keys generate`: a new key that signs at once (the newest active key signs).
pub fn generate(
    storage: &dyn KeyStorage,
    alg: Algorithm,
    now: DateTime<Utc>,
    retired_grace: chrono::Duration,
) -> anyhow::Result<KeyEntry> {
    with_locked_manifest(storage, |manifest| {
        let entry = generate_key(storage, alg, now, now)?;
        manifest.keys.push(entry.clone());
        manifest.check_schedule(now, retired_grace)?;
        Ok(entry)
    })
}

/// Copies every key value `from` holds (the manifest, each key it lists, the seal and
/// device keys) into `to`; returns the names copied. `latchkey store copy` moves a keys
/// folder into the database this way, so every token issued before works after.
pub fn copy_all(from: &dyn KeyStorage, to: &dyn KeyStorage) -> anyhow::Result<Vec<String>> {
    let manifest = super::manifest::read_manifest(from)?;
    let mut names = vec![super::manifest::MANIFEST.to_owned()];
    names.extend(manifest.keys.iter().map(|k| format!("{}.pem", k.kid)));
    names.push(super::storage::SEAL_KEY_FILE.to_owned());
    names.push(super::storage::DEVICE_KEY_FILE.to_owned());
    let mut copied = Vec::new();
    for name in names {
        if let Some(bytes) = from.read(&name)? {
            let private = name != super::manifest::MANIFEST;
            to.write(&name, &bytes, private)?;
            copied.push(name);
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::keys::Keys;

    fn at(ms: i64) -> DateTime<Utc> {
        crate::clock::to_datetime(ms)
    }

    const MIN: i64 = 60_000;

    fn a_rotated_key_is_published_at_once_and_signs_only_after_publish_ahead(
        storage: Arc<dyn KeyStorage>,
    ) {
        let s = storage.as_ref();
        let t0 = 1_800_000_000_000;
        let grace = std::time::Duration::from_secs(20 * 60);
        let keys = Keys::open(storage.clone(), Algorithm::ES256, grace, t0).unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let (b, retiring) = rotate(
            s,
            Algorithm::EdDSA,
            None,
            at(t0),
            chrono::Duration::minutes(10),
            chrono::Duration::minutes(20),
        )
        .unwrap();
        assert_eq!(retiring, vec![a.clone()]);
        assert!(keys.reload(t0).unwrap());
        let set = keys.current(t0);
        assert_eq!(
            set.signing.kid, a,
            "A signs until B's publish-ahead has passed"
        );
        assert!(
            set.verifying_key(&b.kid).is_some(),
            "B is published at once"
        );
        let just_before = keys.current(t0 + 10 * MIN - 1);
        assert_eq!(just_before.signing.kid, a);
        let after = keys.current(t0 + 10 * MIN);
        assert_eq!(after.signing.kid, b.kid);
        assert!(
            after.verifying_key(&a).is_some(),
            "A still verifies while retired"
        );
        // A leaves the JWKS only once the grace (longest TTL + JWKS max-age) has passed.
        assert!(keys.current(t0 + 30 * MIN - 1).verifying_key(&a).is_some());
        let later = keys.current(t0 + 30 * MIN);
        assert!(later.verifying_key(&a).is_none());
        assert!(!String::from_utf8_lossy(&later.jwks).contains(&a));
    }

    fn retiring_the_only_signing_key_is_refused_and_retiring_another_stops_it_at_once(
        storage: Arc<dyn KeyStorage>,
    ) {
        let s = storage.as_ref();
        let t0 = 1_800_000_000_000;
        let grace = chrono::Duration::minutes(20);
        let keys = Keys::open(
            storage.clone(),
            Algorithm::ES256,
            grace.to_std().unwrap(),
            t0,
        )
        .unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let err = retire(s, &a, at(t0), grace).unwrap_err();
        assert!(err.to_string().contains("no key that signs now"), "{err}");
        let b = generate(s, Algorithm::ES256, at(t0 + 1), grace).unwrap();
        keys.reload(t0 + 1).unwrap();
        assert_eq!(keys.current(t0 + 1).signing.kid, b.kid);
        assert_eq!(
            retire(s, &a, at(t0 + 2), grace).unwrap(),
            Retired::Now(at(t0 + 2) + grace)
        );
        assert_eq!(
            retire(s, &a, at(t0 + 3), grace).unwrap(),
            Retired::Already(at(t0 + 2))
        );
        keys.reload(t0 + 3).unwrap();
        let states: Vec<crate::keys::KeyState> =
            keys.current(t0 + 3).entries.iter().map(|e| e.1).collect();
        assert_eq!(
            states,
            vec![
                crate::keys::KeyState::Retired,
                crate::keys::KeyState::Active
            ]
        );
        assert!(retire(s, "no-such-kid", at(t0), grace).is_err());
    }

    fn retiring_a_staged_key_whose_predecessor_retires_when_it_was_due_to_sign_is_refused(
        storage: Arc<dyn KeyStorage>,
    ) {
        let s = storage.as_ref();
        let t0 = 1_800_000_000_000;
        let grace = chrono::Duration::minutes(20);
        let ahead = chrono::Duration::minutes(10);
        Keys::open(
            storage.clone(),
            Algorithm::ES256,
            grace.to_std().unwrap(),
            t0,
        )
        .unwrap();
        let (b, _) = rotate(s, Algorithm::ES256, None, at(t0), ahead, grace).unwrap();
        // Now A signs and B does not, so a check of "now" alone would allow this; but
        // from t0 + 10 min A is retired and B would be too.
        let err = retire(s, &b.kid, at(t0 + 1), grace).unwrap_err();
        assert!(err.to_string().contains("no key that signs from"), "{err}");
        let manifest = crate::keys::read_manifest(s).unwrap();
        assert!(manifest
            .keys
            .iter()
            .all(|k| k.kid != b.kid || k.retired_at.is_none()));
        manifest.check_schedule(at(t0 + 2), grace).unwrap();
    }

    fn a_revoked_key_is_revoked_whatever_the_clock_and_revoking_the_last_signer_is_refused(
        storage: Arc<dyn KeyStorage>,
    ) {
        let s = storage.as_ref();
        let t0 = 1_800_000_000_000;
        let grace = chrono::Duration::minutes(20);
        let keys = Keys::open(
            storage.clone(),
            Algorithm::ES256,
            grace.to_std().unwrap(),
            t0,
        )
        .unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let err = revoke(s, &a, at(t0), grace).unwrap_err();
        assert!(err.to_string().contains("no key that signs now"), "{err}");
        let (b, _) = rotate(
            s,
            Algorithm::ES256,
            None,
            at(t0),
            chrono::Duration::zero(),
            grace,
        )
        .unwrap();
        assert_eq!(revoke(s, &a, at(t0 + 5), grace).unwrap(), Revoked::Now);
        assert_eq!(
            revoke(s, &a, at(t0 + 6), grace).unwrap(),
            Revoked::Already(at(t0 + 5))
        );
        keys.reload(t0 + 6).unwrap();
        // Even at a moment before the revocation (another instance's slow clock).
        let set = keys.current(t0 + 1);
        assert!(set.verifying_key(&a).is_none());
        assert!(!String::from_utf8_lossy(&set.jwks).contains(&a));
        assert_eq!(set.signing.kid, b.kid);
    }

    over_both_storages!(
        a_rotated_key_is_published_at_once_and_signs_only_after_publish_ahead,
        retiring_the_only_signing_key_is_refused_and_retiring_another_stops_it_at_once,
        retiring_a_staged_key_whose_predecessor_retires_when_it_was_due_to_sign_is_refused,
        a_revoked_key_is_revoked_whatever_the_clock_and_revoking_the_last_signer_is_refused,
    );
}

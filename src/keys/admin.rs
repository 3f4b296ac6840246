//! The changes behind `latchkey keys generate|rotate|retire|import` (`import` rotates to
//! a key read by `pkcs8_from_pem`): each is one change to the manifest under its file
//! lock. Running instances pick the result up on their next reload.

use std::path::Path;

use anyhow::bail;
use chrono::{DateTime, Utc};

use super::manifest::{with_locked_manifest, KeyEntry, KeyState};
use super::pem::{add_key, generate_der, generate_key};
use crate::domain::Algorithm;

/// `latchkey keys rotate`: stages a new key that is published at once and signs from
/// `now + publish_ahead`, and schedules every key still signing to retire at that same
/// moment. Verifiers that refresh their JWKS within `publish_ahead` (the default is twice
/// the JWKS max-age) know the new key before they see a token signed with it
/// (RFC 7517; OIDC Core §10.1.1).
pub fn rotate(
    dir: &Path,
    alg: Algorithm,
    der: Option<Vec<u8>>,
    now: DateTime<Utc>,
    publish_ahead: chrono::Duration,
) -> anyhow::Result<(KeyEntry, Vec<String>)> {
    let der = match der {
        Some(der) => der,
        None => generate_der(alg)?,
    };
    let signs_from = now + publish_ahead;
    with_locked_manifest(dir, |manifest| {
        let entry = add_key(dir, alg, &der, now, signs_from)?;
        if manifest.keys.iter().any(|k| k.kid == entry.kid) {
            bail!("key {} is already in the manifest", entry.kid);
        }
        let mut retiring = Vec::new();
        for old in &mut manifest.keys {
            if old.retired_at.is_none_or(|r| r > signs_from) {
                old.retired_at = Some(signs_from);
                retiring.push(old.kid.clone());
            }
        }
        manifest.keys.push(entry.clone());
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

/// Stops `kid` signing at once. It stays published (and verifies) until every token it
/// signed has expired and every cached JWKS has been refetched. Refuses to leave the
/// service with no key to sign with.
pub fn retire(
    dir: &Path,
    kid: &str,
    now: DateTime<Utc>,
    retired_grace: chrono::Duration,
) -> anyhow::Result<Retired> {
    with_locked_manifest(dir, |manifest| {
        let Some(i) = manifest.keys.iter().position(|k| k.kid == kid) else {
            bail!("no key with kid {kid:?} (see `latchkey keys list`)");
        };
        if let Some(r) = manifest.keys[i].retired_at.filter(|r| *r <= now) {
            return Ok(Retired::Already(r));
        }
        let another_signs = manifest
            .keys
            .iter()
            .enumerate()
            .any(|(j, k)| j != i && k.state(now, retired_grace) == KeyState::Active);
        if !another_signs {
            bail!(
                "{kid} is the only key that can sign; run `latchkey keys rotate` and retire it \
                 once the new key signs (or `latchkey keys rotate --now` if it is compromised)"
            );
        }
        manifest.keys[i].retired_at = Some(now);
        Ok(Retired::Now(now + retired_grace))
    })
}

/// `latchkey keys generate`: a new key that signs at once (the newest active key signs).
pub fn generate(dir: &Path, alg: Algorithm, now: DateTime<Utc>) -> anyhow::Result<KeyEntry> {
    with_locked_manifest(dir, |manifest| {
        let entry = generate_key(dir, alg, now, now)?;
        manifest.keys.push(entry.clone());
        Ok(entry)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;

    fn at(ms: i64) -> DateTime<Utc> {
        crate::clock::to_datetime(ms)
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_rotated_key_is_published_at_once_and_signs_only_after_publish_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let grace = std::time::Duration::from_secs(20 * 60);
        let keys = Keys::load_or_generate(dir.path(), Algorithm::ES256, grace, t0).unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let (b, retiring) = rotate(
            dir.path(),
            Algorithm::EdDSA,
            None,
            at(t0),
            chrono::Duration::minutes(10),
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

    #[test]
    fn retiring_the_only_signing_key_is_refused_and_retiring_another_stops_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_800_000_000_000;
        let grace = chrono::Duration::minutes(20);
        let keys =
            Keys::load_or_generate(dir.path(), Algorithm::ES256, grace.to_std().unwrap(), t0)
                .unwrap();
        let a = keys.current(t0).signing.kid.clone();
        let err = retire(dir.path(), &a, at(t0), grace).unwrap_err();
        assert!(err.to_string().contains("only key that can sign"), "{err}");
        let b = generate(dir.path(), Algorithm::ES256, at(t0 + 1)).unwrap();
        keys.reload(t0 + 1).unwrap();
        assert_eq!(keys.current(t0 + 1).signing.kid, b.kid);
        assert_eq!(
            retire(dir.path(), &a, at(t0 + 2), grace).unwrap(),
            Retired::Now(at(t0 + 2) + grace)
        );
        assert_eq!(
            retire(dir.path(), &a, at(t0 + 3), grace).unwrap(),
            Retired::Already(at(t0 + 2))
        );
        keys.reload(t0 + 3).unwrap();
        let states: Vec<KeyState> = keys.current(t0 + 3).entries.iter().map(|e| e.1).collect();
        assert_eq!(states, vec![KeyState::Retired, KeyState::Active]);
        assert!(retire(dir.path(), "no-such-kid", at(t0), grace).is_err());
    }
}

//! Key files: PKCS#8 `PRIVATE KEY` PEM (RFC 5958, RFC 7468 §10), one per key, named
//! `<kid>.pem` in the key storage (a file with mode 0600 in a keys folder); generating
//! fresh PKCS#8 DER for each algorithm.

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::manifest::KeyEntry;
use super::signing::SigningKey;
use super::storage::KeyStorage;
use crate::domain::Algorithm;

/// Reads a PKCS#8 `PRIVATE KEY` PEM (as `openssl genpkey` writes) for `latchkey keys import`.
pub fn pkcs8_from_pem(text: &str) -> anyhow::Result<Vec<u8>> {
    let pem = ::pem::parse(text.as_bytes()).context("the file is not PEM")?;
    match pem.tag() {
        "PRIVATE KEY" => Ok(pem.contents().to_vec()),
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => bail!(
            "the key is in the legacy {} format; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`",
            pem.tag()
        ),
        other => bail!("expected a PKCS#8 PRIVATE KEY, found {other}"),
    }
}

/// Reads and parses `entry`'s key file, checking it is the key the manifest names.
pub(super) fn load_key_file(
    storage: &dyn KeyStorage,
    entry: &KeyEntry,
) -> anyhow::Result<SigningKey> {
    // The file name comes from our own manifest, never from a token header.
    if entry.file.contains(['/', '\\']) || entry.file.starts_with('.') {
        bail!(
            "key file name {:?} in the manifest is not a plain file name",
            entry.file
        );
    }
    let shown = storage.locate(&entry.file);
    let bytes = storage
        .read(&entry.file)
        .with_context(|| format!("cannot read key file {shown}"))?
        .ok_or_else(|| anyhow!("cannot read key file {shown}: it does not exist"))?;
    let pem = ::pem::parse(&bytes).with_context(|| format!("key file {shown} is not PEM"))?;
    if pem.tag() != "PRIVATE KEY" {
        bail!("key file {shown} is not a PKCS#8 PRIVATE KEY");
    }
    SigningKey::from_pkcs8(Some(&entry.kid), entry.alg, pem.contents())
        .with_context(|| format!("key file {shown}"))
}

/// Generates a key of `alg`, writes it as PKCS#8 PEM with mode 0600, returns its entry.
pub(super) fn generate_key(
    storage: &dyn KeyStorage,
    alg: Algorithm,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> anyhow::Result<KeyEntry> {
    let der = generate_der(alg)?;
    add_key(storage, alg, &der, now, signs_from)
}

/// A fresh PKCS#8 private key. ES256 and Ed25519 come from ring; ring cannot generate RSA
/// keys, so RS256 keys (2048-bit) come from the RustCrypto `rsa` crate and are then
/// loaded into ring, which does all signing.
pub fn generate_der(alg: Algorithm) -> anyhow::Result<Vec<u8>> {
    let rng = SystemRandom::new();
    Ok(match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("key generation failed"))?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| anyhow::anyhow!("RSA key generation failed: {e}"))?;
            key.to_pkcs8_der()
                .map_err(|e| anyhow::anyhow!("cannot encode the RSA key: {e}"))?
                .as_bytes()
                .to_vec()
        }
    })
}

/// Stores a PKCS#8 key (the key only; the caller updates the manifest).
pub(super) fn add_key(
    storage: &dyn KeyStorage,
    alg: Algorithm,
    der: &[u8],
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> anyhow::Result<KeyEntry> {
    let key = SigningKey::from_pkcs8(None, alg, der)?;
    let file = format!("{}.pem", key.kid);
    let pem = ::pem::encode(&::pem::Pem::new("PRIVATE KEY", der.to_vec()));
    storage.write(&file, pem.as_bytes(), true)?;
    Ok(KeyEntry {
        kid: key.kid,
        alg,
        file,
        created_at: now,
        signs_from,
        retired_at: None,
        revoked_at: None,
    })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    #[test]
    fn rsa_keys_are_generated_as_2048_bit_pkcs8_that_ring_signs_with() {
        let der = generate_der(Algorithm::RS256).unwrap();
        let key = SigningKey::from_pkcs8(None, Algorithm::RS256, &der).unwrap();
        let jwt = key
            .sign_jwt(&serde_json::json!({"a": 1}), &SystemRandom::new())
            .unwrap();
        let n = URL_SAFE_NO_PAD.decode(key.jwk.n.as_ref().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert_eq!(key.jwk.e.as_deref(), Some("AQAB"));
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(&jwt, &key.decoding, &v).unwrap();
    }

    #[test]
    fn legacy_pem_formats_are_refused_with_the_conversion_command() {
        let err = pkcs8_from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    }
}

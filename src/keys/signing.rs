//! One parsed signing key: the ring key pair that signs compact JWS (RFC 7515) access
//! tokens, and the public JWK and decoding key that verify them.

use anyhow::bail;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use serde::Serialize;

use super::Jwk;
use crate::domain::Algorithm;

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// One parsed key: the ring key pair that signs, and the public half that verifies.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
    pub jwk: Jwk,
    pub decoding: jsonwebtoken::DecodingKey,
    /// `base64url({"alg":…,"typ":"at+jwt","kid":…})`, computed once.
    header_b64: String,
}

impl SigningKey {
    pub fn from_pkcs8(kid_hint: Option<&str>, alg: Algorithm, der: &[u8]) -> anyhow::Result<Self> {
        let (signer, jwk) = parse_pkcs8(alg, der)?;
        let kid = jwk.thumbprint();
        if let Some(hint) = kid_hint {
            if hint != kid {
                bail!("key file does not match kid {hint} in the manifest");
            }
        }
        let jwk = jwk.with_kid(&kid, alg);
        let decoding = jwk.decoding_key()?;
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        Ok(Self {
            kid,
            alg,
            signer,
            jwk,
            decoding,
            header_b64,
        })
    }

    /// Signs `claims` as a compact JWS with this key's cached header.
    pub fn sign_jwt(&self, claims: &impl Serialize, rng: &SystemRandom) -> anyhow::Result<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let mut jwt = String::with_capacity(self.header_b64.len() + payload.len() + 400);
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        jwt.push_str(&payload);
        let sig = match &self.signer {
            Signer::Ecdsa(kp) => {
                let mut sig = kp
                    .sign(rng, jwt.as_bytes())
                    .map_err(|_| anyhow::anyhow!("ECDSA signing failed"))?
                    .as_ref()
                    .to_vec();
                // The verifier accepts only low S (one valid string per token).
                p256_normalize_s(&mut sig[32..]);
                sig
            }
            Signer::Ed25519(kp) => kp.sign(jwt.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, rng, jwt.as_bytes(), &mut sig)
                    .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
                sig
            }
        };
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }
}

/// The order n of the P-256 group (SEC 2 §2.4.2), big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n / 2, rounded down: the largest S a canonical (low-S) signature may have.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether a 32-byte big-endian S is at most n/2. ECDSA signatures are malleable:
/// (r, s) and (r, n − s) verify alike, so accepting both would give one token two valid
/// strings; latchkey accepts only the low one.
pub fn p256_s_is_low(s: &[u8]) -> bool {
    s.len() == 32 && s <= P256_HALF_N.as_slice()
}

/// Replaces a high S by n − S (the same signature's low-S twin).
fn p256_normalize_s(s: &mut [u8]) {
    if s.len() != 32 || p256_s_is_low(s) {
        return;
    }
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + (borrow << 8)) as u8;
    }
}

/// The ring key pair in `der` and its public JWK (no `kid` yet).
fn parse_pkcs8(alg: Algorithm, der: &[u8]) -> anyhow::Result<(Signer, Jwk)> {
    let rng = SystemRandom::new();
    Ok(match alg {
        Algorithm::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                .map_err(|e| anyhow::anyhow!("not a P-256 PKCS#8 key: {e}"))?;
            let jwk = Jwk::p256(kp.public_key().as_ref())?;
            (Signer::Ecdsa(kp), jwk)
        }
        Algorithm::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
            let jwk = Jwk::ed25519(kp.public_key().as_ref())?;
            (Signer::Ed25519(kp), jwk)
        }
        Algorithm::RS256 => {
            let kp = RsaKeyPair::from_pkcs8(der)
                .map_err(|e| anyhow::anyhow!("not an RSA PKCS#8 key: {e}"))?;
            if kp.public().modulus_len() < 256 {
                bail!("RSA keys must be at least 2048 bits");
            }
            let c: ring::rsa::PublicKeyComponents<Vec<u8>> = kp.public().into();
            let jwk = Jwk::rsa(&c.n, &c.e);
            (Signer::Rsa(kp), jwk)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_signatures_always_have_a_low_s_and_still_verify() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = SigningKey::from_pkcs8(None, Algorithm::ES256, doc.as_ref()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        // Unnormalized, about half of all signatures would have a high S.
        for i in 0..64 {
            let jwt = key.sign_jwt(&serde_json::json!({ "i": i }), &rng).unwrap();
            let sig = URL_SAFE_NO_PAD
                .decode(jwt.rsplit('.').next().unwrap())
                .unwrap();
            assert!(p256_s_is_low(&sig[32..]), "signature {i} has a high S");
            jsonwebtoken::decode::<serde_json::Value>(&jwt, &key.decoding, &validation)
                .expect("the normalized signature verifies");
        }
    }

    #[test]
    fn the_twin_of_a_low_s_is_high_and_normalizes_back() {
        let mut s = [0u8; 32];
        s[31] = 5;
        let mut twin = s;
        // n − 5 is high; normalizing it gives 5 back.
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(P256_N[i]) - i16::from(twin[i]) - borrow;
            borrow = i16::from(d < 0);
            twin[i] = (d + (borrow << 8)) as u8;
        }
        assert!(!p256_s_is_low(&twin));
        p256_normalize_s(&mut twin);
        assert_eq!(twin, s);
        assert!(p256_s_is_low(&P256_HALF_N));
    }

    #[test]
    fn ed25519_keys_sign_jwts_with_the_cached_header() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = SigningKey::from_pkcs8(None, Algorithm::EdDSA, doc.as_ref()).unwrap();
        let jwt = key.sign_jwt(&serde_json::json!({"a": 1}), &rng).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
    }
}

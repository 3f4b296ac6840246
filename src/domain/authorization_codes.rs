//! Redeeming an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6): the rules, in one
//! transaction. A code is used once; whatever goes wrong with a code that exists ends
//! its session, because nobody will ever get that session's tokens: a second use
//! (RFC 6749 §4.1.2: "SHOULD revoke … all tokens previously issued based on that
//! authorization code"), or a first use by the wrong client, redirect URI or verifier.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::clock::Millis;
use crate::domain::model::ClientContext;
use crate::domain::repository::Tx;
use crate::domain::{revocation, RevocationReason, TokenHash};

/// What the token request presents with the code.
#[derive(Clone)]
pub struct Presented {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_verifier: String,
}

pub enum Redeemed {
    /// The session's refresh token, sealed with the code's hash as associated data.
    Sealed(Vec<u8>),
    /// `invalid_grant`, and why (for the description).
    Refused(&'static str),
}

/// RFC 7636 §4.6: BASE64URL(SHA-256(ASCII(code_verifier))) == code_challenge, compared
/// in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    use subtle::ConstantTimeEq;
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Marks the code used and checks it against what is presented; on any failure the
/// code's session is revoked (`reuse` for a second use, `revoked` otherwise).
pub async fn redeem(
    tx: &mut dyn Tx,
    now: Millis,
    hash: &TokenHash,
    presented: &Presented,
    ctx: &ClientContext,
) -> anyhow::Result<Redeemed> {
    let Some(code) = tx.use_authorization_code(hash, now).await? else {
        return Ok(Redeemed::Refused("unknown authorization code"));
    };
    let refusal = if code.used_at.is_some() {
        Some((
            "the authorization code was already used",
            RevocationReason::Reuse,
        ))
    } else if code.expires_at <= now {
        Some(("the authorization code expired", RevocationReason::Revoked))
    } else if code.client_id != presented.client_id {
        Some((
            "the authorization code was issued to another client",
            RevocationReason::Revoked,
        ))
    } else if code.redirect_uri != presented.redirect_uri {
        // RFC 6749 §4.1.3: identical to the authorization request's.
        Some((
            "redirect_uri differs from the authorization request's",
            RevocationReason::Revoked,
        ))
    } else if !verifier_matches(&presented.code_verifier, &code.code_challenge) {
        Some((
            "the code_verifier does not match the code_challenge",
            RevocationReason::Revoked,
        ))
    } else {
        None
    };
    match (refusal, code.sealed_refresh) {
        (None, Some(sealed)) => Ok(Redeemed::Sealed(sealed)),
        (refusal, _) => {
            let (why, reason) =
                refusal.unwrap_or(("unknown authorization code", RevocationReason::Revoked));
            if let Some(session) = tx.session_by_id(&code.session_id).await? {
                revocation::revoke(tx, now, &session, reason, ctx).await?;
            }
            Ok(Redeemed::Refused(why))
        }
    }
}

/// Housekeeping: deletes the codes that expired before `now`. A code never exchanged
/// leaves a session nobody can get tokens for (they wait sealed in the code's row), so
/// that session is revoked rather than left alive until its idle timeout. Returns how
/// many sessions ended.
pub async fn sweep_expired(tx: &mut dyn Tx, now: Millis) -> anyhow::Result<usize> {
    let mut ended = 0;
    for id in tx.delete_authorization_codes_expired_before(now).await? {
        if let Some(session) = tx.session_by_id(&id).await? {
            let ctx = ClientContext::default();
            if revocation::revoke(tx, now, &session, RevocationReason::Revoked, &ctx).await? {
                ended += 1;
            }
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_verifier_matches_its_challenge() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(
            !verifier_matches(challenge, challenge),
            "plain is not accepted"
        );
    }
}

//! The second factor's rules (docs/contract.md "Second factor"; RFC 6238, OWASP MFA
//! cheat sheet): enrolment and its confirmation, checking a code or a recovery code
//! (each works once), removal, and finishing a login that answered `mfa_required`.
//! Every function runs inside one store transaction (`repository::Tx`), so a code is
//! checked and spent in the same commit.

use ring::rand::SystemRandom;

use crate::clock::Millis;
use crate::domain::model::{ClientContext, MfaFactor, NewEvent, PendingLogin};
use crate::domain::passkeys::PasskeyUse;
use crate::domain::repository::Tx;
use crate::domain::revocation::revoke_all_of_user;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::totp::{self, RecoveryCode, TotpCode, TotpSecret};
use crate::domain::{EventKind, RevocationReason, SessionId, TokenHash, TokenTagger, UserId};

/// A pending login (`mfa_token`) lives this long (docs/contract.md: 5 minutes).
pub const MFA_TOKEN_TTL_MS: Millis = 5 * 60 * 1000;
/// The fifth wrong code ends the `mfa_token` (the login starts again with the password).
pub const MAX_CODE_FAILURES: u32 = 5;

/// Seals and opens TOTP secrets; `keys::Sealer` implements it with AES-256-GCM and an
/// AAD naming the purpose and the user, so a sealed secret opens for no other user and
/// never as (or in place of) a sealed refresh token.
pub trait SecretSealer {
    fn seal_totp(&self, user_id: &str, secret: &TotpSecret) -> anyhow::Result<Vec<u8>>;
    fn open_totp(&self, user_id: &str, sealed: &[u8]) -> Option<TotpSecret>;
}

/// What the user presented as their second factor.
#[derive(Debug, Clone)]
pub enum Proof {
    Totp(TotpCode),
    Recovery(RecoveryCode),
    /// A passkey assertion, checked by the service (webauthn-rs) before the write: what
    /// to record of the passkey's use, or `None` when it did not verify.
    Passkey(Option<PasskeyUse>),
}

impl Proof {
    pub fn method(&self) -> &'static str {
        match self {
            Proof::Totp(_) => "totp",
            Proof::Recovery(_) => "recovery_code",
            Proof::Passkey(_) => "passkey",
        }
    }
}

/// Whether the user has a factor that login and step-up ask for: a confirmed TOTP
/// factor or a passkey (docs/contract.md "Passkeys").
pub async fn has_active_factor(tx: &mut dyn Tx, user_id: &UserId) -> anyhow::Result<bool> {
    Ok(has_totp_factor(tx, user_id).await? || !tx.passkeys_of(user_id).await?.is_empty())
}

/// Whether the user has a confirmed TOTP factor (the one `/me/mfa/totp` manages).
pub async fn has_totp_factor(tx: &mut dyn Tx, user_id: &UserId) -> anyhow::Result<bool> {
    Ok(tx.mfa_factor(user_id).await?.is_some_and(|f| f.is_active()))
}

/// The methods that can finish a login of the user (`mfa_methods`).
pub async fn factor_methods(
    tx: &mut dyn Tx,
    user_id: &UserId,
) -> anyhow::Result<Vec<&'static str>> {
    let mut methods = Vec::new();
    if has_totp_factor(tx, user_id).await? {
        methods.extend(["totp", "recovery_code"]);
    }
    if !tx.passkeys_of(user_id).await?.is_empty() {
        methods.push("passkey");
    }
    Ok(methods)
}

pub enum EnrolOutcome {
    Started,
    /// A confirmed factor exists: remove it first.
    AlreadyActive,
}

/// Starts (or restarts) an enrolment: the sealed secret is stored unconfirmed, replacing
/// an earlier unconfirmed one.
pub async fn enrol(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    sealed_secret: Vec<u8>,
) -> anyhow::Result<EnrolOutcome> {
    if has_totp_factor(tx, user_id).await? {
        return Ok(EnrolOutcome::AlreadyActive);
    }
    tx.put_mfa_factor(&MfaFactor {
        user_id: user_id.clone(),
        sealed_secret,
        created_at: now,
        confirmed_at: None,
        last_step: None,
    })
    .await?;
    Ok(EnrolOutcome::Started)
}

pub enum ConfirmOutcome {
    Enabled,
    /// No enrolment was started.
    NoEnrolment,
    AlreadyActive,
    WrongCode,
}

/// The account's own user, signed in (a session) or finishing a login (none yet),
/// acting on their second factor: who and from where, for the events. Not
/// [`model::Actor`](crate::domain::model::Actor), an admin acting on someone else.
pub struct AccountOwner<'a> {
    pub user_id: &'a UserId,
    pub session_id: Option<&'a SessionId>,
    pub client_id: &'a str,
    pub ctx: &'a ClientContext,
}

impl AccountOwner<'_> {
    fn event(&self, kind: EventKind) -> NewEvent {
        let mut e = NewEvent::new(kind)
            .user(self.user_id)
            .client(self.client_id)
            .from(self.ctx);
        e.session_id = self.session_id.cloned();
        e
    }

    /// ASVS v5 7.4.3: a factor added or removed ends every other session of the user, so
    /// a session opened with the password alone does not outlive the factor's arrival
    /// (and one opened with the factor does not outlive its removal). The actor's own
    /// session stays. Returns how many ended.
    async fn end_other_sessions(&self, tx: &mut dyn Tx, now: Millis) -> anyhow::Result<usize> {
        revoke_all_of_user(
            tx,
            now,
            self.user_id,
            self.session_id,
            RevocationReason::MfaChange,
            self.ctx,
        )
        .await
    }
}

async fn record_failure(
    tx: &mut dyn Tx,
    now: Millis,
    who: &AccountOwner<'_>,
    purpose: &str,
    method: &str,
) -> anyhow::Result<()> {
    let event = who
        .event(EventKind::MfaFailed)
        .detail(serde_json::json!({ "purpose": purpose, "method": method }));
    tx.insert_event(now, &event).await
}

/// Confirms an enrolment with its first code: the factor becomes active (its step is
/// spent), the recovery codes are stored (hashes only), every other session of the user
/// ends and `mfa_enabled` is recorded, all in one commit.
pub async fn confirm(
    tx: &mut dyn Tx,
    now: Millis,
    sealer: &dyn SecretSealer,
    who: &AccountOwner<'_>,
    code: &TotpCode,
    recovery_hashes: &[TokenHash],
) -> anyhow::Result<ConfirmOutcome> {
    let Some(factor) = tx.mfa_factor(who.user_id).await? else {
        return Ok(ConfirmOutcome::NoEnrolment);
    };
    if factor.is_active() {
        return Ok(ConfirmOutcome::AlreadyActive);
    }
    let secret = sealer
        .open_totp(who.user_id.as_str(), &factor.sealed_secret)
        .ok_or_else(|| anyhow::anyhow!("a stored TOTP secret does not open"))?;
    let Some(step) = totp::verify(&secret, code, now, factor.last_step) else {
        record_failure(tx, now, who, "enrol", "totp").await?;
        return Ok(ConfirmOutcome::WrongCode);
    };
    tx.put_mfa_factor(&MfaFactor {
        confirmed_at: Some(now),
        last_step: Some(step),
        ..factor
    })
    .await?;
    tx.replace_recovery_codes(who.user_id, recovery_hashes)
        .await?;
    let ended = who.end_other_sessions(tx, now).await?;
    let event = who
        .event(EventKind::MfaEnabled)
        .detail(serde_json::json!({ "other_sessions_ended": ended }));
    tx.insert_event(now, &event).await?;
    Ok(ConfirmOutcome::Enabled)
}

/// Checks `proof` against the user's active factor and spends it: a TOTP code's step
/// becomes the last used one (refused if not later, RFC 6238 §5.2), a recovery code is
/// deleted. `false` for anything wrong, reused or expired, or without an active factor.
pub async fn spend(
    tx: &mut dyn Tx,
    now: Millis,
    sealer: &dyn SecretSealer,
    user_id: &UserId,
    proof: &Proof,
) -> anyhow::Result<bool> {
    if let Proof::Passkey(used) = proof {
        // Recorded only if the passkey is still there (not removed while its ceremony ran).
        return match used {
            Some(u) => {
                tx.record_passkey_use(&u.passkey_id, &u.credential, u.counter, now)
                    .await
            }
            None => Ok(false),
        };
    }
    let Some(factor) = tx.mfa_factor(user_id).await?.filter(MfaFactor::is_active) else {
        return Ok(false);
    };
    match proof {
        Proof::Totp(code) => {
            let secret = sealer
                .open_totp(user_id.as_str(), &factor.sealed_secret)
                .ok_or_else(|| anyhow::anyhow!("a stored TOTP secret does not open"))?;
            match totp::verify(&secret, code, now, factor.last_step) {
                // The conditional update refuses a step another request spent first.
                Some(step) => tx.advance_mfa_step(user_id, step).await,
                None => Ok(false),
            }
        }
        Proof::Recovery(code) => tx.consume_recovery_code(user_id, &code.hash()).await,
        Proof::Passkey(_) => Ok(false),
    }
}

pub enum RemoveOutcome {
    Removed,
    NoFactor,
    WrongCode,
}

/// Removes the user's factor after checking `proof` (the password was checked before)
/// and ends every other session of the user.
pub async fn remove(
    tx: &mut dyn Tx,
    now: Millis,
    sealer: &dyn SecretSealer,
    who: &AccountOwner<'_>,
    proof: &Proof,
) -> anyhow::Result<RemoveOutcome> {
    if !has_totp_factor(tx, who.user_id).await? {
        return Ok(RemoveOutcome::NoFactor);
    }
    if !spend(tx, now, sealer, who.user_id, proof).await? {
        record_failure(tx, now, who, "remove", proof.method()).await?;
        return Ok(RemoveOutcome::WrongCode);
    }
    tx.delete_mfa_factor(who.user_id).await?;
    let ended = who.end_other_sessions(tx, now).await?;
    let event = who
        .event(EventKind::MfaDisabled)
        .detail(serde_json::json!({ "other_sessions_ended": ended }));
    tx.insert_event(now, &event).await?;
    Ok(RemoveOutcome::Removed)
}

pub enum RegenerateOutcome {
    Regenerated,
    NoFactor,
    WrongCode,
}

/// Replaces the user's recovery codes after checking and spending a current TOTP code
/// (a bearer token alone never mints recovery codes; docs/contract.md "Second factor").
pub async fn regenerate_recovery_codes(
    tx: &mut dyn Tx,
    now: Millis,
    sealer: &dyn SecretSealer,
    who: &AccountOwner<'_>,
    code: &TotpCode,
    hashes: &[TokenHash],
) -> anyhow::Result<RegenerateOutcome> {
    if !has_totp_factor(tx, who.user_id).await? {
        return Ok(RegenerateOutcome::NoFactor);
    }
    let proof = Proof::Totp(code.clone());
    if !spend(tx, now, sealer, who.user_id, &proof).await? {
        record_failure(tx, now, who, "recovery_codes", proof.method()).await?;
        return Ok(RegenerateOutcome::WrongCode);
    }
    tx.replace_recovery_codes(who.user_id, hashes).await?;
    tx.insert_event(now, &who.event(EventKind::RecoveryCodesRegenerated))
        .await?;
    Ok(RegenerateOutcome::Regenerated)
}

/// The operator removes a locked-out user's factors (`latchkey users reset-mfa`): the
/// TOTP factor (recorded as `mfa_disabled` by an administrator) and every passkey
/// (`passkey_removed`, with how many). There is no current session to keep, so every
/// session of the user ends (ASVS v5 7.4.3). `None` if there was no factor, else how
/// many sessions ended.
pub async fn reset(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
) -> anyhow::Result<Option<usize>> {
    let had_totp = tx.delete_mfa_factor(user_id).await?;
    let passkeys = tx.delete_passkeys_of(user_id).await?;
    if !had_totp && passkeys == 0 {
        return Ok(None);
    }
    let operator = ClientContext::operator();
    if passkeys > 0 {
        let event = NewEvent::new(EventKind::PasskeyRemoved)
            .user(user_id)
            .from(&operator)
            .detail(serde_json::json!({ "reason": "reset", "passkeys": passkeys }));
        tx.insert_event(now, &event).await?;
    }
    let ended = revoke_all_of_user(
        tx,
        now,
        user_id,
        None,
        RevocationReason::MfaReset,
        &operator,
    )
    .await?;
    if had_totp {
        let event = NewEvent::new(EventKind::MfaDisabled)
            .user(user_id)
            .from(&operator)
            .detail(serde_json::json!({ "reason": "reset", "sessions_ended": ended }));
        tx.insert_event(now, &event).await?;
    }
    Ok(Some(ended))
}

/// SHA-256 of a password hash (PHC string): what a pending login remembers of the
/// password it verified.
pub fn password_fingerprint(password_hash: &str) -> TokenHash {
    let d = ring::digest::digest(&ring::digest::SHA256, password_hash.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub enum FinishOutcome {
    /// The `mfa_token` is unknown, used, expired or ended, or the password changed.
    Dead,
    /// Wrong, reused or expired code; `ended` when it was the fifth.
    WrongCode { ended: bool },
    /// The account has had [`MAX_CONSECUTIVE_CODE_FAILURES`] wrong codes in a row and
    /// the code is a TOTP code from a device that never signed in: not checked, nothing
    /// counted (a recovery code, a known device or `users reset-mfa` gets past).
    CodesLocked,
    /// The code was right: the pending login is spent and this is the session's fate.
    Finished(LoginOutcome),
}

/// Consecutive wrong codes per account, over all devices, after which a TOTP code is
/// checked only from a known device (NIST SP 800-63B §5.2.2: at most 100). The hourly
/// login throttle alone would allow 100 an hour forever.
pub const MAX_CONSECUTIVE_CODE_FAILURES: u32 = 100;

/// The second step of a login: `pending` (read by the caller) must still be there and
/// live, the password it verified unchanged, and `proof` right; then the pending login
/// is spent and the session starts with `amr: ["pwd","otp"]` and the password step's
/// `auth_time`. A wrong code counts against the pending login (the fifth ends it) and
/// against the account's consecutive count, and is recorded as `mfa_failed`.
/// `known_device`: the request carries a device token of this account.
///
/// Both counts are taken before the code is checked, under row locks held to the
/// commit (the factor's row, then the pending login's), so however many instances check
/// codes at once, none checks a sixth code on one `mfa_token` or a 101st in a row from
/// unknown devices.
#[allow(clippy::too_many_arguments)]
pub async fn finish_login(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    sealer: &dyn SecretSealer,
    token_hash: &TokenHash,
    proof: &Proof,
    new: &NewSession,
    known_device: bool,
) -> anyhow::Result<FinishOutcome> {
    let Some(pending) = tx.mfa_login_by_hash(token_hash).await? else {
        return Ok(FinishOutcome::Dead);
    };
    if pending.expires_at <= now || pending.failures >= MAX_CODE_FAILURES {
        tx.delete_mfa_login(token_hash).await?;
        return Ok(FinishOutcome::Dead);
    }
    let user = tx.user_by_id(&pending.user_id).await?;
    let Some(user) = user.filter(|u| {
        u.is_enabled() && password_fingerprint(&u.password_hash) == pending.password_fingerprint
    }) else {
        tx.delete_mfa_login(token_hash).await?;
        return Ok(FinishOutcome::Dead);
    };
    let in_a_row = tx
        .mfa_code_failures_for_update(&pending.user_id)
        .await?
        .unwrap_or(0);
    if in_a_row >= MAX_CONSECUTIVE_CODE_FAILURES && !known_device {
        if let Proof::Totp(_) = proof {
            return Ok(FinishOutcome::CodesLocked);
        }
    }
    let Some(failures) = tx
        .reserve_mfa_login_check(token_hash, MAX_CODE_FAILURES)
        .await?
    else {
        tx.delete_mfa_login(token_hash).await?;
        return Ok(FinishOutcome::Dead);
    };
    let who = AccountOwner {
        user_id: &pending.user_id,
        session_id: None,
        client_id: &pending.client_id,
        ctx: &new.ctx,
    };
    if !spend(tx, now, sealer, &pending.user_id, proof).await? {
        tx.add_mfa_code_failure(&pending.user_id).await?;
        record_failure(tx, now, &who, "login", proof.method()).await?;
        let ended = failures >= MAX_CODE_FAILURES;
        if ended {
            tx.delete_mfa_login(token_hash).await?;
        }
        return Ok(FinishOutcome::WrongCode { ended });
    }
    if !tx.delete_mfa_login(token_hash).await? {
        return Ok(FinishOutcome::Dead);
    }
    if in_a_row > 0 {
        tx.reset_mfa_code_failures(&pending.user_id).await?;
    }
    if let Proof::Recovery(_) = proof {
        tx.insert_event(now, &who.event(EventKind::RecoveryCodeUsed))
            .await?;
    }
    let outcome =
        sessions::create_login_session(tx, now, rng, tagger, new, &user.password_hash).await?;
    Ok(FinishOutcome::Finished(outcome))
}

/// A new pending login for a user whose password was right.
pub fn pending_login(
    token_hash: TokenHash,
    now: Millis,
    user_password_hash: &str,
    new: &NewSession,
    audiences: Vec<String>,
    browser: bool,
) -> PendingLogin {
    PendingLogin {
        token_hash,
        user_id: new.user_id.clone(),
        client_id: new.client_id.clone(),
        scope: new.scope.clone(),
        audiences,
        remember_me: new.remember_me,
        password_fingerprint: password_fingerprint(user_password_hash),
        auth_time: now,
        expires_at: now + MFA_TOKEN_TTL_MS,
        failures: 0,
        browser,
        idp: new.idp.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::email::AccountSecret;
    use proptest::prelude::*;

    proptest! {
        /// The `mfa_token` parser (shared with account tokens): exactly 43 base64url
        /// characters that decode to 32 bytes; anything else cannot have been issued and
        /// is refused before a lookup. Never panics.
        #[test]
        fn mfa_token_parser_accepts_only_the_issued_shape(s in "[A-Za-z0-9_-]{40,46}|\\PC{0,64}") {
            use base64::Engine;
            let parsed = AccountSecret::parse(&s);
            let ok = s.len() == 43
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&s)
                    .is_ok_and(|b| b.len() == 32);
            prop_assert_eq!(parsed.is_some(), ok);
        }

        #[test]
        fn every_issued_mfa_token_parses_back(seed in any::<u8>()) {
            let _ = seed;
            let t = AccountSecret::generate(&ring::rand::SystemRandom::new()).unwrap();
            prop_assert_eq!(AccountSecret::parse(t.expose()).map(|p| p.hash()), Some(t.hash()));
        }
    }

    #[test]
    fn the_password_fingerprint_changes_with_the_hash() {
        assert_ne!(
            password_fingerprint("$argon2id$a"),
            password_fingerprint("$argon2id$b")
        );
        assert_eq!(password_fingerprint("x"), password_fingerprint("x"));
    }
}

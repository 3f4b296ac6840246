//! Passkeys (docs/contract.md "Passkeys"): the registered credentials and the ceremonies
//! in flight. The WebAuthn structures themselves (a credential, a ceremony's state) are
//! opaque JSON here: `service::passkeys` makes and reads them with webauthn-rs, and the
//! store keeps them as they are.

use ring::rand::SystemRandom;

use crate::clock::Millis;
use crate::domain::repository::Tx;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::{PasskeyId, TokenHash, TokenTagger, UserId};

/// How long a ceremony may take between its start and its finish.
pub const CEREMONY_TTL_MS: Millis = 5 * 60 * 1000;

/// A passkey a user registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The WebAuthn credential id: what a discoverable assertion names (unique).
    pub credential_id: Vec<u8>,
    /// webauthn-rs's `Passkey`, serialised (public key, algorithm, counter).
    pub credential: String,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    /// The authenticator's last signature counter; 0 for authenticators that keep none.
    pub counter: u32,
}

/// What a ceremony is for: it finishes only as what it started as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Adding a passkey to a signed-in user.
    Register,
    /// Signing in with a discoverable passkey, nobody named first.
    Login,
    /// A passkey as the second step after a password.
    SecondFactor,
}

impl CeremonyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Login => "login",
            Self::SecondFactor => "second_factor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Register, Self::Login, Self::SecondFactor]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a ceremony started: a JSON one finishes only in JSON mode, a browser one only
/// in browser mode (the cookie and CSRF rules differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyMode {
    Json,
    Browser,
}

impl CeremonyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Browser => "browser",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Json, Self::Browser]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A WebAuthn ceremony between its start and its finish, kept in the store so that any
/// instance can finish it. Only the hash of its token is kept; taking it deletes it, so
/// it is used once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub token_hash: TokenHash,
    pub kind: CeremonyKind,
    pub mode: CeremonyMode,
    /// The user it is for (registration, second factor); none for a passwordless login.
    pub user_id: Option<UserId>,
    /// webauthn-rs's ceremony state, serialised (the challenge and what it allows).
    pub state: String,
    pub expires_at: Millis,
}

impl Ceremony {
    /// Whether a ceremony just taken may finish as `kind` in `mode` at `now`.
    pub fn finishes(&self, kind: CeremonyKind, mode: CeremonyMode, now: Millis) -> bool {
        self.kind == kind && self.mode == mode && now < self.expires_at
    }
}

/// A verified assertion, to record: the credential as webauthn-rs updated it, and its
/// new signature counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyUse {
    pub passkey_id: PasskeyId,
    pub credential: String,
    pub counter: u32,
}

/// WebAuthn Level 3 §7.2 step 22: once the authenticator keeps a counter, one that did
/// not go up suggests a cloned authenticator (synced passkeys keep 0 and are exempt).
pub fn counter_regressed(stored: u32, presented: u32) -> bool {
    stored > 0 && presented <= stored
}

pub enum PasskeyLoginOutcome {
    /// The passkey was removed while its ceremony ran.
    Gone,
    Session(LoginOutcome),
}

/// A passwordless login whose assertion verified: the passkey's use is recorded and the
/// session starts (`new.amr` says how), in one commit.
pub async fn finish_login(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    used: &PasskeyUse,
    new: &NewSession,
) -> anyhow::Result<PasskeyLoginOutcome> {
    if !tx
        .record_passkey_use(&used.passkey_id, &used.credential, used.counter, now)
        .await?
    {
        return Ok(PasskeyLoginOutcome::Gone);
    }
    let outcome = sessions::create_session(tx, now, rng, tagger, new).await?;
    Ok(PasskeyLoginOutcome::Session(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceremony() -> Ceremony {
        Ceremony {
            token_hash: [7; 32],
            kind: CeremonyKind::Login,
            mode: CeremonyMode::Json,
            user_id: None,
            state: "{}".into(),
            expires_at: 1_000,
        }
    }

    #[test]
    fn a_ceremony_finishes_only_as_its_kind_in_its_mode_before_it_expires() {
        let c = ceremony();
        assert!(c.finishes(CeremonyKind::Login, CeremonyMode::Json, 999));
        assert!(!c.finishes(CeremonyKind::Login, CeremonyMode::Json, 1_000));
        assert!(!c.finishes(CeremonyKind::Login, CeremonyMode::Browser, 0));
        assert!(!c.finishes(CeremonyKind::SecondFactor, CeremonyMode::Json, 0));
    }

    #[test]
    fn a_counter_that_does_not_go_up_is_a_regression_unless_both_are_zero() {
        assert!(!counter_regressed(0, 0));
        assert!(!counter_regressed(0, 1));
        assert!(!counter_regressed(4, 5));
        assert!(counter_regressed(5, 5));
        assert!(counter_regressed(5, 3));
        assert!(counter_regressed(5, 0));
    }

    #[test]
    fn kinds_and_modes_read_back_what_they_store() {
        for k in [
            CeremonyKind::Register,
            CeremonyKind::Login,
            CeremonyKind::SecondFactor,
        ] {
            assert_eq!(CeremonyKind::parse(k.as_str()), Some(k));
        }
        for m in [CeremonyMode::Json, CeremonyMode::Browser] {
            assert_eq!(CeremonyMode::parse(m.as_str()), Some(m));
        }
    }
}

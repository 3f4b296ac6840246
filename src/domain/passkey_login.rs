//! A passwordless passkey login's write (docs/contract.md "Passkeys"): the passkey's use
//! and the new session in one commit. Apart from `domain::passkeys`, whose entities the
//! store's traits name, so that the store does not depend on sessions.

use ring::rand::SystemRandom;

use crate::clock::Millis;
use crate::domain::passkeys::PasskeyUse;
use crate::domain::repository::Tx;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::TokenTagger;

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

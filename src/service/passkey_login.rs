//! Signing in with a passkey (docs/contract.md "Passkeys"; WebAuthn Level 3 §7.2):
//! without a password, with a discoverable credential so that nothing names the user
//! first (`/login/passkey/*`, `/browser/login/passkey/*`), and as the second step after a
//! password (`/login/mfa/passkey/start`, then `/login/mfa`). Failed assertions count in
//! the login throttle like wrong passwords and codes (`password_check`).

use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PublicKeyCredential, Uuid, WebauthnError,
};
use webauthn_rs::Webauthn;
use webauthn_rs_proto::PublicKeyCredentialRequestOptions;

use super::issue::{audiences_for, resolve_client, Issued, Issuing};
use super::login::{issue_login, Origin};
use super::passkeys::{credential_of, dead_ceremony, parse_credential, take_ceremony, Started};
use super::password_check::{record, Purpose};
use super::Error;
use crate::domain::email::AccountSecret;
use crate::domain::mfa::MAX_CODE_FAILURES;
use crate::domain::model::{ClientContext, NewEvent};
use crate::domain::passkey_login::{self as login_write, PasskeyLoginOutcome};
use crate::domain::passkeys::{
    counter_regressed, Ceremony, CeremonyKind, CeremonyMode, PasskeyUse, StoredPasskey,
    CEREMONY_TTL_MS,
};
use crate::domain::sessions::{LoginOutcome, NewSession};
use crate::domain::{AuthMethod, EventKind, Scope, UserId, Username};

fn webauthn<'a>(deps: &Issuing<'a>) -> Result<&'a Webauthn, Error> {
    deps.passkeys
        .ok_or_else(|| Error::NotFound("passkeys are not configured on this server".into()))
}

fn mode_of(browser: bool) -> CeremonyMode {
    if browser {
        CeremonyMode::Browser
    } else {
        CeremonyMode::Json
    }
}

fn not_verified() -> Error {
    Error::InvalidGrant("the passkey's answer does not verify; start again".into())
}

async fn store_ceremony(
    deps: &Issuing<'_>,
    kind: CeremonyKind,
    mode: CeremonyMode,
    user_id: Option<UserId>,
    state: String,
) -> Result<AccountSecret, Error> {
    let ceremony = AccountSecret::generate(deps.rng.as_ref()).map_err(Error::internal)?;
    let row = Ceremony {
        token_hash: ceremony.hash(),
        kind,
        mode,
        user_id,
        state,
        expires_at: deps.gate.now() + CEREMONY_TTL_MS,
    };
    deps.gate
        .store
        .write(async move |tx| tx.insert_ceremony(&row).await)
        .await?;
    Ok(ceremony)
}

/// `POST /login/passkey/start` (`browser`: `/browser/login/passkey/start`): a ceremony
/// bound to its mode, and request options with no `allowCredentials` (the authenticator
/// offers its discoverable credentials for this RP ID) and user verification required.
#[tracing::instrument(skip_all)]
pub async fn start_login(
    deps: &Issuing<'_>,
    client_id: Option<&str>,
    browser: bool,
) -> Result<Started<PublicKeyCredentialRequestOptions>, Error> {
    let webauthn = webauthn(deps)?;
    resolve_client(deps.settings, client_id)?;
    let (options, state) = webauthn
        .start_discoverable_authentication()
        .map_err(Error::internal)?;
    let state = serde_json::to_string(&state).map_err(Error::internal)?;
    let ceremony = store_ceremony(deps, CeremonyKind::Login, mode_of(browser), None, state).await?;
    Ok(Started {
        ceremony,
        options: options.public_key,
    })
}

/// The finish of a passwordless login.
pub struct PasskeyLogin {
    pub ceremony: String,
    pub credential: serde_json::Value,
    pub client_id: Option<String>,
    pub remember_me: Option<bool>,
    /// The device token of an earlier login to the account (the body's, or the device
    /// cookie's in browser mode): a trusted client for the throttle, as at `/login`.
    pub device_token: Option<String>,
    pub browser: bool,
    /// The scope asked for, already allowed for the client (latchkey's sign-in page
    /// carries its authorization request's); none at the JSON routes.
    pub scope: Option<String>,
}

/// An assertion that verified, or why not.
enum Checked {
    Verified(PasskeyUse),
    NotVerified,
    /// WebAuthn Level 3 §7.2 step 22: the counter did not go up.
    CloneSuspected {
        presented: Option<u32>,
    },
}

/// What webauthn-rs answered, checked against the stored passkey: the counter must go
/// up (a cloned authenticator otherwise), and the user must have been verified (the
/// options require it; checked again, as the login counts it as a second factor).
fn check(stored: &StoredPasskey, result: Result<AuthenticationResult, WebauthnError>) -> Checked {
    let result = match result {
        Ok(r) => r,
        // webauthn-rs also keeps the counter inside the credential and refuses first.
        Err(WebauthnError::CredentialPossibleCompromise) => {
            return Checked::CloneSuspected { presented: None }
        }
        Err(e) => {
            tracing::info!(error = %e, "passkey assertion refused");
            return Checked::NotVerified;
        }
    };
    if counter_regressed(stored.counter, result.counter()) {
        return Checked::CloneSuspected {
            presented: Some(result.counter()),
        };
    }
    if !result.user_verified() || result.cred_id().as_slice() != stored.credential_id {
        return Checked::NotVerified;
    }
    let Ok(mut passkey) = credential_of(stored) else {
        return Checked::NotVerified;
    };
    passkey.update_credential(&result);
    match serde_json::to_string(&passkey) {
        Ok(credential) => Checked::Verified(PasskeyUse {
            passkey_id: stored.id.clone(),
            credential,
            counter: result.counter(),
        }),
        Err(_) => Checked::NotVerified,
    }
}

fn clone_event(
    stored: &StoredPasskey,
    client_id: &str,
    ctx: &ClientContext,
    presented: Option<u32>,
) -> NewEvent {
    NewEvent::new(EventKind::PasskeyCloneSuspected)
        .user(&stored.user_id)
        .client(client_id)
        .from(ctx)
        .detail(serde_json::json!({
            "passkey_id": stored.id,
            "stored_counter": stored.counter,
            "presented_counter": presented,
        }))
}

/// `POST /login/passkey/finish` (`/browser/login/passkey/finish`): the ceremony (spent
/// whatever the outcome, and only in its mode), the passkey the assertion names (its
/// user handle must be its user's), the throttle of that account, then the signature
/// and counter. A session with `amr: ["hwk","user","mfa"]` (RFC 8176 §2). `allowed`
/// vets the client before anything is spent (browser mode: the Origin).
#[tracing::instrument(skip_all)]
pub async fn finish_login(
    deps: &Issuing<'_>,
    input: PasskeyLogin,
    from: Origin,
    allowed: &dyn Fn(&str) -> Result<(), Error>,
) -> Result<Issued, Error> {
    let webauthn = webauthn(deps)?;
    let client = resolve_client(deps.settings, input.client_id.as_deref())?.clone();
    allowed(&client.id)?;
    let credential: PublicKeyCredential = parse_credential(input.credential)?;
    let audiences = audiences_for(deps.settings, &client, &[])?;
    let ceremony = take_ceremony(deps.gate.store, &input.ceremony).await?;
    let now = deps.gate.now();
    let ceremony = ceremony
        .filter(|c| c.finishes(CeremonyKind::Login, mode_of(input.browser), now))
        .ok_or_else(dead_ceremony)?;
    let state: DiscoverableAuthentication =
        serde_json::from_str(&ceremony.state).map_err(Error::internal)?;
    // The user handle is not signed: it only finds the passkey, whose own user must be
    // the one it names; the signature then proves the passkey.
    let (handle, cred_id) = webauthn
        .identify_discoverable_authentication(&credential)
        .map_err(|_| not_verified())?;
    let cred_id = cred_id.to_vec();
    let found = deps
        .gate
        .store
        .read(async move |tx| {
            let Some(p) = tx.passkey_by_credential_id(&cred_id).await? else {
                return Ok(None);
            };
            Ok(tx.user_by_id(&p.user_id).await?.map(|u| (p, u)))
        })
        .await?;
    let Some((stored, user)) = found.filter(|(p, u)| {
        Uuid::parse_str(p.user_id.as_str()).ok() == Some(handle) && u.is_enabled()
    }) else {
        return Err(not_verified());
    };
    let account_key = Username::lookup_key(&user.username);
    let admitted = deps
        .admit_login_step(
            &account_key,
            input.device_token.as_deref(),
            Purpose::Login,
            &client.id,
            &from,
        )
        .await?;
    let passkey: Passkey = credential_of(&stored)?;
    let result = webauthn.finish_discoverable_authentication(
        &credential,
        state,
        &[DiscoverableKey::from(&passkey)],
    );
    let used = match check(&stored, result) {
        Checked::Verified(used) => used,
        refused => {
            admitted.code_failed().await?;
            let event = match refused {
                Checked::CloneSuspected { presented } => {
                    clone_event(&stored, &client.id, &from.ctx, presented)
                }
                _ => NewEvent::new(EventKind::LoginFailed)
                    .user(&user.id)
                    .client(&client.id)
                    .from(&from.ctx)
                    .detail(serde_json::json!({ "purpose": "login", "method": "passkey" })),
            };
            record(deps.gate, event).await?;
            return Err(not_verified());
        }
    };
    let remember_me = input.remember_me.unwrap_or(true);
    let new = NewSession {
        user_id: user.id.clone(),
        client_id: client.id.clone(),
        scope: Scope::parse(input.scope.as_deref().unwrap_or(""))
            .map_err(|e| Error::InvalidScope(e.into()))?,
        remember_me,
        lifetimes: deps.settings.lifetimes(Some(&client), remember_me),
        max_per_user: deps.settings.session.max_per_user,
        limit_policy: deps.settings.session.limit_policy,
        ctx: from.ctx,
        // RFC 8176 §2: a key held (`hwk`), the user verified by it (`user`), so two
        // factors (`mfa`).
        amr: vec![AuthMethod::Hwk, AuthMethod::User, AuthMethod::Mfa],
        auth_time: None,

        idp: None,
    };
    let (rng, keys) = (deps.rng.clone(), deps.sealer.clone());
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            login_write::finish_login(tx, now, &rng, keys.as_ref(), &used, &new).await
        })
        .await?;
    let PasskeyLoginOutcome::Session(outcome) = outcome else {
        return Err(not_verified());
    };
    admitted.succeeded().await?;
    drop(admitted);
    deps.gate.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    issue_login(deps, &client, outcome, audiences, &account_key, now)
}

fn dead_token() -> Error {
    Error::InvalidGrant("the mfa_token is invalid, expired or already used; sign in again".into())
}

/// `POST /login/mfa/passkey/start` `{mfa_token}`: a ceremony for the pending login's
/// user, in its login's mode, allowing only that user's passkeys. The `mfa_token` is not
/// spent: `/login/mfa` (or `/browser/login/mfa`) finishes with both.
#[tracing::instrument(skip_all)]
pub async fn start_second_factor(
    deps: &Issuing<'_>,
    mfa_token: &str,
) -> Result<Started<PublicKeyCredentialRequestOptions>, Error> {
    let webauthn = webauthn(deps)?;
    let hash = AccountSecret::parse(mfa_token)
        .ok_or_else(dead_token)?
        .hash();
    let now = deps.gate.now();
    let found = deps
        .gate
        .store
        .read(async move |tx| {
            let Some(p) = tx.mfa_login_by_hash(&hash).await? else {
                return Ok(None);
            };
            let keys = tx.passkeys_of(&p.user_id).await?;
            Ok(Some((p, keys)))
        })
        .await?;
    let Some((pending, stored)) =
        found.filter(|(p, _)| p.expires_at > now && p.failures < MAX_CODE_FAILURES)
    else {
        return Err(dead_token());
    };
    if stored.is_empty() {
        return Err(Error::InvalidRequest(
            "this account has no passkey: finish with a code".into(),
        ));
    }
    let creds = stored
        .iter()
        .map(credential_of)
        .collect::<Result<Vec<_>, _>>()?;
    let (options, state) = webauthn
        .start_passkey_authentication(&creds)
        .map_err(Error::internal)?;
    let state = serde_json::to_string(&state).map_err(Error::internal)?;
    let ceremony = store_ceremony(
        deps,
        CeremonyKind::SecondFactor,
        mode_of(pending.browser),
        Some(pending.user_id),
        state,
    )
    .await?;
    Ok(Started {
        ceremony,
        options: options.public_key,
    })
}

/// A passkey as the second step: the ceremony (spent; it must be a second-factor one for
/// `user_id`, in this mode) and the assertion, checked against the user's passkeys. A
/// dead ceremony is refused as such; an assertion that does not verify (or whose counter
/// did not go up, recorded as `passkey_clone_suspected`) is a wrong proof, counted like
/// a wrong code by the caller.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn second_factor_proof(
    deps: &Issuing<'_>,
    ceremony: &str,
    credential: &PublicKeyCredential,
    user_id: &UserId,
    browser: bool,
    client_id: &str,
    ctx: &ClientContext,
) -> Result<Option<PasskeyUse>, Error> {
    let webauthn = webauthn(deps)?;
    let taken = take_ceremony(deps.gate.store, ceremony).await?;
    let now = deps.gate.now();
    let ceremony = taken
        .filter(|c| c.finishes(CeremonyKind::SecondFactor, mode_of(browser), now))
        .filter(|c| c.user_id.as_ref() == Some(user_id))
        .ok_or_else(dead_ceremony)?;
    let state: PasskeyAuthentication =
        serde_json::from_str(&ceremony.state).map_err(Error::internal)?;
    let id = user_id.clone();
    let mine = deps
        .gate
        .store
        .read(async move |tx| tx.passkeys_of(&id).await)
        .await?;
    let named = credential.get_credential_id();
    let Some(stored) = mine.iter().find(|p| p.credential_id == named) else {
        return Ok(None);
    };
    let result = webauthn.finish_passkey_authentication(credential, &state);
    match check(stored, result) {
        Checked::Verified(used) => Ok(Some(used)),
        Checked::NotVerified => Ok(None),
        Checked::CloneSuspected { presented } => {
            record(deps.gate, clone_event(stored, client_id, ctx, presented)).await?;
            Ok(None)
        }
    }
}

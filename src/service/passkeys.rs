//! Passkeys (docs/contract.md "Passkeys"; WebAuthn Level 3): adding one to the signed-in
//! user, listing, renaming and removing them. webauthn-rs makes and checks every
//! ceremony; its state waits in the store (`webauthn_ceremonies`) between the start and
//! the finish, so any instance can finish what another started, once.

use std::sync::Arc;

use serde_json::json;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyRegistration, RegisterPublicKeyCredential, Uuid,
};
use webauthn_rs::Webauthn;
use webauthn_rs_proto::{ResidentKeyRequirement, UserVerificationPolicy};

use super::auth::{require_step_up_if_enrolled, Authenticated};
use super::Error;
use crate::clock::Millis;
use crate::config::MfaSettings;
use crate::domain::email::AccountSecret;
use crate::domain::identities;
use crate::domain::model::{ClientContext, NewEvent};
use crate::domain::passkeys::{
    Ceremony, CeremonyKind, CeremonyMode, StoredPasskey, CEREMONY_TTL_MS,
};
use crate::domain::{EventKind, PasskeyId, UserId};
use crate::state::AppState;
use crate::store::Store;

/// The longest passkey name kept (characters).
const MAX_NAME_CHARS: usize = 64;

/// What the passkey use-cases need.
pub struct Ceremonies<'a> {
    pub store: &'a Store,
    pub mfa: &'a MfaSettings,
    pub webauthn: Option<&'a Webauthn>,
    pub rng: &'a Arc<ring::rand::SystemRandom>,
    pub now: Millis,
}

impl<'a> Ceremonies<'a> {
    pub fn of(state: &'a AppState) -> Self {
        Self {
            store: &state.store,
            mfa: &state.settings.mfa,
            webauthn: state.passkeys.as_deref(),
            rng: &state.rng,
            now: state.now(),
        }
    }

    fn webauthn(&self) -> Result<&'a Webauthn, Error> {
        self.webauthn
            .ok_or_else(|| Error::NotFound("passkeys are not configured on this server".into()))
    }
}

/// A ceremony started: the token that finishes it and the options for
/// `navigator.credentials.create()`.
pub struct Started<T> {
    pub ceremony: AccountSecret,
    pub options: T,
}

pub(super) fn dead_ceremony() -> Error {
    Error::InvalidGrant("the ceremony is invalid, expired or already used; start again".into())
}

pub(super) fn parse_credential<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, Error> {
    serde_json::from_value(value)
        .map_err(|_| Error::InvalidRequest("credential is not a WebAuthn credential".into()))
}

pub(super) fn credential_of(stored: &StoredPasskey) -> Result<Passkey, Error> {
    serde_json::from_str(&stored.credential).map_err(Error::internal)
}

/// Takes (deletes) the ceremony `token` names, whatever comes of it: a ceremony is
/// spent by every finish attempt. The caller checks what it may finish as.
pub(super) async fn take_ceremony(store: &Store, token: &str) -> Result<Option<Ceremony>, Error> {
    let Some(token) = AccountSecret::parse(token) else {
        return Ok(None);
    };
    let hash = token.hash();
    Ok(store
        .write(async move |tx| tx.take_ceremony(&hash).await)
        .await?)
}

/// `POST /me/passkeys/register/start`: step-up for a user with a factor; options asking
/// for a discoverable credential with user verification, excluding the user's passkeys.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn start_registration(
    deps: &Ceremonies<'_>,
    auth: &Authenticated,
) -> Result<Started<CreationChallengeResponse>, Error> {
    let webauthn = deps.webauthn()?;
    require_step_up_if_enrolled(deps.store, deps.mfa, auth, deps.now).await?;
    let user_id = auth.user.id.clone();
    let existing = deps
        .store
        .read(async move |tx| tx.passkeys_of(&user_id).await)
        .await?;
    let exclude = existing
        .iter()
        .map(|p| credential_of(p).map(|c| c.cred_id().clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let handle = Uuid::parse_str(auth.user.id.as_str()).map_err(Error::internal)?;
    let (mut options, state) = webauthn
        .start_passkey_registration(
            handle,
            &auth.user.username,
            &auth.user.username,
            Some(exclude),
        )
        .map_err(Error::internal)?;
    // Discoverable, so that signing in names nobody first (docs/contract.md "Passkeys");
    // webauthn-rs 0.5 only prefers it for passkeys.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;
        selection.user_verification = UserVerificationPolicy::Required;
    }
    let ceremony = AccountSecret::generate(deps.rng.as_ref()).map_err(Error::internal)?;
    let row = Ceremony {
        token_hash: ceremony.hash(),
        kind: CeremonyKind::Register,
        mode: CeremonyMode::Json,
        user_id: Some(auth.user.id.clone()),
        state: serde_json::to_string(&state).map_err(Error::internal)?,
        expires_at: deps.now + CEREMONY_TTL_MS,
    };
    deps.store
        .write(async move |tx| tx.insert_ceremony(&row).await)
        .await?;
    Ok(Started { ceremony, options })
}

/// `POST /me/passkeys/register/finish`: the ceremony (spent whatever the outcome), the
/// authenticator's answer, an optional name.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn finish_registration(
    deps: &Ceremonies<'_>,
    auth: &Authenticated,
    ceremony: &str,
    credential: serde_json::Value,
    name: Option<String>,
    ctx: &ClientContext,
) -> Result<StoredPasskey, Error> {
    let webauthn = deps.webauthn()?;
    let name = passkey_name(name)?;
    let credential: RegisterPublicKeyCredential = parse_credential(credential)?;
    let ceremony = take_ceremony(deps.store, ceremony)
        .await?
        .filter(|c| c.finishes(CeremonyKind::Register, CeremonyMode::Json, deps.now))
        .filter(|c| c.user_id.as_ref() == Some(&auth.user.id))
        .ok_or_else(dead_ceremony)?;
    let state: PasskeyRegistration =
        serde_json::from_str(&ceremony.state).map_err(Error::internal)?;
    let passkey = webauthn
        .finish_passkey_registration(&credential, &state)
        .map_err(|e| {
            tracing::info!(error = %e, "passkey registration refused");
            Error::InvalidGrant("the authenticator's answer does not verify".into())
        })?;
    let stored = StoredPasskey {
        id: PasskeyId::new_random(),
        user_id: auth.user.id.clone(),
        credential_id: passkey.cred_id().to_vec(),
        credential: serde_json::to_string(&passkey).map_err(Error::internal)?,
        name,
        created_at: deps.now,
        last_used_at: None,
        counter: 0,
    };
    let row = stored.clone();
    let event = NewEvent::about_session(EventKind::PasskeyAdded, &auth.session, ctx)
        .detail(json!({ "passkey_id": stored.id, "name": stored.name }));
    let now = deps.now;
    let added = deps
        .store
        .write(async move |tx| {
            if tx
                .passkey_by_credential_id(&row.credential_id)
                .await?
                .is_some()
            {
                return Ok(false);
            }
            tx.insert_passkey(&row).await?;
            tx.insert_event(now, &event).await?;
            Ok(true)
        })
        .await?;
    if !added {
        return Err(Error::Conflict("this passkey is already registered".into()));
    }
    Ok(stored)
}

fn passkey_name(name: Option<String>) -> Result<String, Error> {
    let name = name.map(|n| n.trim().to_owned()).unwrap_or_default();
    if name.is_empty() {
        return Ok("Passkey".into());
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(format!(
            "name must be at most {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    Ok(name)
}

/// `GET /me/passkeys`, oldest first.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn list(store: &Store, auth: &Authenticated) -> Result<Vec<StoredPasskey>, Error> {
    let user_id = auth.user.id.clone();
    Ok(store
        .read(async move |tx| tx.passkeys_of(&user_id).await)
        .await?)
}

/// `GET /admin/users/{id}/passkeys`: a user's passkeys, oldest first (404 for an unknown
/// user).
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn of_user(store: &Store, user_id: UserId) -> Result<Vec<StoredPasskey>, Error> {
    store
        .read(async move |tx| {
            if tx.user_by_id(&user_id).await?.is_none() {
                return Ok(None);
            }
            Ok(Some(tx.passkeys_of(&user_id).await?))
        })
        .await?
        .ok_or_else(super::sessions::no_such_user)
}

fn no_such_passkey() -> Error {
    Error::NotFound("no such passkey".into())
}

/// `PATCH /me/passkeys/{id}` `{name}`.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn rename(
    store: &Store,
    auth: &Authenticated,
    id: &str,
    name: Option<String>,
) -> Result<StoredPasskey, Error> {
    let id = PasskeyId::parse(id).ok_or_else(no_such_passkey)?;
    if name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(Error::InvalidRequest("name is required".into()));
    }
    let name = passkey_name(name)?;
    let user_id = auth.user.id.clone();
    let renamed = store
        .write(async move |tx| {
            if !tx.rename_passkey(&user_id, &id, &name).await? {
                return Ok(None);
            }
            let mine = tx.passkeys_of(&user_id).await?;
            Ok(mine.into_iter().find(|p| p.id == id))
        })
        .await?;
    renamed.ok_or_else(no_such_passkey)
}

/// `DELETE /me/passkeys/{id}`: step-up for a user with a factor.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn remove(
    deps: &Ceremonies<'_>,
    auth: &Authenticated,
    id: &str,
    ctx: &ClientContext,
) -> Result<(), Error> {
    require_step_up_if_enrolled(deps.store, deps.mfa, auth, deps.now).await?;
    let id = PasskeyId::parse(id).ok_or_else(no_such_passkey)?;
    let user_id = auth.user.id.clone();
    let event = NewEvent::about_session(EventKind::PasskeyRemoved, &auth.session, ctx)
        .detail(json!({ "passkey_id": id }));
    let now = deps.now;
    let removed = deps
        .store
        .write(async move |tx| {
            let Some(user) = tx.user_by_id(&user_id).await? else {
                return Ok(None);
            };
            if !tx.passkeys_of(&user_id).await?.iter().any(|p| p.id == id) {
                return Ok(None);
            }
            // A passkey may be the only way into an account made through an identity
            // provider (no password) whose identities were unlinked.
            if identities::ways_in(tx, &user).await? <= 1 {
                return Ok(Some(false));
            }
            tx.delete_passkey(&user_id, &id).await?;
            tx.insert_event(now, &event).await?;
            Ok(Some(true))
        })
        .await?;
    match removed {
        Some(true) => Ok(()),
        Some(false) => Err(Error::Conflict(
            "this passkey is the account's last way to sign in: set a password or add \
             another passkey first"
                .into(),
        )),
        None => Err(no_such_passkey()),
    }
}

//! Accounts: signing up, changing the password, erasure, and an operator disabling one.

use super::auth::Authenticated;
use super::login::Origin;
use super::password_check::hash_error;
use super::password_check::{self, session_device, Attempt, Gate, Purpose};
use super::Error;
use crate::clock::Millis;
use crate::config::{MfaSettings, Registration, Settings};
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::model::{ClientContext, User};
use crate::domain::{Password, PasswordError, UserId, Username};
use crate::store::Store;

pub fn password_error(e: PasswordError) -> Error {
    Error::InvalidRequest(e.to_string())
}

/// `POST /signup`: 409 if the (case-insensitive) name is taken.
#[tracing::instrument(skip_all)]
pub async fn signup(
    gate: Gate<'_>,
    settings: &Settings,
    username: &str,
    password: String,
) -> Result<User, Error> {
    if settings.registration == Registration::Closed {
        return Err(Error::Forbidden("registration is closed".into()));
    }
    // Lengths are checked here, before any hashing.
    let username = Username::parse(username).map_err(|e| Error::InvalidRequest(e.into()))?;
    let password = Password::parse(password).map_err(password_error)?;
    let hash = gate.hasher.hash(password).await.map_err(hash_error)?;
    create_user(gate.store, gate.now(), username, hash, Vec::new()).await
}

/// A new account with `roles` and an already hashed password (`/signup`, `latchkey
/// users add`): 409 if the (case-insensitive) name is taken or confusable.
#[tracing::instrument(skip_all)]
pub async fn create_user(
    store: &Store,
    now: Millis,
    username: Username,
    password_hash: String,
    roles: Vec<String>,
) -> Result<User, Error> {
    let outcome = store
        .write(async move |tx| {
            accounts::create_user(tx, now, &username, password_hash, roles).await
        })
        .await?;
    match outcome {
        SignupOutcome::Created(user) => Ok(user),
        SignupOutcome::Taken => Err(Error::Conflict("that username is taken".into())),
        SignupOutcome::Confusable => Err(Error::Conflict(
            "that username looks like an existing one; choose another".into(),
        )),
    }
}

/// The account named `name` (any case), for the operator's commands; `NotFound` if none.
#[tracing::instrument(skip_all)]
pub async fn user_named(store: &Store, name: &str) -> Result<User, Error> {
    let key = Username::lookup_key(name);
    store
        .read(async move |tx| tx.user_by_username_key(&key).await)
        .await?
        .ok_or_else(super::sessions::no_such_user)
}

/// Every account, for the operator.
#[tracing::instrument(skip_all)]
pub async fn all_users(store: &Store) -> Result<Vec<User>, Error> {
    Ok(store.read(async |tx| tx.all_users().await).await?)
}

/// Checks the caller's password (ASVS v5 6.2.3: sensitive changes need it); 401 if
/// wrong. Through the same throttling, events and queue as a login
/// (`service/password_check.rs`); the session counts as the trusted client, so an
/// attacker flooding `/login` does not stop its owner changing the password.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub(crate) async fn confirm_password(
    gate: Gate<'_>,
    auth: &Authenticated,
    given: Password,
    purpose: Purpose,
    from: Origin,
) -> Result<(), Error> {
    let attempt = Attempt {
        account_key: Username::lookup_key(&auth.user.username),
        ip: from.ip,
        device: Some(session_device(&auth.session.id)),
        purpose,
        client_id: auth.session.client_id.clone(),
        session_id: Some(auth.session.id.clone()),
        ctx: from.ctx,
    };
    password_check::admit(gate, attempt)
        .await?
        .check(given, Some(&auth.user))
        .await
}

/// `POST /me/password`: needs the current password; ends every other session.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn change_password(
    gate: Gate<'_>,
    mfa: &MfaSettings,
    auth: &Authenticated,
    current: String,
    new: String,
    from: Origin,
) -> Result<(), Error> {
    // RFC 9470: a user with a second factor changes the password only from a recent
    // login with it (docs/contract.md "Second factor").
    super::auth::require_step_up_if_enrolled(gate.store, mfa, auth, gate.now()).await?;
    let current = Password::parse_for_login(current).map_err(password_error)?;
    let new = Password::parse(new).map_err(password_error)?;
    let ctx = from.ctx.clone();
    confirm_password(gate, auth, current, Purpose::PasswordChange, from).await?;
    let hash = gate.hasher.hash(new).await.map_err(hash_error)?;
    let now = gate.now();
    let session = auth.session.clone();
    gate.store
        .write(async move |tx| {
            accounts::change_password(
                tx,
                now,
                &session.user_id,
                &session.id,
                &session.client_id,
                &hash,
                &ctx,
            )
            .await
        })
        .await?;
    Ok(())
}

/// `DELETE /me` (GDPR erasure): needs the password; removes the user, sessions, tokens
/// and events, from the database files too (see `accounts::delete_user`), and what the
/// login throttle kept under the name.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn delete_account(
    gate: Gate<'_>,
    mfa: &MfaSettings,
    auth: &Authenticated,
    password: String,
    from: Origin,
) -> Result<(), Error> {
    super::auth::require_step_up_if_enrolled(gate.store, mfa, auth, gate.now()).await?;
    let password = Password::parse_for_login(password).map_err(password_error)?;
    confirm_password(gate, auth, password, Purpose::Erasure, from).await?;
    erase(gate.store, gate.now(), &auth.user.id).await?;
    gate.throttle
        .forget(&Username::lookup_key(&auth.user.username));
    Ok(())
}

/// An operator disables a user and ends their sessions. Not their own account: an
/// admin locking themselves out is a mistake, and the last admin doing it would leave
/// nobody to undo it from the API.
#[tracing::instrument(skip_all, fields(user_id = %user_id, admin_id = %admin.user.id))]
pub async fn disable_user(
    store: &Store,
    now: Millis,
    admin: &Authenticated,
    user_id: UserId,
    ctx: ClientContext,
) -> Result<(), Error> {
    if admin.user.id == user_id {
        return Err(Error::Conflict(
            "an admin cannot disable their own account".into(),
        ));
    }
    disable(store, now, user_id, ctx).await
}

/// Disables a user and ends their sessions (the admin route, `latchkey users disable`);
/// `NotFound` if there is no such user.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn disable(
    store: &Store,
    now: Millis,
    user_id: UserId,
    ctx: ClientContext,
) -> Result<(), Error> {
    let found = store
        .write(async move |tx| accounts::disable_user(tx, now, &user_id, &ctx).await)
        .await?;
    if found {
        Ok(())
    } else {
        Err(super::sessions::no_such_user())
    }
}

/// Erases a user with their sessions, tokens and events, from the database files too
/// (see `accounts::delete_user`). Whether there was such a user.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn erase(store: &Store, now: Millis, user_id: &UserId) -> Result<bool, Error> {
    let id = user_id.clone();
    Ok(store
        .write(async move |tx| accounts::delete_user(tx, now, &id).await)
        .await?)
}

//! Accounts: signing up, changing the password, erasure, and an operator disabling one.

use super::auth::Authenticated;
use crate::config::Registration;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::model::{ClientContext, User};
use crate::domain::{Password, PasswordError, Username};
use crate::error::ApiError;
use crate::passwords::HashError;
use crate::pool::PoolError;
use crate::startup::AppState;

pub fn password_error(e: PasswordError) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

/// A full argon2 queue is 429 (retry shortly), anything else internal.
pub fn hash_error(e: HashError) -> ApiError {
    match e {
        HashError::Pool(PoolError::Full(_)) => ApiError::TooManyRequests {
            retry_after_secs: 1,
        },
        other => ApiError::internal(other),
    }
}

/// `POST /signup`: 409 if the (case-insensitive) name is taken.
pub async fn signup(state: &AppState, username: &str, password: String) -> Result<User, ApiError> {
    if state.settings.registration == Registration::Closed {
        return Err(ApiError::Forbidden("registration is closed".into()));
    }
    // Lengths are checked here, before any hashing.
    let username = Username::parse(username).map_err(|e| ApiError::InvalidRequest(e.into()))?;
    let password = Password::parse(password).map_err(password_error)?;
    let hash = state.hasher.hash(password).await.map_err(hash_error)?;
    let now = state.now();
    let outcome = state
        .store
        .write(async move |tx| accounts::create_user(tx, now, &username, hash, Vec::new()).await)
        .await?;
    match outcome {
        SignupOutcome::Created(user) => Ok(user),
        SignupOutcome::Taken => Err(ApiError::Conflict("that username is taken".into())),
        SignupOutcome::Confusable => Err(ApiError::Conflict(
            "that username looks like an existing one; choose another".into(),
        )),
    }
}

/// Checks the caller's password (ASVS v5 6.2.3: sensitive changes need it); 401 if wrong.
async fn confirm_password(
    state: &AppState,
    auth: &Authenticated,
    given: Password,
) -> Result<(), ApiError> {
    let ok = state
        .hasher
        .verify(given, Some(auth.user.password_hash.clone()))
        .await
        .map_err(hash_error)?;
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidCredentials)
    }
}

/// `POST /me/password`: needs the current password; ends every other session.
pub async fn change_password(
    state: &AppState,
    auth: &Authenticated,
    current: String,
    new: String,
    ctx: ClientContext,
) -> Result<(), ApiError> {
    let current = Password::parse_for_login(current).map_err(password_error)?;
    let new = Password::parse(new).map_err(password_error)?;
    confirm_password(state, auth, current).await?;
    let hash = state.hasher.hash(new).await.map_err(hash_error)?;
    let now = state.now();
    let session = auth.session.clone();
    state
        .store
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
/// and events.
pub async fn delete_account(
    state: &AppState,
    auth: &Authenticated,
    password: String,
) -> Result<(), ApiError> {
    let password = Password::parse_for_login(password).map_err(password_error)?;
    confirm_password(state, auth, password).await?;
    let (now, user_id) = (state.now(), auth.user.id.clone());
    state
        .store
        .write(async move |tx| accounts::delete_user(tx, now, &user_id).await)
        .await?;
    Ok(())
}

/// An operator disables a user and ends their sessions. Not their own account: an
/// admin locking themselves out is a mistake, and the last admin doing it would leave
/// nobody to undo it from the API.
pub async fn disable_user(
    state: &AppState,
    admin: &Authenticated,
    user_id: String,
    ctx: ClientContext,
) -> Result<(), ApiError> {
    if admin.user.id == user_id {
        return Err(ApiError::Conflict(
            "an admin cannot disable their own account".into(),
        ));
    }
    let now = state.now();
    let found = state
        .store
        .write(async move |tx| accounts::disable_user(tx, now, &user_id, &ctx).await)
        .await?;
    if found {
        Ok(())
    } else {
        Err(super::sessions::no_such_user())
    }
}

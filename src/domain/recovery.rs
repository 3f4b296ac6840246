//! Account recovery (docs/contract.md "Email and account recovery"; OWASP Forgot
//! Password cheat sheet): email addresses and their verification, and password resets
//! through single-use tokens. Each function runs inside one store transaction.

use crate::clock::Millis;
use crate::domain::email::{AccountSecret, Email};
use crate::domain::model::{AccountToken, ClientContext, NewEvent, TokenPurpose, User, UserEmail};
use crate::domain::repository::Tx;
use crate::domain::{accounts, sessions, EventKind, RevocationReason, TokenHash, UserId, Username};

const HOUR_MS: Millis = 3_600_000;

/// Whether the address is verified by an account other than `user_id` (any account
/// when `None`). Only a verified address belongs to anyone; an unverified claim blocks
/// nobody (docs/contract.md "Email and account recovery").
async fn verified_elsewhere(
    tx: &mut dyn Tx,
    email: &Email,
    user_id: Option<&UserId>,
) -> anyhow::Result<bool> {
    Ok(match tx.user_by_verified_email(&email.key()).await? {
        None => false,
        Some(owner) => Some(&owner.id) != user_id,
    })
}

/// What becomes of an address given to `/signup` or `/me/email`. The caller answers the
/// same either way; only the mail differs (OWASP Forgot Password / Authentication cheat
/// sheets: no account enumeration through the address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClaim {
    /// Stored unverified, with a verification token to mail.
    Claimed,
    /// Another account has verified it: nothing is attached, and the address is mailed
    /// a notice instead of a link.
    VerifiedElsewhere,
}

pub enum SignupWithEmail {
    Created(User, AddressClaim),
    UsernameTaken,
}

/// Signup with an address: the user and, unless another account has verified the
/// address, the unverified address and its verification token, in one transaction.
pub async fn create_user_with_email(
    tx: &mut dyn Tx,
    now: Millis,
    username: &Username,
    password_hash: String,
    email: &Email,
    verify: &AccountSecret,
    verify_ttl_ms: i64,
) -> anyhow::Result<SignupWithEmail> {
    let user = match accounts::create_user(tx, now, username, password_hash, Vec::new()).await? {
        accounts::SignupOutcome::Created(u) => u,
        // A name that only looks like a taken one is refused like a taken one.
        accounts::SignupOutcome::Taken | accounts::SignupOutcome::Confusable => {
            return Ok(SignupWithEmail::UsernameTaken)
        }
    };
    if verified_elsewhere(tx, email, None).await? {
        return Ok(SignupWithEmail::Created(
            user,
            AddressClaim::VerifiedElsewhere,
        ));
    }
    store_email(
        tx,
        now,
        &user.id,
        email,
        verify,
        verify_ttl_ms,
        &ClientContext::default(),
    )
    .await?;
    Ok(SignupWithEmail::Created(user, AddressClaim::Claimed))
}

/// Stores `email` as the user's unverified address, spends their outstanding
/// verification and reset tokens (they went to, or were for, the old address), issues
/// a verification token and records `email_changed`.
async fn store_email(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    email: &Email,
    verify: &AccountSecret,
    verify_ttl_ms: i64,
    ctx: &ClientContext,
) -> anyhow::Result<()> {
    let previous = tx.email_of_user(user_id).await?;
    let record = UserEmail {
        user_id: user_id.clone(),
        email: email.as_str().to_owned(),
        verified_at: None,
    };
    tx.set_email(&record, &email.key()).await?;
    tx.delete_account_tokens(user_id, TokenPurpose::Verify)
        .await?;
    tx.delete_account_tokens(user_id, TokenPurpose::Reset)
        .await?;
    tx.insert_account_token(&AccountToken {
        token_hash: verify.hash(),
        user_id: user_id.clone(),
        purpose: TokenPurpose::Verify,
        email_key: Some(email.key()),
        created_at: now,
        expires_at: now + verify_ttl_ms,
    })
    .await?;
    // The address itself is personal data: the event says that it changed, not to what.
    let event = NewEvent::new(EventKind::EmailChanged)
        .user(user_id)
        .from(ctx)
        .detail(serde_json::json!({ "had_email": previous.is_some() }));
    tx.insert_event(now, &event).await?;
    Ok(())
}

/// `POST /me/email` (after the password check): sets or replaces the address, unless
/// another account has verified it (then nothing changes).
pub async fn set_email(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    email: &Email,
    verify: &AccountSecret,
    verify_ttl_ms: i64,
    ctx: &ClientContext,
) -> anyhow::Result<AddressClaim> {
    if verified_elsewhere(tx, email, Some(user_id)).await? {
        return Ok(AddressClaim::VerifiedElsewhere);
    }
    store_email(tx, now, user_id, email, verify, verify_ttl_ms, ctx).await?;
    Ok(AddressClaim::Claimed)
}

/// `POST /email/verify`: `true` if the token was a live verification token for the
/// user's current address and no other account has verified that address meanwhile
/// (then spent, `email_verified` recorded, and every other account's unverified claim
/// on the address dropped: a verified address belongs to one account).
pub async fn verify_email(
    tx: &mut dyn Tx,
    now: Millis,
    secret: &AccountSecret,
    ctx: &ClientContext,
) -> anyhow::Result<bool> {
    let Some(token) = tx.account_token_by_hash(&secret.hash()).await? else {
        return Ok(false);
    };
    if token.purpose != TokenPurpose::Verify || now >= token.expires_at {
        return Ok(false);
    }
    let Some(key) = token.email_key.as_deref() else {
        return Ok(false);
    };
    tx.delete_account_tokens(&token.user_id, TokenPurpose::Verify)
        .await?;
    // Locked first, so that of two accounts verifying one address at once the second
    // waits for the first and then finds it verified (the unique index over verified
    // addresses is the backstop).
    let claims = tx.lock_email_claims(key).await?;
    let taken = claims
        .iter()
        .any(|c| c.user_id != token.user_id && c.verified_at.is_some());
    if taken || !tx.mark_email_verified(&token.user_id, key, now).await? {
        return Ok(false);
    }
    tx.drop_unverified_claims(key, &token.user_id).await?;
    let event = NewEvent::new(EventKind::EmailVerified)
        .user(&token.user_id)
        .from(ctx);
    tx.insert_event(now, &event).await?;
    Ok(true)
}

/// Whom a reset request names.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// `Username::key` of the name given (it may not exist).
    Username(String),
    /// `Email::key` of the address given.
    Email(String),
}

/// Where a reset link goes.
#[derive(Debug, Clone)]
pub struct ResetMail {
    pub user_id: UserId,
    pub username: String,
    pub to: String,
}

/// Who started a reset: the user (`/password/forgot`), an operator over HTTP, or the
/// command line (support staff, who get the link printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartedBy {
    User,
    Admin,
    Cli,
}

impl StartedBy {
    fn as_str(self) -> &'static str {
        match self {
            StartedBy::User => "user",
            StartedBy::Admin => "admin",
            StartedBy::Cli => "cli",
        }
    }
}

/// Stores a reset token for `user`.
async fn insert_reset_token(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    token_hash: TokenHash,
    ttl_ms: i64,
) -> anyhow::Result<()> {
    tx.insert_account_token(&AccountToken {
        token_hash,
        user_id: user_id.clone(),
        purpose: TokenPurpose::Reset,
        email_key: None,
        created_at: now,
        expires_at: now + ttl_ms,
    })
    .await
}

fn reset_requested(by: StartedBy, issued: bool) -> NewEvent {
    NewEvent::new(EventKind::PasswordResetRequested)
        .detail(serde_json::json!({ "started_by": by.as_str(), "issued": issued }))
}

/// `POST /password/forgot`: a reset token for the named account if it exists, is
/// enabled, has a verified address and has had fewer than `max_per_hour` resets issued
/// in the last hour; `None` otherwise. The caller answers the same either way, and so
/// that the time taken does not tell either (OWASP Forgot Password cheat sheet:
/// "uniform time"), every case makes the same reads and one durable write: the
/// `password_reset_requested` event (with `issued: false` when no token was issued, and
/// no user when there is none).
pub async fn request_reset(
    tx: &mut dyn Tx,
    now: Millis,
    lookup: &Lookup,
    token_hash: TokenHash,
    ttl_ms: i64,
    max_per_hour: u32,
    ctx: &ClientContext,
) -> anyhow::Result<Option<ResetMail>> {
    let user = match lookup {
        Lookup::Username(key) => tx.user_by_username_key(key).await?,
        Lookup::Email(key) => tx.user_by_verified_email(key).await?,
    };
    let known = user.as_ref().map(|u| u.id.clone());
    // An id no account has, for the same look-ups when there is no account.
    let probe = known.clone().unwrap_or_else(UserId::new_random);
    let email = tx
        .email_of_user(&probe)
        .await?
        .filter(|e| e.verified_at.is_some());
    let recent = tx
        .count_account_tokens_since(&probe, TokenPurpose::Reset, now - HOUR_MS)
        .await?;
    let mail = match (user, email) {
        (Some(user), Some(email)) if user.is_enabled() && recent < max_per_hour => {
            Some(ResetMail {
                user_id: user.id,
                username: user.username,
                to: email.email,
            })
        }
        _ => None,
    };
    match &mail {
        Some(m) => insert_reset_token(tx, now, &m.user_id, token_hash, ttl_ms).await?,
        // The same table, by the same key, in the same number of statements.
        None => {
            tx.account_token_by_hash(&token_hash).await?;
        }
    }
    let mut event = reset_requested(StartedBy::User, mail.is_some()).from(ctx);
    event.user_id = known;
    tx.insert_event(now, &event).await?;
    Ok(mail)
}

pub enum AdminReset {
    NoSuchUser,
    /// The user has no verified address to mail the link to.
    NoVerifiedEmail,
    Started(ResetMail),
}

/// An operator starts a reset. `Admin`: mailed to the verified address (required);
/// `Cli`: the link is printed, so no address is needed.
pub async fn start_reset_for(
    tx: &mut dyn Tx,
    now: Millis,
    user_id: &UserId,
    secret: &AccountSecret,
    ttl_ms: i64,
    by: StartedBy,
) -> anyhow::Result<AdminReset> {
    let Some(user) = tx.user_by_id(user_id).await? else {
        return Ok(AdminReset::NoSuchUser);
    };
    let email = tx
        .email_of_user(&user.id)
        .await?
        .filter(|e| e.verified_at.is_some());
    if email.is_none() && by != StartedBy::Cli {
        return Ok(AdminReset::NoVerifiedEmail);
    }
    insert_reset_token(tx, now, &user.id, secret.hash(), ttl_ms).await?;
    // The operator's own address and browser are not the user's: not in their events.
    tx.insert_event(now, &reset_requested(by, true).user(&user.id))
        .await?;
    Ok(AdminReset::Started(ResetMail {
        user_id: user.id,
        username: user.username,
        to: email.map(|e| e.email).unwrap_or_default(),
    }))
}

/// Whether `secret` is a live reset token of an enabled user (a read, before hashing
/// the new password).
pub async fn reset_token_is_live(
    tx: &mut dyn Tx,
    now: Millis,
    secret: &AccountSecret,
) -> anyhow::Result<bool> {
    Ok(live_reset_user(tx, now, secret).await?.is_some())
}

async fn live_reset_user(
    tx: &mut dyn Tx,
    now: Millis,
    secret: &AccountSecret,
) -> anyhow::Result<Option<User>> {
    let Some(token) = tx.account_token_by_hash(&secret.hash()).await? else {
        return Ok(None);
    };
    if token.purpose != TokenPurpose::Reset || now >= token.expires_at {
        return Ok(None);
    }
    Ok(tx
        .user_by_id(&token.user_id)
        .await?
        .filter(User::is_enabled))
}

/// `POST /password/reset`: sets the new password, spends every reset token of the user,
/// ends every session (OWASP Forgot Password: "invalidate existing sessions") and
/// records `password_reset`. `None` if the token is not live.
pub async fn reset_password(
    tx: &mut dyn Tx,
    now: Millis,
    secret: &AccountSecret,
    new_hash: &str,
    ctx: &ClientContext,
) -> anyhow::Result<Option<usize>> {
    let Some(user) = live_reset_user(tx, now, secret).await? else {
        return Ok(None);
    };
    tx.set_password_hash(&user.id, new_hash).await?;
    tx.delete_account_tokens(&user.id, TokenPurpose::Reset)
        .await?;
    let ended = sessions::revoke_all_of_user(
        tx,
        now,
        &user.id,
        None,
        RevocationReason::PasswordReset,
        ctx,
    )
    .await?;
    let event = NewEvent::new(EventKind::PasswordReset)
        .user(&user.id)
        .from(ctx)
        .detail(serde_json::json!({ "sessions_ended": ended }));
    tx.insert_event(now, &event).await?;
    Ok(Some(ended))
}

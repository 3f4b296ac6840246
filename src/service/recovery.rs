//! Account recovery (docs/contract.md "Email and account recovery"; OWASP Forgot
//! Password cheat sheet): the user's email address and its verification, forgot and
//! reset password, and resets started by an operator.

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};

use super::accounts::password_error;
use super::auth::Authenticated;
use super::login::Origin;
use super::password_check::{hash_error, Gate};
use super::Error;
use crate::clock::Millis;
use crate::config::{MailSettings, Registration, Settings};
use crate::domain::email::{AccountSecret, Email};
use crate::domain::model::{User, UserEmail};
use crate::domain::recovery::{
    self, AddressClaim, AdminReset, Lookup, ResetMail, SignupWithEmail, StartedBy,
};
use crate::domain::throttle::Verdict;
use crate::domain::{Password, UserId, Username};
use crate::mail::{MailKind, Mailer};
use crate::state::AppState;
use crate::store::Store;

/// What the recovery use-cases need: the gate for password checks and for counting
/// wrong tokens, the mail settings and issuer, the outgoing mail, and randomness for
/// new tokens.
#[derive(Clone, Copy)]
pub struct Recovery<'a> {
    pub gate: Gate<'a>,
    pub settings: &'a Settings,
    pub mailer: &'a Arc<Mailer>,
    pub rng: &'a SystemRandom,
}

impl<'a> Recovery<'a> {
    pub fn of(state: &'a AppState) -> Self {
        Self {
            gate: Gate::of(state),
            settings: &state.settings,
            mailer: &state.mailer,
            rng: &state.rng,
        }
    }
}

/// The login-throttle "account" that wrong reset and verification tokens count
/// against: one per address (so nobody can use up everyone's budget), while the
/// address's own failure budget is the one its logins use, and one address guessing
/// tokens meets growing delays (OWASP Forgot Password cheat sheet: rate-limit the
/// endpoints). A name no username can have (it starts with a control character).
fn token_guess_key(from: &Origin) -> String {
    match from.ip {
        Some(ip) => format!("\u{0}account-token {ip}"),
        None => "\u{0}account-token".to_owned(),
    }
}

fn minutes(d: crate::config::HumanDuration) -> u64 {
    (d.as_secs() / 60).max(1)
}

fn reset_link(r: &Recovery<'_>, secret: &AccountSecret) -> String {
    let m = &r.settings.mail;
    MailSettings::link(
        m.reset_url.as_deref(),
        &r.settings.issuer,
        "reset-password",
        secret.expose(),
    )
}

fn verify_link(r: &Recovery<'_>, secret: &AccountSecret) -> String {
    let m = &r.settings.mail;
    MailSettings::link(
        m.verify_url.as_deref(),
        &r.settings.issuer,
        "verify-email",
        secret.expose(),
    )
}

fn parse_email(s: &str) -> Result<Email, Error> {
    Email::parse(s).map_err(|e| Error::InvalidRequest(e.into()))
}

/// Mails the link that verifies `to`. No username: the address is not yet proven to
/// be the account's (docs/contract.md "Email and account recovery").
fn send_verification(r: &Recovery<'_>, to: &Email, secret: &AccountSecret) {
    r.mailer.hand_off(
        MailKind::Verify,
        Some(to.as_str().to_owned()),
        None,
        verify_link(r, secret),
        minutes(r.settings.mail.verify_ttl),
    );
}

/// Tells the owner of a verified address that someone gave it again (signup or
/// `/me/email`); nothing was attached, and the mail carries nothing the asker chose.
fn send_in_use_notice(r: &Recovery<'_>, to: &Email) {
    r.mailer.hand_off(
        MailKind::AddressInUse,
        Some(to.as_str().to_owned()),
        None,
        String::new(),
        0,
    );
}

/// Hands a reset mail to the mailer; `None` (nobody to mail) hands off the same work
/// for nobody, so `/password/forgot` takes as long either way.
fn send_reset(r: &Recovery<'_>, mail: Option<&ResetMail>, secret: &AccountSecret) {
    r.mailer.hand_off(
        MailKind::Reset,
        mail.map(|m| m.to.clone()),
        mail.map(|m| m.username.clone()),
        reset_link(r, secret),
        minutes(r.settings.mail.reset_ttl),
    );
}

/// Sends what the outcome of giving an address calls for: the link, or the notice.
fn mail_address(r: &Recovery<'_>, claim: AddressClaim, to: &Email, secret: &AccountSecret) {
    match claim {
        AddressClaim::Claimed => send_verification(r, to, secret),
        AddressClaim::VerifiedElsewhere => send_in_use_notice(r, to),
    }
}

/// `POST /signup` with an `email`: 409 if the name is taken. The address starts
/// unverified and a verification link is mailed; an address another account has
/// verified is answered alike but attached to nothing, and its owner is told
/// (docs/contract.md "Email and account recovery": no enumeration, no squatting).
#[tracing::instrument(skip_all)]
pub async fn signup_with_email(
    r: &Recovery<'_>,
    username: &str,
    password: String,
    email: &str,
) -> Result<(User, Email), Error> {
    if r.settings.registration == Registration::Closed {
        return Err(Error::Forbidden("registration is closed".into()));
    }
    let username = Username::parse(username).map_err(|e| Error::InvalidRequest(e.into()))?;
    let email = parse_email(email)?;
    let password = Password::parse(password).map_err(password_error)?;
    let hash = r.gate.hasher.hash(password).await.map_err(hash_error)?;
    let secret = AccountSecret::generate(r.rng).map_err(Error::internal)?;
    let (now, ttl) = (r.gate.now(), r.settings.mail.verify_ttl.as_millis_i64());
    let (e, s) = (email.clone(), secret.clone());
    let outcome = r
        .gate
        .store
        .write(async move |tx| {
            recovery::create_user_with_email(tx, now, &username, hash, &e, &s, ttl).await
        })
        .await?;
    match outcome {
        SignupWithEmail::Created(user, claim) => {
            mail_address(r, claim, &email, &secret);
            Ok((user, email))
        }
        SignupWithEmail::UsernameTaken => Err(Error::Conflict("that username is taken".into())),
    }
}

/// The user's address, for `/me`.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn email_of(store: &Store, user_id: &UserId) -> Result<Option<UserEmail>, Error> {
    let id = user_id.clone();
    Ok(store
        .read(async move |tx| tx.email_of_user(&id).await)
        .await?)
}

/// `POST /me/email`: needs the password (ASVS v5 6.2.3: sensitive changes need it) and,
/// for a user with a second factor, step-up; sets or replaces the address, unverified,
/// and mails a verification link to it; an address another account has verified
/// changes nothing and is mailed a notice, with the same answer.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn set_email(
    r: &Recovery<'_>,
    auth: &Authenticated,
    email: &str,
    password: String,
    from: Origin,
) -> Result<UserEmail, Error> {
    // RFC 9470: whoever controls the address controls password resets, so for a user
    // with a second factor this is a step-up route like `/me/password`.
    super::auth::require_step_up_if_enrolled(r.gate.store, &r.settings.mfa, auth, r.gate.now())
        .await?;
    let password = Password::parse_for_login(password).map_err(password_error)?;
    let email = parse_email(email)?;
    let ctx = from.ctx.clone();
    // Throttled and recorded like every other password check.
    let purpose = super::password_check::Purpose::EmailChange;
    super::accounts::confirm_password(r.gate, auth, password, purpose, from).await?;
    let secret = AccountSecret::generate(r.rng).map_err(Error::internal)?;
    let (now, ttl) = (r.gate.now(), r.settings.mail.verify_ttl.as_millis_i64());
    let (user_id, e, s) = (auth.user.id.clone(), email.clone(), secret.clone());
    let claim = r
        .gate
        .store
        .write(async move |tx| recovery::set_email(tx, now, &user_id, &e, &s, ttl, &ctx).await)
        .await?;
    // The same answer whether or not another account has verified the address.
    mail_address(r, claim, &email, &secret);
    Ok(UserEmail {
        user_id: auth.user.id.clone(),
        email: email.as_str().to_owned(),
        verified_at: None,
    })
}

/// 429 while the address (or account key) is throttled by login throttling.
fn refuse_if_throttled(r: &Recovery<'_>, key: &str, from: &Origin) -> Result<(), Error> {
    match r.gate.throttle.check(key, from.ip, None, r.gate.now()) {
        Verdict::Allowed => Ok(()),
        Verdict::Throttled {
            retry_after_secs, ..
        } => Err(Error::RateLimited { retry_after_secs }),
    }
}

fn bad_token(r: &Recovery<'_>, from: &Origin, what: &str) -> Error {
    r.gate
        .throttle
        .record_failure(&token_guess_key(from), from.ip, None, r.gate.now());
    Error::InvalidGrant(format!("the {what} token is invalid, used or expired"))
}

/// `POST /email/verify`: 204, or 400 `invalid_grant` for a bad, used or expired token.
#[tracing::instrument(skip_all)]
pub async fn verify_email(r: &Recovery<'_>, token: &str, from: Origin) -> Result<(), Error> {
    refuse_if_throttled(r, &token_guess_key(&from), &from)?;
    let Some(secret) = AccountSecret::parse(token) else {
        return Err(bad_token(r, &from, "verification"));
    };
    let now = r.gate.now();
    let ctx = from.ctx.clone();
    let ok = r
        .gate
        .store
        .write(async move |tx| recovery::verify_email(tx, now, &secret, &ctx).await)
        .await?;
    if ok {
        Ok(())
    } else {
        Err(bad_token(r, &from, "verification"))
    }
}

/// What `/password/forgot` names: a username or an email address.
pub struct ForgotInput {
    pub username: Option<String>,
    pub email: Option<String>,
}

/// `POST /password/forgot`: always the same answer (the caller sends 202) whether or
/// not the account exists, is enabled or has a verified address, after the same work
/// (OWASP Forgot Password: "consistent response … uniform time"): a token is drawn and
/// hashed, one write makes the same reads and one durable insert (storing the token's
/// hash as well only if the account qualifies), and the mail, or the same rendering for
/// nobody, is handed to a task of its own rather than done while the request waits.
#[tracing::instrument(skip_all)]
pub async fn forgot_password(
    r: &Recovery<'_>,
    input: ForgotInput,
    from: Origin,
) -> Result<(), Error> {
    let (lookup, throttle_key) = match (input.username, input.email) {
        (Some(name), None) => {
            // A name no account can have (empty, padded, control characters, too long)
            // is refused by its shape alone, which says nothing about any account.
            let key = Username::parse(&name)
                .map_err(|e| Error::InvalidRequest(e.into()))?
                .key();
            (Lookup::Username(key.clone()), key)
        }
        (None, Some(email)) => {
            let key = parse_email(&email)?.key();
            (Lookup::Email(key.clone()), key)
        }
        _ => {
            return Err(Error::InvalidRequest(
                "give either username or email".into(),
            ))
        }
    };
    // Counted with login throttling: an account or address refused logins is refused
    // here too, the same way for every name.
    refuse_if_throttled(r, &throttle_key, &from)?;
    let secret = AccountSecret::generate(r.rng).map_err(Error::internal)?;
    let hash = secret.hash();
    let now = r.gate.now();
    let ttl = r.settings.mail.reset_ttl.as_millis_i64();
    let max = r.settings.mail.max_resets_per_account_per_hour;
    let ctx = from.ctx.clone();
    let found = r
        .gate
        .store
        .write(async move |tx| {
            recovery::request_reset(tx, now, &lookup, hash, ttl, max, &ctx).await
        })
        .await?;
    send_reset(r, found.as_ref(), &secret);
    Ok(())
}

/// `POST /password/reset`: the new password passes the signup policy; the token must
/// be live. Sets the password, spends every reset token of the user, ends every session.
#[tracing::instrument(skip_all)]
pub async fn reset_password(
    r: &Recovery<'_>,
    token: &str,
    new_password: String,
    from: Origin,
) -> Result<(), Error> {
    refuse_if_throttled(r, &token_guess_key(&from), &from)?;
    let Some(secret) = AccountSecret::parse(token) else {
        return Err(bad_token(r, &from, "reset"));
    };
    let password = Password::parse(new_password).map_err(password_error)?;
    // Check the token before hashing, so a wrong token costs no argon2 run.
    let now = r.gate.now();
    let s = secret.clone();
    let live = r
        .gate
        .store
        .read(async move |tx| recovery::reset_token_is_live(tx, now, &s).await)
        .await?;
    if !live {
        return Err(bad_token(r, &from, "reset"));
    }
    let hash = r.gate.hasher.hash(password).await.map_err(hash_error)?;
    let now = r.gate.now();
    let ctx = from.ctx.clone();
    let done = r
        .gate
        .store
        .write(async move |tx| recovery::reset_password(tx, now, &secret, &hash, &ctx).await)
        .await?;
    match done {
        Some(_) => Ok(()),
        // Spent by a concurrent reset, or expired meanwhile.
        None => Err(bad_token(r, &from, "reset")),
    }
}

/// `POST /admin/users/{id}/password-reset`: mails a reset link to the user's verified
/// address. 404 for no such user, 409 when there is no verified address to mail.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn admin_reset(r: &Recovery<'_>, user_id: UserId) -> Result<(), Error> {
    let ttl = r.settings.mail.reset_ttl.as_millis_i64();
    let started = start_reset(
        r.gate.store,
        r.rng,
        r.gate.now(),
        ttl,
        user_id,
        StartedBy::Admin,
    )
    .await?;
    send_reset(r, Some(&started.mail), &started.secret);
    Ok(())
}

/// A reset an operator started: the token to hand over, and whom it is for.
pub struct StartedReset {
    pub secret: AccountSecret,
    pub mail: ResetMail,
}

/// An operator starts a reset for `user_id` (the admin route, `latchkey users
/// reset-password`). 404 for no such user; 409 when `by` mails the link and there is no
/// verified address to mail.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn start_reset(
    store: &Store,
    rng: &dyn SecureRandom,
    now: Millis,
    ttl_ms: i64,
    user_id: UserId,
    by: StartedBy,
) -> Result<StartedReset, Error> {
    let secret = AccountSecret::generate(rng).map_err(Error::internal)?;
    let s = secret.clone();
    let outcome = store
        .write(async move |tx| recovery::start_reset_for(tx, now, &user_id, &s, ttl_ms, by).await)
        .await?;
    match outcome {
        AdminReset::Started(mail) => Ok(StartedReset { secret, mail }),
        AdminReset::NoSuchUser => Err(super::sessions::no_such_user()),
        AdminReset::NoVerifiedEmail => Err(Error::Conflict(
            "the user has no verified email address to send a reset link to".into(),
        )),
    }
}

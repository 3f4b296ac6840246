//! The second factor (docs/contract.md "Second factor"; RFC 6238, OWASP Multifactor
//! Authentication cheat sheet): the second step of a login, and enrolling, confirming
//! and removing a TOTP factor, and new recovery codes. Every code check is admitted by
//! the login throttle and counts there when wrong (`password_check`).

use super::accounts::{confirm_password, password_error};
use super::auth::{require_step_up_if_enrolled, Authenticated};
use super::issue::{Issued, Issuing};
use super::login::{issue_login, Origin};
use super::password_check::{self, session_device, Admitted, Attempt, Purpose};
use super::Error;
use crate::clock::Millis;
use crate::domain::email::AccountSecret;
use crate::domain::mfa::{
    self, AccountOwner, ConfirmOutcome, EnrolOutcome, FinishOutcome, Proof, RegenerateOutcome,
    RemoveOutcome, SecretSealer,
};
use crate::domain::sessions::NewSession;
use crate::domain::totp::{self, RecoveryCode, TotpCode, TotpSecret};
use crate::domain::{AuthMethod, Password, TokenHash, UserId, Username};
use crate::secret::Secret;
use crate::store::Store;

/// A second factor as sent: `code` or `recovery_code`, exactly one of them (an empty
/// string counts as absent). Malformed values are 400 `invalid_request` and count for
/// nothing: they cannot have been right.
pub fn parse_proof(code: Option<String>, recovery_code: Option<String>) -> Result<Proof, Error> {
    let code = code.filter(|c| !c.is_empty());
    let recovery_code = recovery_code.filter(|c| !c.is_empty());
    match (code, recovery_code) {
        (Some(c), None) => TotpCode::parse(&c).map(Proof::Totp).ok_or_else(|| {
            Error::InvalidRequest("code must be the 6 digits the authenticator app shows".into())
        }),
        (None, Some(r)) => RecoveryCode::parse(&r).map(Proof::Recovery).ok_or_else(|| {
            Error::InvalidRequest("recovery_code is not in the form of a recovery code".into())
        }),
        (Some(_), Some(_)) => Err(Error::InvalidRequest(
            "send either code or recovery_code, not both".into(),
        )),
        (None, None) => Err(Error::InvalidRequest(
            "code (or recovery_code) is required".into(),
        )),
    }
}

fn code_only(code: Option<String>) -> Result<TotpCode, Error> {
    match parse_proof(code, None)? {
        Proof::Totp(c) => Ok(c),
        Proof::Recovery(_) => unreachable!("no recovery code was given"),
    }
}

fn dead_token() -> Error {
    Error::InvalidGrant("the mfa_token is invalid, expired or already used; sign in again".into())
}

/// The second step of a login (`/login/mfa`, `/browser/login/mfa`).
pub struct SecondStep {
    pub mfa_token: String,
    pub code: Option<String>,
    pub recovery_code: Option<String>,
    /// The device token of an earlier login to the account (the body's `device_token`,
    /// or the browser's device cookie), honoured exactly as at `/login`.
    pub device_token: Option<String>,
    /// Asked at `/browser/login/mfa`.
    pub browser: bool,
}

/// Finishes a login that answered `mfa_required`. `allowed` vets the pending login's
/// client before anything changes (browser mode: the Origin must be one of its
/// `allowed_origins`). Answers as `/login` does, the session with `amr: ["pwd","otp"]`
/// and the password step's `auth_time`.
#[tracing::instrument(skip_all)]
pub async fn finish_login(
    deps: &Issuing<'_>,
    input: SecondStep,
    from: Origin,
    allowed: &dyn Fn(&str) -> Result<(), Error>,
) -> Result<Issued, Error> {
    let proof = parse_proof(input.code, input.recovery_code)?;
    let token = AccountSecret::parse(&input.mfa_token).ok_or_else(dead_token)?;
    let hash: TokenHash = token.hash();
    let now = deps.gate.now();
    let found = deps
        .gate
        .store
        .read(async move |tx| {
            let Some(p) = tx.mfa_login_by_hash(&hash).await? else {
                return Ok(None);
            };
            Ok(tx.user_by_id(&p.user_id).await?.map(|u| (p, u)))
        })
        .await?;
    let Some((pending, user)) = found.filter(|(p, _)| p.expires_at > now) else {
        return Err(dead_token());
    };
    // Only where its login started (docs/contract.md "Second factor"): a browser
    // login's refresh token must never come back in a JSON body. Refused before the
    // code is looked at, so the wrong endpoint costs the login no attempt.
    if pending.browser != input.browser {
        return Err(Error::InvalidGrant(if pending.browser {
            "this mfa_token is from a browser login: finish it at /browser/login/mfa".into()
        } else {
            "this mfa_token is not from a browser login: finish it at /login/mfa".into()
        }));
    }
    allowed(&pending.client_id)?;
    let client = deps
        .settings
        .client(&pending.client_id)
        .ok_or_else(dead_token)?
        .clone();
    let account_key = Username::lookup_key(&user.username);
    // A device token of this account makes the second step a trusted client, exactly as
    // at `/login`: an attack on the account from unknown devices never locks its known
    // devices out of either step (OWASP device cookies).
    let device = input
        .device_token
        .as_deref()
        .and_then(|t| deps.devices.verify(t, &account_key, now));
    // Admitted like a password check: a throttled account or address gets 429 here
    // too, and each wrong code counts (docs/contract.md "Login throttling").
    let admitted = password_check::admit(
        deps.gate,
        Attempt {
            account_key: account_key.clone(),
            ip: from.ip,
            device,
            purpose: Purpose::SecondFactor,
            client_id: client.id.clone(),
            session_id: None,
            ctx: from.ctx.clone(),
        },
    )
    .await?;
    let new = NewSession {
        user_id: pending.user_id.clone(),
        client_id: client.id.clone(),
        scope: pending.scope.clone(),
        remember_me: pending.remember_me,
        lifetimes: deps.settings.lifetimes(Some(&client), pending.remember_me),
        max_per_user: deps.settings.session.max_per_user,
        limit_policy: deps.settings.session.limit_policy,
        ctx: from.ctx,
        // RFC 8176 §2: a password, then a one-time password.
        amr: vec![AuthMethod::Pwd, AuthMethod::Otp],
        auth_time: Some(pending.auth_time),
        idp: None,
    };
    let (rng, keys) = (deps.rng.clone(), deps.sealer.clone());
    let known_device = device.is_some();
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            let sealer = keys.as_ref();
            mfa::finish_login(
                tx,
                now,
                &rng,
                sealer,
                sealer,
                &hash,
                &proof,
                &new,
                known_device,
            )
            .await
        })
        .await?;
    match outcome {
        FinishOutcome::Dead => Err(dead_token()),
        FinishOutcome::CodesLocked => Err(Error::Forbidden(
            "too many wrong codes in a row on this account: finish with a recovery code or \
             from a device that signed in before, or ask an administrator to reset the factor"
                .into(),
        )),
        FinishOutcome::WrongCode { ended } => {
            admitted.code_failed().await?;
            if ended {
                Err(Error::InvalidGrant(
                    "too many wrong codes: the mfa_token has ended; sign in again".into(),
                ))
            } else {
                Err(Error::WrongCode)
            }
        }
        FinishOutcome::Finished(outcome) => {
            admitted.succeeded().await?;
            drop(admitted);
            deps.gate.metrics.login(match &outcome {
                crate::domain::sessions::LoginOutcome::Created(_) => "success",
                crate::domain::sessions::LoginOutcome::UserUnavailable => "failure",
                crate::domain::sessions::LoginOutcome::LimitReached => "rejected",
            });
            issue_login(deps, &client, outcome, pending.audiences, &account_key, now)
        }
    }
}

/// The answer to `POST /me/mfa/totp`: the new secret three ways. Shown once (the route
/// renders it with `expose`; `Secret` never prints).
#[derive(Debug)]
pub struct Enrolment {
    /// Base32 (RFC 4648), for typing into an app.
    pub secret: Secret<String>,
    /// The Key URI (`otpauth://totp/…`) authenticator apps read.
    pub otpauth_uri: Secret<String>,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: Secret<String>,
}

/// The admission of a code check by a signed-in user: counted like their password
/// re-checks (the session is the trusted client).
async fn admit_code<'a>(
    deps: &Issuing<'a>,
    auth: &Authenticated,
    from: &Origin,
) -> Result<Admitted<'a>, Error> {
    password_check::admit(
        deps.gate,
        Attempt {
            account_key: Username::lookup_key(&auth.user.username),
            ip: from.ip,
            device: Some(session_device(&auth.session.id)),
            purpose: Purpose::SecondFactor,
            client_id: auth.session.client_id.clone(),
            session_id: Some(auth.session.id.clone()),
            ctx: from.ctx.clone(),
        },
    )
    .await
}

/// `POST /me/mfa/totp`: needs the password (and step-up if a factor is active, which
/// then answers 409: remove it first). Stores a new secret, sealed and unconfirmed.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn enrol(
    deps: &Issuing<'_>,
    auth: &Authenticated,
    password: String,
    from: Origin,
) -> Result<Enrolment, Error> {
    require_step_up_if_enrolled(deps.gate.store, &deps.settings.mfa, auth, deps.gate.now()).await?;
    let password = Password::parse_for_login(password).map_err(password_error)?;
    confirm_password(deps.gate, auth, password, Purpose::MfaChange, from).await?;
    let secret = TotpSecret::generate(deps.rng.as_ref()).map_err(Error::Internal)?;
    let sealed = deps
        .sealer
        .seal_totp(auth.user.id.as_str(), &secret)
        .map_err(Error::Internal)?;
    let (now, user_id) = (deps.gate.now(), auth.user.id.clone());
    let outcome = deps
        .gate
        .store
        .write(async move |tx| mfa::enrol(tx, now, &user_id, sealed).await)
        .await?;
    if let EnrolOutcome::AlreadyActive = outcome {
        return Err(Error::Conflict(
            "a second factor is already active; remove it first".into(),
        ));
    }
    let uri = otpauth_uri(deps, &auth.user.username, &secret);
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(Error::internal)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrolment {
        secret: Secret::new(secret.base32()),
        otpauth_uri: Secret::new(uri),
        qr_svg: Secret::new(qr),
    })
}

/// The Key URI Format authenticator apps read: `otpauth://totp/ISSUER:USER?secret=…
/// &issuer=ISSUER&algorithm=SHA1&digits=6&period=30`. ISSUER is the issuer URL's host.
fn otpauth_uri(deps: &Issuing<'_>, username: &str, secret: &TotpSecret) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    // RFC 3986 §2.3: unreserved characters stay as they are.
    const LABEL: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let issuer = url::Url::parse(&deps.settings.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "latchkey".to_owned());
    let enc = |s: &str| utf8_percent_encode(s, LABEL).to_string();
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={}&period={}",
        enc(&issuer),
        enc(username),
        secret.base32(),
        enc(&issuer),
        totp::DIGITS,
        totp::STEP_SECS
    )
}

/// Ten new recovery codes: their display form for the answer, their hashes to store.
fn new_recovery_codes(deps: &Issuing<'_>) -> Result<(Vec<String>, Vec<TokenHash>), Error> {
    let mut shown = Vec::with_capacity(totp::RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(totp::RECOVERY_CODES);
    for _ in 0..totp::RECOVERY_CODES {
        let c = RecoveryCode::generate(deps.rng.as_ref()).map_err(Error::Internal)?;
        shown.push(c.display());
        hashes.push(c.hash());
    }
    Ok((shown, hashes))
}

/// `POST /me/mfa/totp/confirm`: the first code activates the factor; answers the ten
/// recovery codes, shown only this once.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn confirm(
    deps: &Issuing<'_>,
    auth: &Authenticated,
    code: Option<String>,
    from: Origin,
) -> Result<Vec<String>, Error> {
    require_step_up_if_enrolled(deps.gate.store, &deps.settings.mfa, auth, deps.gate.now()).await?;
    let code = code_only(code)?;
    let admitted = admit_code(deps, auth, &from).await?;
    let (shown, hashes) = new_recovery_codes(deps)?;
    let (now, keys) = (deps.gate.now(), deps.sealer.clone());
    let (user_id, session_id, client_id) = (
        auth.user.id.clone(),
        auth.session.id.clone(),
        auth.session.client_id.clone(),
    );
    let ctx = from.ctx;
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            let who = AccountOwner {
                user_id: &user_id,
                session_id: Some(&session_id),
                client_id: &client_id,
                ctx: &ctx,
            };
            mfa::confirm(tx, now, keys.as_ref(), &who, &code, &hashes).await
        })
        .await?;
    match outcome {
        ConfirmOutcome::Enabled => {
            admitted.succeeded().await?;
            Ok(shown)
        }
        ConfirmOutcome::WrongCode => {
            admitted.code_failed().await?;
            Err(Error::WrongCode)
        }
        ConfirmOutcome::NoEnrolment => Err(Error::Conflict(
            "no enrolment to confirm; start one with POST /me/mfa/totp".into(),
        )),
        ConfirmOutcome::AlreadyActive => Err(Error::Conflict(
            "the second factor is already active".into(),
        )),
    }
}

/// `DELETE /me/mfa/totp`: step-up, the password, and a code (or a recovery code).
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn remove(
    deps: &Issuing<'_>,
    auth: &Authenticated,
    password: String,
    proof: (Option<String>, Option<String>),
    from: Origin,
) -> Result<(), Error> {
    require_step_up_if_enrolled(deps.gate.store, &deps.settings.mfa, auth, deps.gate.now()).await?;
    let password = Password::parse_for_login(password).map_err(password_error)?;
    let proof = parse_proof(proof.0, proof.1)?;
    let ctx = from.ctx.clone();
    let from_again = Origin {
        ctx: from.ctx.clone(),
        ip: from.ip,
    };
    confirm_password(deps.gate, auth, password, Purpose::MfaChange, from).await?;
    let admitted = admit_code(deps, auth, &from_again).await?;
    let (now, keys) = (deps.gate.now(), deps.sealer.clone());
    let (user_id, session_id, client_id) = (
        auth.user.id.clone(),
        auth.session.id.clone(),
        auth.session.client_id.clone(),
    );
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            let who = AccountOwner {
                user_id: &user_id,
                session_id: Some(&session_id),
                client_id: &client_id,
                ctx: &ctx,
            };
            mfa::remove(tx, now, keys.as_ref(), &who, &proof).await
        })
        .await?;
    match outcome {
        RemoveOutcome::Removed => {
            admitted.succeeded().await?;
            Ok(())
        }
        RemoveOutcome::WrongCode => {
            admitted.code_failed().await?;
            Err(Error::WrongCode)
        }
        RemoveOutcome::NoFactor => Err(no_factor()),
    }
}

fn no_factor() -> Error {
    Error::NotFound("no second factor is enrolled".into())
}

/// `POST /me/mfa/recovery-codes` `{code}`: step-up and a current TOTP code (spent, and
/// counted by the login throttle when wrong, as at `DELETE /me/mfa/totp`); ten new codes
/// replace the old ones.
#[tracing::instrument(skip_all, fields(user_id = %auth.user.id, session_id = %auth.session.id))]
pub async fn regenerate_recovery_codes(
    deps: &Issuing<'_>,
    auth: &Authenticated,
    code: Option<String>,
    from: Origin,
) -> Result<Vec<String>, Error> {
    require_step_up_if_enrolled(deps.gate.store, &deps.settings.mfa, auth, deps.gate.now()).await?;
    if code.as_deref().is_none_or(str::is_empty) {
        return Err(Error::InvalidRequest(
            "code is required: the current code from the authenticator app".into(),
        ));
    }
    let code = code_only(code)?;
    let admitted = admit_code(deps, auth, &from).await?;
    let (shown, hashes) = new_recovery_codes(deps)?;
    let (now, keys) = (deps.gate.now(), deps.sealer.clone());
    let (user_id, session_id, client_id) = (
        auth.user.id.clone(),
        auth.session.id.clone(),
        auth.session.client_id.clone(),
    );
    let ctx = from.ctx;
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            let who = AccountOwner {
                user_id: &user_id,
                session_id: Some(&session_id),
                client_id: &client_id,
                ctx: &ctx,
            };
            mfa::regenerate_recovery_codes(tx, now, keys.as_ref(), &who, &code, &hashes).await
        })
        .await?;
    match outcome {
        RegenerateOutcome::Regenerated => {
            admitted.succeeded().await?;
            Ok(shown)
        }
        RegenerateOutcome::WrongCode => {
            admitted.code_failed().await?;
            Err(Error::WrongCode)
        }
        RegenerateOutcome::NoFactor => Err(no_factor()),
    }
}

/// The operator removes a locked-out user's factor (`latchkey users reset-mfa`): every
/// session of theirs ends (`domain::mfa::reset`). `None` if there was no factor, else
/// how many sessions ended.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn reset_factor(
    store: &Store,
    now: Millis,
    user_id: &UserId,
) -> Result<Option<usize>, Error> {
    let id = user_id.clone();
    Ok(store
        .write(async move |tx| mfa::reset(tx, now, &id).await)
        .await?)
}

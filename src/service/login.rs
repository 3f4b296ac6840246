//! Signing in with a username and password (a first-party endpoint, not the OAuth
//! password grant, which RFC 9700 §2.4 forbids): throttling, the password check, and a
//! new session (refresh-token family).

use super::issue::{audiences_for, issue, resolve_client, Issued, Issuing};
use super::password_check::Purpose;
use super::Error;
use crate::clock::Millis;
use crate::config::ClientSettings;
use crate::domain::email::AccountSecret;
use crate::domain::mfa;
use crate::domain::model::User;
use crate::domain::sessions::{self, LoginOutcome, NewSession};
use crate::domain::{AuthMethod, Password, Scope, UserId, Username};
use crate::secret::Secret;

pub struct Credentials {
    pub username: String,
    pub password: String,
    pub client_id: Option<String>,
    pub remember_me: Option<bool>,
    pub scope: Option<String>,
    /// RFC 8707 resource indicators narrowing the access token's audiences.
    pub resource: Vec<String>,
    /// The device token of an earlier login to this account (OWASP device cookies):
    /// the body's `device_token`, or the browser's device cookie.
    pub device_token: Option<String>,
    /// `/browser/login`: a second step, if any, finishes only at `/browser/login/mfa`.
    pub browser: bool,
}

pub use super::password_check::Origin;

/// Checks credentials and starts a session (`/login` and `/browser/login`).
#[tracing::instrument(skip_all)]
pub async fn login(deps: &Issuing<'_>, input: Credentials, from: Origin) -> Result<Issued, Error> {
    // Cheap checks first, before any hashing (docs/contract.md "Conventions"). A name no
    // account can have by its shape alone (over 256 bytes, or a control character such
    // as NUL, which PostgreSQL cannot even hold) is a malformed request: 400 before any
    // store access, saying nothing about any account.
    let account_key =
        Username::login_key(&input.username).map_err(|e| Error::InvalidRequest(e.into()))?;
    let password = Password::parse_for_login(input.password)
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let client = resolve_client(deps.settings, input.client_id.as_deref())?.clone();
    let scope = Scope::parse(input.scope.as_deref().unwrap_or(""))
        .map_err(|e| Error::InvalidScope(e.into()))?;
    if !scope.allowed_by(&client.scopes) {
        return Err(Error::InvalidScope(
            "the requested scope is not allowed for this client".into(),
        ));
    }
    let audiences = audiences_for(deps.settings, &client, &input.resource)?;
    let remember_me = input.remember_me.unwrap_or(true);
    let browser = input.browser;

    // Throttling is keyed by the name asked for, existing or not, and decided before
    // any lookup or hashing: a throttled attempt looks and takes the same for every name.
    // A valid device token for this name (from an earlier successful login) makes this
    // a trusted client, exempt from the account-wide lockout (docs/contract.md
    // "Login throttling").
    let now = deps.gate.now();
    let admitted = deps
        .admit_login_step(
            &account_key,
            input.device_token.as_deref(),
            Purpose::Login,
            &client.id,
            &from,
        )
        .await?;

    let key = account_key.clone();
    let user = deps
        .gate
        .store
        .read(async move |tx| tx.user_by_username_key(&key).await)
        .await?;
    // The same path for every account up to here, factor or not: a wrong password
    // answers the same whoever it belongs to (docs/contract.md "Second factor").
    let admitted = admitted.verify(password, user.as_ref()).await?;
    let Some(user) = user else {
        return Err(Error::InvalidCredentials);
    };

    let new = NewSession {
        user_id: user.id.clone(),
        client_id: client.id.clone(),
        scope,
        remember_me,
        lifetimes: deps.settings.lifetimes(Some(&client), remember_me),
        max_per_user: deps.settings.session.max_per_user,
        limit_policy: deps.settings.session.limit_policy,
        ctx: from.ctx,
        amr: vec![AuthMethod::Pwd],
        auth_time: None,
        idp: None,
    };
    // Only now, with the password right, does a second factor matter: the login waits
    // for it, and the throttle is not cleared until it comes (a right password must not
    // wipe the wrong codes counted against the account).
    if has_active_factor(deps, &user.id).await? {
        // Not a failure either: the attempt's place in the shared count is given back.
        admitted.release().await?;
        return Err(require_second_factor(deps, &user, &new, audiences, now, browser).await?);
    }
    admitted.succeeded().await?;
    drop(admitted);

    let (rng, keys) = (deps.rng.clone(), deps.sealer.clone());
    // The hash that was verified: the write refuses if a password change replaced it.
    let verified_hash = user.password_hash.clone();
    let outcome = deps
        .gate
        .store
        .write(async move |tx| {
            sessions::create_login_session(tx, now, &rng, keys.as_ref(), &new, &verified_hash).await
        })
        .await?;
    deps.gate.metrics.login(match &outcome {
        LoginOutcome::Created(_) => "success",
        LoginOutcome::UserUnavailable => "failure",
        LoginOutcome::LimitReached => "rejected",
    });
    issue_login(deps, &client, outcome, audiences, &account_key, now)
}

/// The answer to a login whose session write ran (after the password, or after the
/// second factor): the token response with a new device token, or why not.
pub(super) fn issue_login(
    deps: &Issuing<'_>,
    client: &ClientSettings,
    outcome: LoginOutcome,
    audiences: Vec<String>,
    account_key: &str,
    now: Millis,
) -> Result<Issued, Error> {
    match outcome {
        LoginOutcome::Created(c) => {
            let scope = c.session.scope.clone();
            let mut issued = issue(
                deps.tokens,
                deps.settings,
                client,
                c.session,
                &c.user,
                &scope,
                audiences,
                c.token,
                now,
            )?;
            // A new device token with every successful login (OWASP device cookies).
            issued.body.device_token = Some(
                deps.devices
                    .issue(account_key, now)
                    .map_err(Error::Internal)?,
            );
            Ok(issued)
        }
        LoginOutcome::UserUnavailable => Err(Error::InvalidCredentials),
        LoginOutcome::LimitReached => Err(Error::Conflict(format!(
            "this account already has the maximum of {} active sessions; sign out of one first",
            deps.settings.session.max_per_user
        ))),
    }
}

/// Whether the user has a confirmed factor.
#[tracing::instrument(skip_all, fields(user_id = %user_id))]
pub async fn has_active_factor(deps: &Issuing<'_>, user_id: &UserId) -> Result<bool, Error> {
    let id = user_id.clone();
    Ok(deps
        .gate
        .store
        .read(async move |tx| mfa::has_active_factor(tx, &id).await)
        .await?)
}

/// The password was right and the account has a factor: stores the pending login and
/// answers `mfa_required` with its single-use `mfa_token` (256 CSPRNG bits, stored only
/// as SHA-256; 5 minutes).
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub async fn require_second_factor(
    deps: &Issuing<'_>,
    user: &User,
    new: &NewSession,
    audiences: Vec<String>,
    now: Millis,
    browser: bool,
) -> Result<Error, Error> {
    let token = AccountSecret::generate(deps.rng.as_ref()).map_err(Error::Internal)?;
    let pending = mfa::pending_login(
        token.hash(),
        now,
        &user.password_hash,
        new,
        audiences,
        browser,
    );
    let methods = deps
        .gate
        .store
        .write(async move |tx| {
            tx.insert_mfa_login(&pending).await?;
            mfa::factor_methods(tx, &pending.user_id).await
        })
        .await?;
    deps.gate.metrics.login("mfa_required");
    Ok(Error::SecondFactorRequired {
        mfa_token: Secret::new(token.expose().to_owned()),
        methods,
    })
}

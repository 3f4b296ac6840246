//! Signing in through an identity provider from a browser (docs/identity-providers-guide.md):
//! `start` stores a single-use state and sends the browser to the provider; `finish`
//! takes the state back, lets `idp::Providers` exchange the code and validate the ID
//! token, and finds, links or creates the account (`domain::identities`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;

use super::issue::{audiences_for, issue, Issued, Issuing};
use super::Error;
use crate::clock::Millis;
use crate::config::{ClientSettings, IdentityProviderSettings, Registration};
use crate::domain::email::Email;
use crate::domain::identities::{
    self, FederatedLogin, FederatedOutcome, FederationState, Identity, ProviderUser, UnlinkOutcome,
};
use crate::domain::model::{ClientContext, PendingAuthorization};
use crate::domain::sessions::{LoginOutcome, NewSession};
use crate::domain::{AuthMethod, IdentityId, Scope, TokenHash, UserId};
use crate::idp::{IdpError, Providers};
use crate::secret::Secret;

/// A state lives this long: enough to sign in at the provider, short enough that a
/// stolen one is soon useless.
const STATE_TTL_MS: Millis = 10 * 60 * 1000;

/// The context: issuing a session, and the providers.
pub struct Federation<'a> {
    pub issuing: Issuing<'a>,
    pub providers: &'a Providers,
}

/// Why a browser sign-in went wrong, as the code the browser gets in `#error=`
/// (RFC 6749 §4.1.2.1's codes) and a description.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub description: String,
}

impl Failure {
    fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable { .. } | Error::DatabaseUnavailable { .. } => {
                Failure::new("temporarily_unavailable", e.to_string())
            }
            Error::Internal(cause) => {
                tracing::error!(error = ?cause, "federated sign-in failed");
                Failure::new("server_error", "internal error")
            }
            other => Failure::new("access_denied", other.to_string()),
        }
    }
}

impl From<IdpError> for Failure {
    fn from(e: IdpError) -> Self {
        tracing::warn!(error = %e, "identity provider");
        match e {
            IdpError::Unavailable(_) => Failure::new(
                "temporarily_unavailable",
                "the identity provider cannot be reached; try again later",
            ),
            IdpError::Rejected(_) => Failure::new(
                "access_denied",
                "the identity provider's answer was refused",
            ),
        }
    }
}

/// A checked start: provider, client and a `return_to` on one of the client's origins.
pub struct Target<'a> {
    pub provider: &'a IdentityProviderSettings,
    pub client: &'a ClientSettings,
    pub return_to: String,
}

/// Checks what `/browser/federate/{idp}` names. `Err` is a 400 (an unknown client 401):
/// there is no address yet that may receive an error (never an open redirect).
pub fn target<'a>(
    deps: &'a Federation<'_>,
    provider: &str,
    client_id: Option<&str>,
    return_to: Option<&str>,
) -> Result<Target<'a>, Error> {
    let settings = deps.issuing.settings.as_ref();
    let provider = settings
        .identity_provider(provider)
        .ok_or_else(|| Error::InvalidRequest("no such identity provider".into()))?;
    let client = super::issue::resolve_client(settings, client_id)?;
    let return_to =
        return_to.ok_or_else(|| Error::InvalidRequest("return_to is required".into()))?;
    if !return_to_allowed(client, return_to) {
        return Err(Error::InvalidRequest(
            "return_to must be an address on one of the client's allowed origins, without a fragment"
                .into(),
        ));
    }
    Ok(Target {
        provider,
        client,
        return_to: return_to.to_owned(),
    })
}

/// `return_to`'s origin is exactly one of the client's `allowed_origins`; no user
/// information, no fragment (the answer goes there), at most 2 KiB.
pub fn return_to_allowed(client: &ClientSettings, return_to: &str) -> bool {
    let Ok(url) = url::Url::parse(return_to) else {
        return false;
    };
    let origin = url.origin().ascii_serialization();
    return_to.len() <= 2048
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && client.allowed_origins.contains(&origin)
}

/// The state the browser carries (query and cookie) and the provider's address.
pub struct Started {
    pub state: String,
    pub location: String,
}

fn random_b64(rng: &dyn SecureRandom, bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf)
        .map_err(|_| Error::internal(anyhow::anyhow!("the system's randomness failed")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

pub fn state_hash(state: &str) -> TokenHash {
    let d = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// Stores a new state (256 random bits; nonce 256 bits; PKCE verifier 256 bits, RFC
/// 7636 §4.1) and builds the provider's authorization URL.
#[tracing::instrument(skip_all, fields(provider = %target.provider.id, client_id = %target.client.id))]
pub async fn start(
    deps: &Federation<'_>,
    target: &Target<'_>,
    link_user: Option<UserId>,
    pending: Option<PendingAuthorization>,
) -> Result<Started, Failure> {
    let rng = deps.issuing.rng.as_ref();
    let state = random_b64(rng, 32)?;
    let nonce = random_b64(rng, 32)?;
    let verifier = random_b64(rng, 32)?;
    let authorization = deps
        .providers
        .authorization(target.provider, &state, &nonce, &verifier)
        .await?;
    let row = FederationState {
        state_hash: state_hash(&state),
        provider: target.provider.id.clone(),
        nonce,
        pkce_verifier: verifier,
        client_id: target.client.id.clone(),
        return_to: target.return_to.clone(),
        link_user,
        authorization: pending,
        expires_at: deps.issuing.gate.now() + STATE_TTL_MS,
    };
    deps.issuing
        .gate
        .store
        .write(async move |tx| tx.insert_federation_state(&row).await)
        .await
        .map_err(Error::from)?;
    Ok(Started {
        state,
        location: authorization.url,
    })
}

/// What the callback carries.
pub struct Callback<'a> {
    pub provider: &'a str,
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    /// The provider's own `error` (RFC 6749 §4.1.2.1), if it sent one.
    pub error: Option<&'a str>,
    /// The state cookie: the browser that started is the one that came back.
    pub cookie_state: Option<&'a str>,
    pub ctx: ClientContext,
}

/// Where a callback's answer goes: `return_to` (a browser sign-in), or the app's
/// redirect URI (an authorization request).
#[derive(Clone)]
pub struct ReportTo {
    pub client_id: String,
    pub return_to: String,
    pub authorization: Option<PendingAuthorization>,
}

/// The end of a callback: a session (sign-in), a link, or a failure to report.
/// `Err(None)`: nowhere to report it (unknown state).
pub enum Finished {
    SignedIn {
        issued: Box<Issued>,
        to: ReportTo,
    },
    Linked {
        return_to: String,
    },
    /// The account has a second factor: latchkey's sign-in page asks for it, then
    /// finishes as the flow started (a browser's cookie at `return_to`, or an app's code).
    SecondFactor {
        mfa_token: Secret<String>,
        methods: Vec<&'static str>,
        to: ReportTo,
    },
}

/// Takes the state (once), checks it against the cookie, the provider and its
/// expiry, then the code and ID token, then the account.
#[tracing::instrument(skip_all, fields(provider = %cb.provider))]
pub async fn finish(
    deps: &Federation<'_>,
    cb: Callback<'_>,
) -> Result<Finished, (Option<ReportTo>, Failure)> {
    let Some(state) = cb.state.filter(|s| !s.is_empty() && s.len() <= 128) else {
        return Err((
            None,
            Failure::new("invalid_request", "the state is missing"),
        ));
    };
    let hash = state_hash(state);
    let taken = deps
        .issuing
        .gate
        .store
        .write(async move |tx| tx.take_federation_state(&hash).await)
        .await
        .map_err(|e| (None, Failure::from(Error::from(e))))?;
    let Some(saved) = taken else {
        // No such sign-in in progress: reported as a missing resource.
        return Err((
            None,
            Failure::new("not_found", "unknown, used or expired state"),
        ));
    };
    let to = ReportTo {
        client_id: saved.client_id.clone(),
        return_to: saved.return_to.clone(),
        authorization: saved.authorization.clone(),
    };
    let return_to = saved.return_to.clone();
    let fail = |f: Failure| (Some(to.clone()), f);
    // The browser binding: the cookie set when this state was made (constant time).
    let bound = cb.cookie_state.is_some_and(|c| {
        use subtle::ConstantTimeEq;
        bool::from(c.as_bytes().ct_eq(state.as_bytes()))
    });
    if !bound {
        return Err(fail(Failure::new(
            "access_denied",
            "this sign-in was not started in this browser",
        )));
    }
    if saved.provider != cb.provider || saved.expires_at < deps.issuing.gate.now() {
        return Err(fail(Failure::new(
            "invalid_request",
            "unknown, used or expired state",
        )));
    }
    if let Some(e) = cb.error {
        tracing::info!(error = %e.chars().take(64).collect::<String>(), "the provider refused");
        return Err(fail(Failure::new(
            "access_denied",
            "the identity provider refused",
        )));
    }
    let code = cb
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail(Failure::new("invalid_request", "the code is missing")))?;
    let settings = deps.issuing.settings.as_ref();
    let provider = settings
        .identity_provider(&saved.provider)
        .ok_or_else(|| fail(Failure::new("invalid_request", "no such identity provider")))?;
    let client = settings
        .client(&saved.client_id)
        .ok_or_else(|| fail(Failure::new("invalid_request", "the client is gone")))?;
    let verified = deps
        .providers
        .finish(provider, code, &saved.pkce_verifier, &saved.nonce)
        .await
        .map_err(|e| fail(e.into()))?;
    let who = ProviderUser {
        provider: provider.id.clone(),
        subject: verified.subject,
        // An address latchkey cannot hold is as good as none.
        email: verified.email.as_deref().and_then(|e| Email::parse(e).ok()),
        email_verified: verified.email_verified,
        preferred_username: verified.preferred_username,
    };
    let remember_me = true;
    // An app's request (`/oauth/authorize?idp=…&scope=…`) gets the scope it asked for
    // and was allowed at the request, as from the sign-in page; a browser sign-in none.
    let scope = match saved
        .authorization
        .as_ref()
        .and_then(|p| p.scope.as_deref())
    {
        Some(s) => Scope::parse(s).map_err(|e| fail(Failure::new("invalid_scope", e)))?,
        None => Scope::default(),
    };
    let req = FederatedLogin {
        who,
        link_by_verified_email: provider.link_by_verified_email,
        may_create_account: settings.registration == Registration::Open,
        link_user: saved.link_user.clone(),
        session: NewSession {
            user_id: UserId::new_random(),
            client_id: client.id.clone(),
            scope,
            remember_me,
            lifetimes: settings.lifetimes(Some(client), remember_me),
            max_per_user: settings.session.max_per_user,
            limit_policy: settings.session.limit_policy,
            ctx: cb.ctx,
            amr: vec![AuthMethod::Fed],
            auth_time: None,
            idp: Some(provider.id.clone()),
        },
    };
    let now = deps.issuing.gate.now();
    let session = req.session.clone();
    let (rng, keys) = (deps.issuing.rng.clone(), deps.issuing.sealer.clone());
    let outcome = deps
        .issuing
        .gate
        .store
        .write(async move |tx| {
            identities::federated_login(tx, now, &rng, keys.as_ref(), &req).await
        })
        .await
        .map_err(|e| fail(Error::from(e).into()))?;
    match outcome {
        FederatedOutcome::Linked => Ok(Finished::Linked { return_to }),
        FederatedOutcome::LinkedElsewhere => Err(fail(Failure::new(
            "access_denied",
            "this identity is linked to another account",
        ))),
        FederatedOutcome::SecondFactorRequired(user) => {
            // A pending second step, as after a password (5 minutes, single use); it
            // remembers the provider, so the session's amr starts with `fed`.
            let audiences = audiences_for(settings, client, &[]).map_err(|e| fail(e.into()))?;
            let new = NewSession {
                user_id: user.id.clone(),
                ..session
            };
            let browser = to.authorization.is_none();
            let pending = super::login::require_second_factor(
                &deps.issuing,
                &user,
                &new,
                audiences,
                now,
                browser,
            )
            .await;
            match pending {
                Ok(Error::SecondFactorRequired { mfa_token, methods }) => {
                    Ok(Finished::SecondFactor {
                        mfa_token,
                        methods,
                        to,
                    })
                }
                Ok(other) | Err(other) => Err(fail(other.into())),
            }
        }
        FederatedOutcome::SecondFactorBlocksEmailLink => Err(fail(Failure::new(
            "access_denied",
            "an account with a second factor is linked only by its signed-in owner",
        ))),
        FederatedOutcome::RegistrationClosed => Err(fail(Failure::new(
            "access_denied",
            "registration is closed",
        ))),
        FederatedOutcome::Session(LoginOutcome::Created(c), _) => {
            deps.issuing.gate.metrics.login("success");
            let audiences = audiences_for(settings, client, &[]).map_err(|e| fail(e.into()))?;
            let scope = c.session.scope.clone();
            let issued = issue(
                deps.issuing.tokens,
                settings,
                client,
                c.session,
                &c.user,
                &scope,
                audiences,
                c.token,
                now,
            )
            .map_err(|e| fail(e.into()))?;
            Ok(Finished::SignedIn {
                issued: Box::new(issued),
                to,
            })
        }
        FederatedOutcome::Session(LoginOutcome::UserUnavailable, _) => Err(fail(Failure::new(
            "access_denied",
            "this account is disabled",
        ))),
        FederatedOutcome::Session(LoginOutcome::LimitReached, _) => Err(fail(Failure::new(
            "access_denied",
            "this account already has the maximum of active sessions",
        ))),
    }
}

/// `GET /me/identities`.
pub async fn identities_of(
    store: &crate::store::Store,
    user: &UserId,
) -> Result<Vec<Identity>, Error> {
    let user = user.clone();
    Ok(store
        .read(async move |tx| tx.identities_of_user(&user).await)
        .await?)
}

/// `DELETE /me/identities/{id}`: never the account's last way to sign in.
#[tracing::instrument(skip_all, fields(user_id = %user))]
pub async fn unlink(
    store: &crate::store::Store,
    now: Millis,
    user: &UserId,
    id: &str,
    ctx: ClientContext,
) -> Result<(), Error> {
    let not_found = || Error::NotFound("no such identity".into());
    let id = IdentityId::parse(id).ok_or_else(not_found)?;
    let user = user.clone();
    let outcome = store
        .write(async move |tx| identities::unlink(tx, now, &user, &id, &ctx).await)
        .await?;
    match outcome {
        UnlinkOutcome::Unlinked => Ok(()),
        UnlinkOutcome::NotFound => Err(not_found()),
        UnlinkOutcome::LastWayIn => Err(Error::Conflict(
            "this is the account's last way to sign in: set a password, add a passkey or link \
             another identity first"
                .into(),
        )),
    }
}

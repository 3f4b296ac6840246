//! The second step of a login that answered `mfa_required` (docs/contract.md "Second
//! factor", "Passkeys"): a TOTP code, a recovery code, or a passkey. Every check is
//! admitted by the login throttle and counts there when wrong (`password_check`).

use webauthn_rs::prelude::PublicKeyCredential;

use super::issue::{Issued, Issuing};
use super::login::{issue_login, Origin};
use super::mfa::parse_proof;
use super::passkey_login;
use super::passkeys::parse_credential;
use super::password_check::Purpose;
use super::Error;
use crate::domain::email::AccountSecret;
use crate::domain::mfa::{self, FinishOutcome, Proof};
use crate::domain::sessions::{LoginOutcome, NewSession};
use crate::domain::{AuthMethod, TokenHash, Username};

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
    /// A passkey instead of a code: the ceremony `/login/mfa/passkey/start` gave, and
    /// the authenticator's answer.
    pub ceremony: Option<String>,
    pub credential: Option<serde_json::Value>,
}

/// What finishes the second step.
enum StepProof {
    Code(Proof),
    Passkey {
        ceremony: String,
        credential: Box<PublicKeyCredential>,
    },
}

/// Exactly one of a code, a recovery code, or a passkey's ceremony and answer; anything
/// else is 400 `invalid_request` and counts for nothing.
fn parse_step(input: &mut SecondStep) -> Result<StepProof, Error> {
    let ceremony = input.ceremony.take().filter(|c| !c.is_empty());
    match (ceremony, input.credential.take()) {
        (None, None) => {
            parse_proof(input.code.take(), input.recovery_code.take()).map(StepProof::Code)
        }
        (Some(ceremony), Some(credential)) => {
            let has_code = [&input.code, &input.recovery_code]
                .iter()
                .any(|c| c.as_deref().is_some_and(|c| !c.is_empty()));
            if has_code {
                return Err(Error::InvalidRequest(
                    "send a code, a recovery code or a passkey's answer, not several".into(),
                ));
            }
            Ok(StepProof::Passkey {
                ceremony,
                credential: Box::new(parse_credential(credential)?),
            })
        }
        _ => Err(Error::InvalidRequest(
            "a passkey's answer needs both ceremony and credential".into(),
        )),
    }
}

/// Finishes a login that answered `mfa_required`. `allowed` vets the pending login's
/// client before anything changes (browser mode: the Origin must be one of its
/// `allowed_origins`). Answers as `/login` does, the session with `amr: ["pwd","otp"]`
/// (or `["pwd","hwk","mfa"]` after a passkey; `fed` instead of `pwd` after an identity
/// provider) and the first step's `auth_time`.
#[tracing::instrument(skip_all)]
pub async fn finish_login(
    deps: &Issuing<'_>,
    mut input: SecondStep,
    from: Origin,
    allowed: &dyn Fn(&str) -> Result<(), Error>,
) -> Result<Issued, Error> {
    let step = parse_step(&mut input)?;
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
    // Admitted like a password check, device token included, exactly as at `/login`:
    // each wrong code counts (docs/contract.md "Login throttling").
    let admitted = deps
        .admit_login_step(
            &account_key,
            input.device_token.as_deref(),
            Purpose::SecondFactor,
            &client.id,
            &from,
        )
        .await?;
    // The first step: the password, or an identity provider (`fed`).
    let first = if pending.idp.is_some() {
        AuthMethod::Fed
    } else {
        AuthMethod::Pwd
    };
    let (proof, amr) = match step {
        // RFC 8176 §2: a password, then a one-time password.
        StepProof::Code(proof) => (proof, vec![first, AuthMethod::Otp]),
        // A password, then a key held with the user verified by it.
        StepProof::Passkey {
            ceremony,
            credential,
        } => {
            let used = passkey_login::second_factor_proof(
                deps,
                &ceremony,
                &credential,
                &pending.user_id,
                input.browser,
                &client.id,
                &from.ctx,
            )
            .await?;
            let amr = vec![first, AuthMethod::Hwk, AuthMethod::Mfa];
            (Proof::Passkey(used), amr)
        }
    };
    let new = NewSession {
        user_id: pending.user_id.clone(),
        client_id: client.id.clone(),
        scope: pending.scope.clone(),
        remember_me: pending.remember_me,
        lifetimes: deps.settings.lifetimes(Some(&client), pending.remember_me),
        max_per_user: deps.settings.session.max_per_user,
        limit_policy: deps.settings.session.limit_policy,
        ctx: from.ctx,
        amr,
        auth_time: Some(pending.auth_time),
        idp: pending.idp.clone(),
    };
    let (rng, keys) = (deps.rng.clone(), deps.sealer.clone());
    let known_device = admitted.from_known_device();
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
                LoginOutcome::Created(_) => "success",
                LoginOutcome::UserUnavailable => "failure",
                LoginOutcome::LimitReached => "rejected",
            });
            issue_login(deps, &client, outcome, pending.audiences, &account_key, now)
        }
    }
}

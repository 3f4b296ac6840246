use super::{origin, Fixture};
use crate::domain::totp::{self, TotpSecret};
use crate::domain::AuthMethod;
use crate::service::mfa::{confirm, enrol};
use crate::service::mfa_login::{finish_login, SecondStep};
use crate::service::Error;

/// The code an authenticator app shows for the base32 `secret` now.
fn code_now(f: &Fixture, secret: &str) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    TotpSecret::from_bytes(bytes).code_at_step(totp::step_at(f.now()), totp::DIGITS)
}

/// A code that is not `code` (each digit moved by one).
fn wrong(code: &str) -> String {
    code.bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
        .collect()
}

/// Alice with a confirmed factor: its base32 secret and recovery codes.
async fn enrolled(f: &Fixture) -> (String, Vec<String>) {
    f.user("alice", "correct horse battery").await;
    let issued = f.login("alice", "correct horse battery").await.unwrap();
    let auth = f.authenticate(&issued.body.access_token).await.unwrap();
    let enrolment = enrol(
        &f.issuing(),
        &auth,
        "correct horse battery".into(),
        origin(),
    )
    .await
    .unwrap();
    let secret = enrolment.secret.expose().clone();
    let codes = confirm(&f.issuing(), &auth, Some(code_now(f, &secret)), origin())
        .await
        .unwrap();
    // The next code: the one just used is spent for its time step.
    f.advance(totp::STEP_SECS);
    (secret, codes)
}

fn second_step(mfa_token: &str, code: Option<String>, recovery_code: Option<String>) -> SecondStep {
    SecondStep {
        mfa_token: mfa_token.to_owned(),
        code,
        recovery_code,
        device_token: None,
        browser: false,
        ceremony: None,
        credential: None,
    }
}

async fn mfa_token(f: &Fixture) -> String {
    match f.login("alice", "correct horse battery").await {
        Err(Error::SecondFactorRequired { mfa_token, .. }) => mfa_token.expose().clone(),
        other => panic!("expected a second step, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn with_a_factor_the_password_alone_only_starts_the_login_and_a_right_code_finishes_it() {
    let f = Fixture::new();
    let (secret, codes) = enrolled(&f).await;
    assert_eq!(codes.len(), totp::RECOVERY_CODES);
    let token = mfa_token(&f).await;
    let any = &|_: &str| Ok(());
    let wrong_code = wrong(&code_now(&f, &secret));
    let refused = finish_login(
        &f.issuing(),
        second_step(&token, Some(wrong_code), None),
        origin(),
        any,
    )
    .await;
    assert!(
        matches!(refused, Err(Error::WrongCode)),
        "{:?}",
        refused.as_ref().err()
    );
    let right = second_step(&token, Some(code_now(&f, &secret)), None);
    let issued = finish_login(&f.issuing(), right, origin(), any)
        .await
        .unwrap();
    assert_eq!(issued.session.amr, [AuthMethod::Pwd, AuthMethod::Otp]);
    // The token is single-use.
    let again = second_step(&token, Some(code_now(&f, &secret)), None);
    let spent = finish_login(&f.issuing(), again, origin(), any).await;
    assert!(
        matches!(spent, Err(Error::InvalidGrant(_))),
        "{:?}",
        spent.as_ref().err()
    );
}

#[tokio::test]
async fn a_recovery_code_finishes_a_login_once() {
    let f = Fixture::new();
    let (_, codes) = enrolled(&f).await;
    let any = &|_: &str| Ok(());
    let token = mfa_token(&f).await;
    let step = second_step(&token, None, Some(codes[0].clone()));
    finish_login(&f.issuing(), step, origin(), any)
        .await
        .unwrap();
    let token = mfa_token(&f).await;
    let step = second_step(&token, None, Some(codes[0].clone()));
    let reused = finish_login(&f.issuing(), step, origin(), any).await;
    assert!(
        matches!(reused, Err(Error::WrongCode)),
        "{:?}",
        reused.as_ref().err()
    );
}

#[tokio::test]
async fn a_pending_login_refused_for_its_client_spends_neither_token_nor_code() {
    let f = Fixture::new();
    let (secret, _) = enrolled(&f).await;
    let token = mfa_token(&f).await;
    let refuse = &|_: &str| Err(Error::Forbidden("not from here".into()));
    let step = second_step(&token, Some(code_now(&f, &secret)), None);
    let refused = finish_login(&f.issuing(), step, origin(), refuse).await;
    assert!(
        matches!(refused, Err(Error::Forbidden(_))),
        "{:?}",
        refused.as_ref().err()
    );
    // Nothing was spent: the same token and code still finish the login.
    let step = second_step(&token, Some(code_now(&f, &secret)), None);
    finish_login(&f.issuing(), step, origin(), &|_: &str| Ok(()))
        .await
        .unwrap();
}

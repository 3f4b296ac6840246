use super::{origin, Fixture};
use crate::domain::recovery::StartedBy;
use crate::domain::UserId;
use crate::service::recovery::{
    admin_reset, forgot_password, reset_password, start_reset, ForgotInput, Recovery,
};
use crate::service::Error;

#[tokio::test]
async fn a_reset_token_sets_the_password_once_and_ends_every_session() {
    let f = Fixture::new();
    let user = f.user("alice", "correct horse battery").await;
    let before = f.login("alice", "correct horse battery").await.unwrap();
    let ttl = f.state.settings.mail.reset_ttl.as_millis_i64();
    let rng = ring::rand::SystemRandom::new();
    let started = start_reset(&f.state.store, &rng, f.now(), ttl, user.id, StartedBy::Cli)
        .await
        .unwrap();
    let token = started.secret.expose().to_owned();
    reset_password(
        &Recovery::of(&f.state),
        &token,
        "a brand new password".into(),
        origin(),
    )
    .await
    .unwrap();
    let old = f.authenticate(&before.body.access_token).await;
    assert!(
        matches!(old, Err(Error::Unauthenticated(_))),
        "{:?}",
        old.as_ref().err()
    );
    let with_old = f.login("alice", "correct horse battery").await;
    assert!(
        matches!(with_old, Err(Error::InvalidCredentials)),
        "{:?}",
        with_old.as_ref().err()
    );
    f.login("alice", "a brand new password").await.unwrap();
    let again = reset_password(
        &Recovery::of(&f.state),
        &token,
        "yet another password".into(),
        origin(),
    )
    .await;
    assert!(
        matches!(again, Err(Error::InvalidGrant(_))),
        "{:?}",
        again.as_ref().err()
    );
}

#[tokio::test]
async fn an_expired_reset_token_is_an_invalid_grant() {
    let f = Fixture::new();
    let user = f.user("alice", "correct horse battery").await;
    let ttl = f.state.settings.mail.reset_ttl.as_millis_i64();
    let rng = ring::rand::SystemRandom::new();
    let started = start_reset(&f.state.store, &rng, f.now(), ttl, user.id, StartedBy::Cli)
        .await
        .unwrap();
    f.advance(f.state.settings.mail.reset_ttl.as_secs() + 1);
    let token = started.secret.expose().to_owned();
    let late = reset_password(
        &Recovery::of(&f.state),
        &token,
        "a brand new password".into(),
        origin(),
    )
    .await;
    assert!(
        matches!(late, Err(Error::InvalidGrant(_))),
        "{:?}",
        late.as_ref().err()
    );
    f.login("alice", "correct horse battery").await.unwrap();
}

#[tokio::test]
async fn forgot_password_answers_alike_for_an_account_and_for_nobody() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    for name in ["alice", "nobody"] {
        let input = ForgotInput {
            username: Some(name.into()),
            email: None,
        };
        forgot_password(&Recovery::of(&f.state), input, origin())
            .await
            .unwrap();
    }
    let neither = ForgotInput {
        username: None,
        email: None,
    };
    let e = forgot_password(&Recovery::of(&f.state), neither, origin()).await;
    assert!(
        matches!(e, Err(Error::InvalidRequest(_))),
        "{:?}",
        e.as_ref().err()
    );
}

#[tokio::test]
async fn an_admin_reset_needs_a_user_with_a_verified_address() {
    let f = Fixture::new();
    let user = f.user("alice", "correct horse battery").await;
    let unverified = admin_reset(&Recovery::of(&f.state), user.id).await;
    assert!(
        matches!(unverified, Err(Error::Conflict(_))),
        "{:?}",
        unverified.as_ref().err()
    );
    let nobody = admin_reset(&Recovery::of(&f.state), UserId::new_random()).await;
    assert!(
        matches!(nobody, Err(Error::NotFound(_))),
        "{:?}",
        nobody.as_ref().err()
    );
}

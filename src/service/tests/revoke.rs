use super::{origin, Fixture};
use crate::domain::RevocationReason;
use crate::service::refresh::{refresh, RefreshInput};
use crate::service::revoke::{end_own_session, logout, revoke_token, LogoutScope, TokenLookup};
use crate::service::Error;

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_session_for_its_access_tokens_too() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let issued = f.login("alice", "correct horse battery").await.unwrap();
    let access = issued.body.access_token.clone();
    f.authenticate(&access).await.unwrap();
    let reason = RevocationReason::Revoked;
    let raw = issued.refresh.expose();
    assert!(
        revoke_token(&TokenLookup::of(&f.state), raw, None, origin().ctx, reason)
            .await
            .unwrap()
    );
    let after = f.authenticate(&access).await;
    assert!(
        matches!(after, Err(Error::Unauthenticated(_))),
        "{:?}",
        after.as_ref().err()
    );
    let input = RefreshInput {
        raw_token: raw,
        client_id: None,
        scope: None,
        ctx: origin().ctx,
    };
    let refreshed = refresh(&f.issuing(), input).await;
    assert!(
        matches!(refreshed, Err(Error::InvalidGrant(_))),
        "{:?}",
        refreshed.as_ref().err()
    );
}

#[tokio::test]
async fn a_client_cannot_revoke_a_session_of_another_client_nor_an_unknown_token() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let issued = f.login("alice", "correct horse battery").await.unwrap();
    let reason = RevocationReason::Revoked;
    let raw = issued.refresh.expose();
    let other = Some("mobile".to_owned());
    assert!(
        !revoke_token(&TokenLookup::of(&f.state), raw, other, origin().ctx, reason)
            .await
            .unwrap()
    );
    assert!(!revoke_token(
        &TokenLookup::of(&f.state),
        "nonsense",
        None,
        origin().ctx,
        reason
    )
    .await
    .unwrap());
    f.authenticate(&issued.body.access_token).await.unwrap();
}

#[tokio::test]
async fn logout_of_the_others_keeps_only_the_current_session() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let here = f.login("alice", "correct horse battery").await.unwrap();
    let there = f.login("alice", "correct horse battery").await.unwrap();
    let auth = f.authenticate(&here.body.access_token).await.unwrap();
    let ended = logout(
        &f.state.store,
        f.now(),
        &auth,
        LogoutScope::Others,
        origin().ctx,
    )
    .await
    .unwrap();
    assert_eq!(ended, 1);
    f.authenticate(&here.body.access_token).await.unwrap();
    let gone = f.authenticate(&there.body.access_token).await;
    assert!(
        matches!(gone, Err(Error::Unauthenticated(_))),
        "{:?}",
        gone.as_ref().err()
    );
}

#[tokio::test]
async fn someone_elses_session_is_as_unknown_as_no_session() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    f.user("mallory", "another good password").await;
    let alice = f.login("alice", "correct horse battery").await.unwrap();
    let mallory = f.login("mallory", "another good password").await.unwrap();
    let auth = f.authenticate(&mallory.body.access_token).await.unwrap();
    let e = end_own_session(
        &f.state.store,
        f.now(),
        &auth,
        alice.session.id.clone(),
        origin().ctx,
    )
    .await;
    assert!(
        matches!(e, Err(Error::NotFound(_))),
        "{:?}",
        e.as_ref().err()
    );
    f.authenticate(&alice.body.access_token).await.unwrap();
}

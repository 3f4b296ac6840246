use super::{origin, Fixture};
use crate::service::refresh::{refresh, RefreshInput};
use crate::service::Error;

fn input(raw: &str) -> RefreshInput<'_> {
    RefreshInput {
        raw_token: raw,
        client_id: None,
        scope: None,
        ctx: origin().ctx,
    }
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_keeps_the_session() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let first = f.login("alice", "correct horse battery").await.unwrap();
    let second = refresh(&f.issuing(), input(first.refresh.expose()))
        .await
        .unwrap();
    assert_ne!(first.refresh.expose(), second.refresh.expose());
    assert_eq!(first.session.id, second.session.id);
}

#[tokio::test]
async fn an_old_token_inside_the_grace_interval_gets_the_current_token_again() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let first = f.login("alice", "correct horse battery").await.unwrap();
    let second = refresh(&f.issuing(), input(first.refresh.expose()))
        .await
        .unwrap();
    f.advance(2);
    let again = refresh(&f.issuing(), input(first.refresh.expose()))
        .await
        .unwrap();
    assert_eq!(again.session.id, second.session.id);
    // The session lives on: its newest token still refreshes.
    refresh(&f.issuing(), input(again.refresh.expose()))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_old_token_after_the_grace_interval_ends_the_whole_family() {
    let f = Fixture::new();
    f.user("alice", "correct horse battery").await;
    let first = f.login("alice", "correct horse battery").await.unwrap();
    let second = refresh(&f.issuing(), input(first.refresh.expose()))
        .await
        .unwrap();
    f.advance(f.state.settings.refresh.reuse_interval.as_secs() + 1);
    let reused = refresh(&f.issuing(), input(first.refresh.expose())).await;
    assert!(
        matches!(reused, Err(Error::InvalidGrant(_))),
        "{:?}",
        reused.as_ref().err()
    );
    let current = refresh(&f.issuing(), input(second.refresh.expose())).await;
    assert!(
        matches!(current, Err(Error::InvalidGrant(_))),
        "{:?}",
        current.as_ref().err()
    );
}

#[tokio::test]
async fn a_token_that_is_not_ours_is_an_invalid_grant_and_an_unknown_client_is_refused() {
    let f = Fixture::new();
    let garbage = refresh(&f.issuing(), input("not a refresh token")).await;
    assert!(
        matches!(garbage, Err(Error::InvalidGrant(_))),
        "{:?}",
        garbage.as_ref().err()
    );
    f.user("alice", "correct horse battery").await;
    let first = f.login("alice", "correct horse battery").await.unwrap();
    let mut asked = input(first.refresh.expose());
    asked.client_id = Some("nobody");
    let refused = refresh(&f.issuing(), asked).await;
    assert!(
        matches!(refused, Err(Error::UnknownClient)),
        "{:?}",
        refused.as_ref().err()
    );
}

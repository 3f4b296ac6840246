//! Users, security events, email addresses and account tokens.

use super::*;

#[tokio::test]
async fn users_are_stored_found_changed_disabled_and_erased_with_what_they_own() {
    let (store, _dir) = store().await;
    store.probe().await.unwrap();
    two_users(&store).await;
    let (by_id, by_key, all, taken, free) = write_job!(store, |tx| {
        tx.ping().await?;
        (
            tx.user_by_id(&uid("alice")).await?,
            tx.user_by_username_key("bob").await?,
            tx.all_users().await?,
            tx.username_skeleton_taken("a11ce").await?,
            tx.username_skeleton_taken("carol").await?,
        )
    });
    assert_eq!(by_id.unwrap().password_hash, "hash-of-alice");
    let bob = by_key.unwrap();
    assert_eq!((bob.id, bob.roles), (uid("bob"), vec!["reader".into()]));
    let ids: Vec<_> = all.into_iter().map(|u| u.id).collect();
    assert_eq!(ids, [uid("alice"), uid("bob")], "oldest first");
    assert!(taken && !free);

    let (first, again, user) = write_job!(store, |tx| {
        tx.set_password_hash(&uid("alice"), "new-hash").await?;
        let first = tx.set_disabled(&uid("alice"), T0 + 10).await?;
        let again = tx.set_disabled(&uid("alice"), T0 + 20).await?;
        (first, again, tx.user_by_id(&uid("alice")).await?.unwrap())
    });
    assert!(first && !again, "disabled once");
    assert_eq!(user.password_hash, "new-hash");
    assert_eq!(user.disabled_at, Some(T0 + 10));

    // Bob's event acted on by alice keeps the event but forgets her.
    let mut by_alice = NewEvent::new(EventKind::UserDisabled).user(&uid("bob"));
    by_alice.actor = Some(Actor {
        user_id: Some(uid("alice")),
        ip: Some("192.0.2.9".into()),
        user_agent: Some("curl".into()),
    });
    let (deleted, gone, sessions, log, bob_events) = write_job!(store, |tx| {
        tx.insert_event(
            T0,
            &NewEvent::new(EventKind::LoginSucceeded).user(&uid("alice")),
        )
        .await?;
        tx.insert_event(T0, &by_alice).await?;
        let deleted = tx.delete_user(&uid("alice"), T0 + 30).await?;
        tx.scrub_after_commit().await?;
        let gone = !tx.delete_user(&uid("alice"), T0 + 30).await?;
        let bob = EventQuery {
            user_id: Some(uid("bob")),
            limit: 10,
            ..Default::default()
        };
        (
            deleted,
            gone && tx.user_by_id(&uid("alice")).await?.is_none(),
            tx.session_by_id(&sid("sa")).await?,
            tx.revocations_after(0, 0, 10).await?,
            tx.events(&bob).await?,
        )
    });
    assert!(deleted && gone);
    assert!(sessions.is_none(), "the user's sessions went with them");
    let logged: Vec<_> = log
        .iter()
        .map(|r| (r.session_id.clone(), r.revoked_at))
        .collect();
    assert_eq!(
        logged,
        [(sid("sa"), T0 + 30)],
        "the live session entered the log"
    );
    assert_eq!(bob_events.len(), 1);
    assert!(bob_events[0].actor.is_none(), "{:?}", bob_events[0].actor);
    assert!(store
        .read(async |tx| tx
            .events(&EventQuery {
                user_id: Some(uid("alice")),
                limit: 10,
                ..Default::default()
            })
            .await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn events_are_recorded_filtered_newest_first_and_deleted_oldest_first() {
    let (store, _dir) = store().await;
    let device = serde_json::json!({"network": "203.0.113.0/24", "ua_family": "Firefox"});
    let login = NewEvent::new(EventKind::LoginSucceeded)
        .user(&uid("alice"))
        .detail(device);
    write_job!(store, |tx| {
        tx.insert_event(
            T0,
            &NewEvent::new(EventKind::LoginFailed).user(&uid("alice")),
        )
        .await?;
        tx.insert_event(T0 + 1, &login).await?;
        tx.insert_event(T0 + 2, &NewEvent::new(EventKind::Logout).user(&uid("bob")))
            .await?;
    });
    let q = |user: &str, kind: Option<&str>| EventQuery {
        user_id: Some(uid(user)),
        kind: kind.map(Into::into),
        limit: 10,
        ..Default::default()
    };
    let (alice, logins, all, before, window) = write_job!(store, |tx| {
        let all = tx
            .events(&EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await?;
        let before = EventQuery {
            before: Some(all[0].id),
            limit: 1,
            ..Default::default()
        };
        let window = EventQuery {
            since: Some(T0 + 1),
            until: Some(T0 + 2),
            limit: 10,
            ..Default::default()
        };
        (
            tx.events(&q("alice", None)).await?,
            tx.events(&q("alice", Some("login_succeeded"))).await?,
            all.clone(),
            tx.events(&before).await?,
            tx.events(&window).await?,
        )
    });
    let kinds =
        |v: &[latchkey::domain::model::Event]| v.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    assert_eq!(
        kinds(&alice),
        ["login_succeeded", "login_failed"],
        "newest first"
    );
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].detail.as_ref().unwrap()["ua_family"], "Firefox");
    assert_eq!(kinds(&all), ["logout", "login_succeeded", "login_failed"]);
    assert_eq!(kinds(&before), ["login_succeeded"], "the cursor pages back");
    assert_eq!(kinds(&window), ["login_succeeded"]);

    let answers = write_job!(store, |tx| [
        tx.has_logged_in_before(&uid("alice")).await?,
        !tx.has_logged_in_before(&uid("bob")).await?,
        tx.seen_device(&uid("alice"), T0, "203.0.113.0/24", "Firefox")
            .await?,
        !tx.seen_device(&uid("alice"), T0 + 2, "203.0.113.0/24", "Firefox")
            .await?,
        !tx.seen_device(&uid("alice"), T0, "203.0.113.0/24", "Chrome")
            .await?,
    ]);
    assert_eq!(answers, [true; 5]);
    let deleted = write_job!(store, |tx| (
        tx.delete_events_before(T0 + 2, 1).await?,
        tx.delete_events_before(T0 + 2, 10).await?,
        tx.delete_events_before(T0 + 2, 10).await?
    ));
    assert_eq!(deleted, (1, 1, 0));
}

#[tokio::test]
async fn an_address_is_claimed_by_many_verified_by_one_and_its_rivals_dropped() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let email = |user: &str| UserEmail {
        user_id: uid(user),
        email: "Shared@example.com".into(),
        verified_at: None,
    };
    let verify = |user: &str| AccountToken {
        token_hash: hash(if user == "alice" { 30 } else { 31 }),
        user_id: uid(user),
        purpose: TokenPurpose::Verify,
        email_key: Some("shared@example.com".into()),
        created_at: T0,
        expires_at: T0 + HOUR,
    };
    let (mine, claims, owner_before) = write_job!(store, |tx| {
        tx.set_email(&email("bob"), "shared@example.com").await?;
        tx.set_email(&email("alice"), "shared@example.com").await?;
        tx.insert_account_token(&verify("alice")).await?;
        tx.insert_account_token(&verify("bob")).await?;
        (
            tx.email_of_user(&uid("alice")).await?,
            tx.lock_email_claims("shared@example.com").await?,
            tx.user_by_verified_email("shared@example.com").await?,
        )
    });
    assert_eq!(mine, Some(email("alice")));
    let claimants: Vec<_> = claims.iter().map(|c| c.user_id.clone()).collect();
    assert_eq!(claimants, [uid("alice"), uid("bob")], "in user id order");
    assert!(owner_before.is_none(), "an unverified claim owns nothing");

    let (stale, verified, dropped, owner, claims, rival_token) = write_job!(store, |tx| (
        tx.mark_email_verified(&uid("alice"), "other@example.com", T0 + 1)
            .await?,
        tx.mark_email_verified(&uid("alice"), "shared@example.com", T0 + 2)
            .await?,
        tx.drop_unverified_claims("shared@example.com", &uid("alice"))
            .await?,
        tx.user_by_verified_email("shared@example.com").await?,
        tx.lock_email_claims("shared@example.com").await?,
        tx.account_token_by_hash(&hash(31)).await?
    ));
    assert!(!stale && verified);
    assert_eq!(dropped, 1);
    assert_eq!(owner.map(|u| u.id), Some(uid("alice")));
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].verified_at, Some(T0 + 2));
    assert!(
        rival_token.is_none(),
        "the rival's verification token went too"
    );
    assert!(write_job!(store, |tx| tx.email_of_user(&uid("bob")).await?).is_none());
}

#[tokio::test]
async fn account_tokens_are_issued_found_counted_and_deleted() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let reset = |n: u8, created_at: i64| AccountToken {
        token_hash: hash(n),
        user_id: uid("alice"),
        purpose: TokenPurpose::Reset,
        email_key: None,
        created_at,
        expires_at: created_at + HOUR,
    };
    let (found, recent, none_verify) = write_job!(store, |tx| {
        for (n, at) in [(40, T0), (41, T0 + 10), (42, T0 + 20)] {
            tx.insert_account_token(&reset(n, at)).await?;
        }
        (
            tx.account_token_by_hash(&hash(41)).await?,
            tx.count_account_tokens_since(&uid("alice"), TokenPurpose::Reset, T0)
                .await?,
            tx.count_account_tokens_since(&uid("alice"), TokenPurpose::Verify, 0)
                .await?,
        )
    });
    let found = found.unwrap();
    assert_eq!(
        (found.user_id, found.purpose, found.email_key),
        (uid("alice"), TokenPurpose::Reset, None)
    );
    assert_eq!(
        (found.created_at, found.expires_at),
        (T0 + 10, T0 + 10 + HOUR)
    );
    assert_eq!((recent, none_verify), (2, 0), "issued after `since`");
    let deleted = write_job!(store, |tx| (
        tx.delete_account_tokens_expired_before(T0 + HOUR + 5)
            .await?,
        tx.delete_account_tokens(&uid("alice"), TokenPurpose::Verify)
            .await?,
        tx.delete_account_tokens(&uid("alice"), TokenPurpose::Reset)
            .await?,
        tx.account_token_by_hash(&hash(42)).await?.is_none()
    ));
    assert_eq!(deleted, (1, 0, 2, true));
}

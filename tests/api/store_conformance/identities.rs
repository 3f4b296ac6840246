//! Identities at OpenID providers and the single-use federation states.

use latchkey::domain::identities::{FederationState, Identity};
use latchkey::domain::model::{AuthorizationCode, PendingAuthorization};
use latchkey::domain::IdentityId;

use super::*;

fn identity(id: &str, user_id: &str, subject: &str, at: i64) -> Identity {
    Identity {
        id: IdentityId::from(uuid_of(id)),
        user_id: uid(user_id),
        provider: "corp".into(),
        subject: subject.into(),
        email: Some(format!("{subject}@example.com")),
        email_verified: false,
        created_at: at,
        last_login_at: at,
    }
}

fn federation_state(n: u8, link_user: Option<&str>, expires_at: i64) -> FederationState {
    FederationState {
        state_hash: hash(n),
        provider: "corp".into(),
        nonce: format!("nonce-{n}"),
        pkce_verifier: format!("verifier-{n}"),
        client_id: "web".into(),
        return_to: "https://app.example/signed-in".into(),
        link_user: link_user.map(uid),
        // One of them waits for an app's authorization request.
        authorization: (n == 3).then(|| PendingAuthorization {
            client_id: "mobile".into(),
            redirect_uri: "http://127.0.0.1/callback".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            state: Some("xyz".into()),
            scope: Some("read".into()),
        }),
        expires_at,
    }
}

#[tokio::test]
async fn identities_are_unique_per_provider_subject_listed_updated_unlinked_and_erased() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (found, missing, listed) = write_job!(store, |tx| {
        tx.insert_identity(&identity("i1", "alice", "s-1", T0))
            .await?;
        tx.insert_identity(&identity("i2", "alice", "s-2", T0 + 1))
            .await?;
        tx.insert_identity(&identity("i3", "bob", "s-3", T0))
            .await?;
        (
            tx.identity_by_subject("corp", "s-1").await?,
            tx.identity_by_subject("other", "s-1").await?,
            tx.identities_of_user(&uid("alice")).await?,
        )
    });
    assert_eq!(found, Some(identity("i1", "alice", "s-1", T0)));
    assert!(missing.is_none(), "the subject is per provider");
    let ids: Vec<_> = listed.iter().map(|i| i.id.clone()).collect();
    assert_eq!(
        ids,
        [
            IdentityId::from(uuid_of("i1")),
            IdentityId::from(uuid_of("i2"))
        ]
    );

    // OIDC Core §5.7: one provider subject, one account.
    let twice = store
        .write(async |tx| tx.insert_identity(&identity("i4", "bob", "s-1", T0)).await)
        .await;
    assert!(twice.is_err(), "(provider, subject) is unique");

    let (updated, not_bobs, unlinked, after) = write_job!(store, |tx| {
        let i1 = IdentityId::from(uuid_of("i1"));
        tx.record_identity_login(&i1, T0 + 50, Some("new@example.com"), true)
            .await?;
        let updated = tx.identity_by_subject("corp", "s-1").await?.unwrap();
        let not_bobs = !tx.delete_identity(&uid("bob"), &i1).await?;
        let unlinked = tx.delete_identity(&uid("alice"), &i1).await?;
        (
            updated,
            not_bobs,
            unlinked,
            tx.identities_of_user(&uid("alice")).await?,
        )
    });
    assert_eq!(updated.last_login_at, T0 + 50);
    assert_eq!(updated.email.as_deref(), Some("new@example.com"));
    assert!(updated.email_verified);
    assert!(not_bobs && unlinked);
    assert_eq!(after.len(), 1);

    let left = write_job!(store, |tx| {
        tx.delete_user(&uid("alice"), T0 + 60).await?;
        tx.identity_by_subject("corp", "s-2").await?
    });
    assert!(left.is_none(), "erasure takes the identities");
}

#[tokio::test]
async fn a_federation_state_is_taken_once_and_expired_ones_are_swept() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (first, second, unknown) = write_job!(store, |tx| {
        tx.insert_federation_state(&federation_state(1, None, T0 + 10))
            .await?;
        tx.insert_federation_state(&federation_state(2, Some("bob"), T0 + 20))
            .await?;
        tx.insert_federation_state(&federation_state(3, None, T0 + 30))
            .await?;
        (
            tx.take_federation_state(&hash(2)).await?,
            tx.take_federation_state(&hash(2)).await?,
            tx.take_federation_state(&hash(9)).await?,
        )
    });
    assert_eq!(first, Some(federation_state(2, Some("bob"), T0 + 20)));
    assert!(second.is_none() && unknown.is_none(), "single use");

    let (swept, kept, gone) = write_job!(store, |tx| {
        let swept = tx.delete_federation_states_expired_before(T0 + 15).await?;
        (
            swept,
            tx.take_federation_state(&hash(3)).await?,
            tx.take_federation_state(&hash(1)).await?,
        )
    });
    assert_eq!(swept, 1);
    assert_eq!(kept, Some(federation_state(3, None, T0 + 30)));
    assert!(gone.is_none());
}

fn authorization_code(n: u8, session: &str, expires_at: i64) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash(n),
        client_id: "mobile".into(),
        redirect_uri: "http://127.0.0.1/callback".into(),
        code_challenge: format!("challenge-{n}"),
        session_id: sid(session),
        sealed_refresh: Some(vec![n; 40]),
        used_at: None,
        expires_at,
    }
}

#[tokio::test]
async fn an_authorization_code_is_used_once_then_remembered_as_used_until_swept_with_its_unused_sessions(
) {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (first, second, unknown) = write_job!(store, |tx| {
        tx.insert_authorization_code(&authorization_code(1, "sa", T0 + 10))
            .await?;
        tx.insert_authorization_code(&authorization_code(2, "sb", T0 + 60))
            .await?;
        tx.insert_authorization_code(&authorization_code(3, "sb", T0 + 12))
            .await?;
        (
            tx.use_authorization_code(&hash(1), T0 + 5).await?,
            tx.use_authorization_code(&hash(1), T0 + 6).await?,
            tx.use_authorization_code(&hash(9), T0 + 6).await?,
        )
    });
    assert_eq!(first, Some(authorization_code(1, "sa", T0 + 10)));
    let second = second.expect("a used code is still found");
    // RFC 6749 §4.1.2: the second use sees the first, and no refresh token is left.
    assert_eq!(second.used_at, Some(T0 + 5));
    assert_eq!(second.sealed_refresh, None);
    assert_eq!(second.session_id, sid("sa"));
    assert!(unknown.is_none());

    let (swept, kept, gone) = write_job!(store, |tx| {
        let swept = tx
            .delete_authorization_codes_expired_before(T0 + 15)
            .await?;
        (
            swept,
            tx.use_authorization_code(&hash(2), T0 + 16).await?,
            tx.use_authorization_code(&hash(1), T0 + 16).await?,
        )
    });
    assert_eq!(swept, vec![sid("sb")], "the session of the code never used");
    assert!(kept.is_some() && gone.is_none());
}

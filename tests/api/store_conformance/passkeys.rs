//! Passkeys and WebAuthn ceremonies in flight.

use latchkey::domain::passkeys::{Ceremony, CeremonyKind, CeremonyMode, StoredPasskey};
use latchkey::domain::PasskeyId;

use super::*;

fn passkey(id: &str, user_id: &str, credential_id: u8, created_at: i64) -> StoredPasskey {
    StoredPasskey {
        id: PasskeyId::from(uuid_of(id)),
        user_id: uid(user_id),
        credential_id: vec![credential_id; 16],
        credential: format!(r#"{{"cred":"{id}"}}"#),
        name: format!("{id} key"),
        created_at,
        last_used_at: None,
        counter: 0,
    }
}

fn ceremony(n: u8, kind: CeremonyKind, user_id: Option<&str>) -> Ceremony {
    Ceremony {
        token_hash: hash(n),
        kind,
        mode: CeremonyMode::Browser,
        user_id: user_id.map(uid),
        state: r#"{"challenge":"abc"}"#.into(),
        expires_at: T0 + 300_000,
    }
}

#[tokio::test]
async fn passkeys_are_stored_found_by_credential_renamed_used_and_removed_per_user() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (mine, found, nobody) = write_job!(store, |tx| {
        tx.insert_passkey(&passkey("pk2", "alice", 2, T0 + 2))
            .await?;
        tx.insert_passkey(&passkey("pk1", "alice", 1, T0 + 1))
            .await?;
        tx.insert_passkey(&passkey("pkb", "bob", 3, T0)).await?;
        (
            tx.passkeys_of(&uid("alice")).await?,
            tx.passkey_by_credential_id(&[3; 16]).await?,
            tx.passkey_by_credential_id(&[9; 16]).await?,
        )
    });
    let names: Vec<_> = mine.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["pk1 key", "pk2 key"], "oldest first");
    assert_eq!(found, Some(passkey("pkb", "bob", 3, T0)));
    assert_eq!(nobody, None);

    let pk1 = PasskeyId::from(uuid_of("pk1"));
    let id = pk1.clone();
    let (renamed, not_bobs, used, gone_used) = write_job!(store, |tx| {
        (
            tx.rename_passkey(&uid("alice"), &id, "Laptop").await?,
            tx.rename_passkey(&uid("bob"), &id, "Stolen").await?,
            tx.record_passkey_use(&id, r#"{"cred":"pk1","n":5}"#, 5, T0 + 50)
                .await?,
            tx.record_passkey_use(&PasskeyId::from(uuid_of("nope")), "{}", 1, T0)
                .await?,
        )
    });
    assert!(renamed && !not_bobs && used && !gone_used);
    let pk = write_job!(store, |tx| tx.passkey_by_credential_id(&[1; 16]).await?).unwrap();
    assert_eq!(pk.name, "Laptop");
    assert_eq!(
        (pk.counter, pk.last_used_at, pk.credential.as_str()),
        (5, Some(T0 + 50), r#"{"cred":"pk1","n":5}"#)
    );

    let (bob_cannot, removed, again, cleared, left) = write_job!(store, |tx| {
        (
            tx.delete_passkey(&uid("bob"), &pk1).await?,
            tx.delete_passkey(&uid("alice"), &pk1).await?,
            tx.delete_passkey(&uid("alice"), &pk1).await?,
            tx.delete_passkeys_of(&uid("alice")).await?,
            tx.passkeys_of(&uid("bob")).await?.len(),
        )
    });
    assert!(!bob_cannot && removed && !again);
    assert_eq!(
        (cleared, left),
        (1, 1),
        "only alice's other passkey; bob keeps his"
    );
}

#[tokio::test]
async fn a_credential_id_is_registered_to_one_account_only() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    write_job!(store, |tx| tx
        .insert_passkey(&passkey("pka", "alice", 4, T0))
        .await?);
    let second = store
        .write(async |tx| tx.insert_passkey(&passkey("pkb", "bob", 4, T0)).await)
        .await;
    assert!(second.is_err(), "the same credential id for bob");
}

#[tokio::test]
async fn a_ceremony_is_taken_once_and_expired_ones_are_swept() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (taken, again) = write_job!(store, |tx| {
        tx.insert_ceremony(&ceremony(10, CeremonyKind::Register, Some("alice")))
            .await?;
        tx.insert_ceremony(&ceremony(11, CeremonyKind::Login, None))
            .await?;
        (
            tx.take_ceremony(&hash(10)).await?,
            tx.take_ceremony(&hash(10)).await?,
        )
    });
    assert_eq!(
        taken,
        Some(ceremony(10, CeremonyKind::Register, Some("alice")))
    );
    assert_eq!(again, None, "single use");
    let (kept, swept, gone) = write_job!(store, |tx| {
        let kept = tx.delete_ceremonies_expired_before(T0 + 300_000).await?;
        let swept = tx.delete_ceremonies_expired_before(T0 + 300_001).await?;
        (kept, swept, tx.take_ceremony(&hash(11)).await?)
    });
    assert_eq!((kept, swept, gone), (0, 1, None));
}

#[tokio::test]
async fn a_users_passkeys_and_ceremonies_go_with_the_user() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (passkeys, ceremony) = write_job!(store, |tx| {
        tx.insert_passkey(&passkey("pka", "alice", 5, T0)).await?;
        tx.insert_ceremony(&ceremony(12, CeremonyKind::SecondFactor, Some("alice")))
            .await?;
        tx.delete_user(&uid("alice"), T0 + 1).await?;
        (
            tx.passkey_by_credential_id(&[5; 16]).await?,
            tx.take_ceremony(&hash(12)).await?,
        )
    });
    assert_eq!((passkeys, ceremony), (None, None));
}

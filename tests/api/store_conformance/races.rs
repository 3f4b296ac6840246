//! The races a backend decides: each runs jobs at once and checks that the store let
//! exactly as many through as the rule allows, whatever the interleaving.

use super::*;
use tokio::task::JoinSet;

/// Runs `n` copies of a job at once and collects their answers.
async fn at_once<R, F>(
    store: &Store,
    n: usize,
    conditional: bool,
    job: F,
) -> Vec<Result<R, StoreError>>
where
    F: AsyncFnOnce(&mut dyn latchkey::domain::repository::Tx) -> anyhow::Result<R>
        + Send
        + Clone
        + 'static,
    R: Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (store, job) = (store.clone(), job.clone());
        set.spawn(async move {
            if conditional {
                store.write_conditional(job).await
            } else {
                store.write(job).await
            }
        });
    }
    set.join_all().await
}

#[tokio::test]
async fn of_two_rotations_of_one_head_from_the_same_generation_exactly_one_wins() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    for round in 0..5i64 {
        // Each job read generation `round`; it writes only if the head is still there.
        let answers = at_once(&store, 2, true, async move |tx| {
            let mut s = tx.session_by_id(&sid("sa")).await?.unwrap();
            if s.head_generation != round {
                return Ok(false);
            }
            s.head_generation = round + 1;
            s.head_hash = Some(hash(100 + round as u8));
            tx.advance_head(&s).await?;
            Ok(true)
        })
        .await;
        let won: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "round {round}: {won:?}"
        );
    }
    let head = write_job!(store, |tx| tx
        .session_by_id(&sid("sa"))
        .await?
        .unwrap()
        .head_generation);
    assert_eq!(head, 5);
}

#[tokio::test]
async fn logins_counting_live_sessions_under_lock_never_pass_the_limit() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let answers = at_once(&store, 12, false, async |tx| {
        let live = tx.active_sessions_of_user(&uid("alice"), T0 + 1).await?;
        if live.len() >= 4 {
            return Ok(false);
        }
        let mut another = session("sa", "alice", T0 + 1);
        another.id = SessionId::new_random();
        tx.insert_session(&another).await?;
        Ok(true)
    })
    .await;
    let opened = answers.into_iter().filter(|a| *a.as_ref().unwrap()).count();
    assert_eq!(opened, 3, "sa and three more");
    let live = write_job!(store, |tx| tx
        .active_sessions_of_user(&uid("alice"), T0 + 2)
        .await?
        .len());
    assert_eq!(live, 4);
}

#[tokio::test]
async fn a_recovery_code_spent_by_concurrent_logins_is_spent_once() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    write_job!(store, |tx| tx
        .replace_recovery_codes(&uid("alice"), &[hash(70), hash(71)])
        .await?);
    let answers = at_once(&store, 8, false, async |tx| {
        tx.consume_recovery_code(&uid("alice"), &hash(70)).await
    })
    .await;
    let spent = answers.into_iter().filter(|a| *a.as_ref().unwrap()).count();
    assert_eq!(spent, 1);
    assert!(write_job!(store, |tx| tx
        .consume_recovery_code(&uid("alice"), &hash(71))
        .await?));
}

#[tokio::test]
async fn concurrent_code_checks_on_one_pending_login_reserve_at_most_the_maximum() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    write_job!(store, |tx| tx
        .insert_mfa_login(&pending(80, "alice", T0 + HOUR))
        .await?);
    let answers = at_once(&store, 12, false, async |tx| {
        tx.reserve_mfa_login_check(&hash(80), 5).await
    })
    .await;
    let granted: BTreeSet<u32> = answers
        .iter()
        .filter_map(|a| *a.as_ref().unwrap())
        .collect();
    assert_eq!(
        granted,
        (1..=5).collect(),
        "each check number once, never a sixth"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.as_ref().unwrap().is_none())
            .count(),
        7
    );
}

#[tokio::test]
async fn concurrent_revocations_of_one_session_revoke_and_log_it_once() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let answers = at_once(&store, 6, true, async |tx| {
        tx.revoke_session(&sid("sa"), T0 + 1, RevocationReason::Revoked)
            .await
    })
    .await;
    let revoked = answers.into_iter().filter(|a| *a.as_ref().unwrap()).count();
    assert_eq!(revoked, 1);
    assert_eq!(
        write_job!(store, |tx| tx.revocations_after(0, 0, 10).await?.len()),
        1
    );
}

#[tokio::test]
async fn a_webauthn_ceremony_finished_by_concurrent_requests_is_taken_once() {
    use latchkey::domain::passkeys::{Ceremony, CeremonyKind, CeremonyMode};
    let (store, _dir) = store().await;
    write_job!(store, |tx| tx
        .insert_ceremony(&Ceremony {
            token_hash: hash(90),
            kind: CeremonyKind::Login,
            mode: CeremonyMode::Json,
            user_id: None,
            state: "{}".into(),
            expires_at: T0,
        })
        .await?);
    let answers = at_once(&store, 8, false, async |tx| {
        tx.take_ceremony(&hash(90)).await
    })
    .await;
    let taken = answers
        .into_iter()
        .filter(|a| a.as_ref().unwrap().is_some())
        .count();
    assert_eq!(taken, 1);
}

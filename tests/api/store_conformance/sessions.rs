//! Sessions with their refresh tokens, the revocation log, and the second factor.

use super::*;

#[tokio::test]
async fn sessions_and_their_refresh_tokens_are_stored_rotated_touched_and_swept() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (found, live, count) = write_job!(store, |tx| {
        tx.insert_session(&session("sa2", "alice", T0 + 5)).await?;
        let mut ended = session("sa3", "alice", T0 - 300 * HOUR);
        ended.expires_at = T0 - HOUR;
        tx.insert_session(&ended).await?;
        (
            tx.session_by_id(&sid("sa")).await?,
            tx.active_sessions_of_user(&uid("alice"), T0 + 10).await?,
            tx.count_active_sessions(T0 + 10).await?,
        )
    });
    assert_eq!(
        found,
        Some(session("sa", "alice", T0)),
        "every field round-trips"
    );
    let ids: Vec<_> = live.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, [sid("sa"), sid("sa2")], "live ones, oldest first");
    assert_eq!(count, 3);

    // Touch moves activity (keeping a known address when none is given), never the
    // absolute expiry; a rotation moves the head only from the generation before.
    let mut touched = session("sa", "alice", T0);
    (touched.last_active_at, touched.idle_expires_at) = (T0 + 50, T0 + 50 + 24 * HOUR);
    (touched.ip, touched.expires_at) = (None, T0 + 999);
    let mut next = touched.clone();
    (next.head_generation, next.head_issued_at) = (1, T0 + 60);
    (next.head_hash, next.sealed_head) = (Some(hash(2)), Some(vec![7; 40]));
    let stale = next.clone();
    let after = write_job!(store, |tx| {
        tx.touch_session(&touched).await?;
        tx.advance_head(&next).await?;
        tx.session_by_id(&sid("sa")).await?.unwrap()
    });
    assert_eq!(
        (after.last_active_at, after.ip.as_deref()),
        (T0 + 50, Some("192.0.2.1"))
    );
    assert_eq!(after.expires_at, T0 + 240 * HOUR);
    assert_eq!((after.head_generation, after.head_hash), (1, Some(hash(2))));
    assert_eq!(after.sealed_head, Some(vec![7; 40]));
    let stale = store
        .write(async move |tx| tx.advance_head(&stale).await)
        .await;
    assert!(
        stale.is_err(),
        "the head is no longer one generation behind"
    );

    // Tokens by hash; a second token of one generation is a fork and refused.
    let token = |n: u8, generation: i64| StoredToken {
        token_hash: hash(n),
        session_id: sid("sb"),
        generation,
        issued_at: T0 + i64::from(n),
    };
    write_job!(store, |tx| tx.insert_token(&token(10, 0)).await?);
    let fork = store
        .write(async move |tx| tx.insert_token(&token(11, 0)).await)
        .await;
    assert!(fork.is_err(), "a fork of generation 0");
    let stored = write_job!(store, |tx| tx.token_by_hash(&hash(10)).await?).unwrap();
    assert_eq!(
        (stored.session_id, stored.generation, stored.issued_at),
        (sid("sb"), 0, T0 + 10)
    );
    assert!(write_job!(store, |tx| tx.token_by_hash(&hash(11)).await?).is_none());

    // Housekeeping: sealed heads past their interval, then a sweep a session at a time.
    let wiped = write_job!(store, |tx| (
        tx.wipe_sealed_heads_before(T0 + 60).await?,
        tx.wipe_sealed_heads_before(T0 + 61).await?
    ));
    assert_eq!(wiped, (0, 1));
    write_job!(store, |tx| tx
        .revoke_session(&sid("sb"), T0 + 70, RevocationReason::Logout)
        .await?);
    let (mut tokens, mut sessions, mut cursor, mut steps) = (0, 0, String::new(), 0);
    loop {
        let at = cursor.clone();
        let step = write_job!(store, |tx| tx.sweep_sessions(&at, 1, T0 + 100, T0).await?);
        (tokens, sessions, steps) = (tokens + step.tokens, sessions + step.sessions, steps + 1);
        match step.next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    assert!(steps >= 4, "one session per step, then the end: {steps}");
    assert_eq!(
        (tokens, sessions),
        (1, 1),
        "sb's token, and sa3 (ended before T0)"
    );
    let left = write_job!(store, |tx| (
        tx.session_by_id(&sid("sa3")).await?.is_none(),
        tx.session_by_id(&sid("sb")).await?.is_some(),
        tx.token_by_hash(&hash(10)).await?.is_none()
    ));
    assert_eq!(left, (true, true, true));
}

#[tokio::test]
async fn a_revocation_happens_once_and_the_log_is_read_in_order_and_pruned() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let (first, again, s) = write_job!(store, |tx| {
        let first = tx
            .revoke_session(&sid("sa"), T0 + 1, RevocationReason::Reuse)
            .await?;
        let again = tx
            .revoke_session(&sid("sa"), T0 + 2, RevocationReason::Admin)
            .await?;
        (first, again, tx.session_by_id(&sid("sa")).await?.unwrap())
    });
    assert!(
        first && !again,
        "an already revoked session is not revoked again"
    );
    assert_eq!(
        (s.revoked_at, s.revoked_reason),
        (Some(T0 + 1), Some(RevocationReason::Reuse))
    );
    assert!(!write_job!(store, |tx| tx
        .revoke_session(&sid("nope"), T0, RevocationReason::Admin)
        .await?));
    // A revoked session's head never moves again, even from the right generation.
    let mut next = s.clone();
    (next.head_generation, next.head_hash) = (s.head_generation + 1, Some(hash(3)));
    let advanced = store
        .write(async move |tx| tx.advance_head(&next).await)
        .await;
    assert!(advanced.is_err(), "a revoked session is not rotated");
    write_job!(store, |tx| tx
        .revoke_session(&sid("sb"), T0 + 5, RevocationReason::Logout)
        .await?);

    let all = write_job!(store, |tx| tx.revocations_after(0, 0, 10).await?);
    let seen: Vec<_> = all
        .iter()
        .map(|r| (r.session_id.clone(), r.revoked_at))
        .collect();
    assert_eq!(
        seen,
        [(sid("sa"), T0 + 1), (sid("sb"), T0 + 5)],
        "one entry each, in order"
    );
    assert!(all[0].seq < all[1].seq);
    let (seq, since, short) = (all[0].seq, T0 + 3, all[1].seq);
    let (after_first, since_later, limited) = write_job!(store, |tx| (
        tx.revocations_after(seq, 0, 10).await?.len(),
        tx.revocations_after(0, since, 10).await?.len(),
        tx.revocations_after(0, 0, 1).await?.len()
    ));
    assert_eq!((after_first, since_later, limited), (1, 1, 1));
    let pruned = write_job!(store, |tx| (
        tx.prune_revocations(T0 + 10, 1).await?,
        tx.prune_revocations(T0 + 10, 5).await?,
        tx.revocations_after(0, 0, 10).await?.len()
    ));
    assert_eq!(
        pruned,
        (1, 1, 0),
        "a short count means none are left ({short})"
    );
}

#[tokio::test]
async fn a_second_factor_its_recovery_codes_and_pending_logins_live_and_go_together() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    let factor = |confirmed_at| MfaFactor {
        user_id: uid("alice"),
        sealed_secret: vec![9; 48],
        created_at: T0,
        confirmed_at,
        last_step: None,
    };
    let (waiting, unconfirmed_failures, replaced) = write_job!(store, |tx| {
        tx.put_mfa_factor(&factor(None)).await?;
        let waiting = tx.mfa_factor(&uid("alice")).await?;
        let failures = tx.mfa_code_failures_for_update(&uid("alice")).await?;
        tx.put_mfa_factor(&factor(Some(T0 + 1))).await?;
        (waiting, failures, tx.mfa_factor(&uid("alice")).await?)
    });
    assert_eq!(waiting, Some(factor(None)));
    assert_eq!(unconfirmed_failures, None, "no active factor yet");
    assert_eq!(replaced, Some(factor(Some(T0 + 1))));

    let steps = write_job!(store, |tx| [
        tx.advance_mfa_step(&uid("alice"), 100).await?,
        !tx.advance_mfa_step(&uid("alice"), 100).await?,
        !tx.advance_mfa_step(&uid("alice"), 99).await?,
        tx.advance_mfa_step(&uid("alice"), 101).await?,
        tx.mfa_factor(&uid("alice")).await?.unwrap().last_step == Some(101),
    ]);
    assert_eq!(steps, [true; 5], "a time step is used once (RFC 6238 §5.2)");
    let failures = write_job!(store, |tx| {
        tx.add_mfa_code_failure(&uid("alice")).await?;
        tx.add_mfa_code_failure(&uid("alice")).await?;
        let two = tx.mfa_code_failures_for_update(&uid("alice")).await?;
        tx.reset_mfa_code_failures(&uid("alice")).await?;
        (two, tx.mfa_code_failures_for_update(&uid("alice")).await?)
    });
    assert_eq!(failures, (Some(2), Some(0)));

    let codes = write_job!(store, |tx| {
        tx.replace_recovery_codes(&uid("alice"), &[hash(50), hash(51)])
            .await?;
        let old = tx.consume_recovery_code(&uid("alice"), &hash(50)).await?;
        tx.replace_recovery_codes(&uid("alice"), &[hash(52)])
            .await?;
        [
            !old,
            !tx.consume_recovery_code(&uid("alice"), &hash(51)).await?,
            !tx.consume_recovery_code(&uid("bob"), &hash(52)).await?,
            tx.consume_recovery_code(&uid("alice"), &hash(52)).await?,
            !tx.consume_recovery_code(&uid("alice"), &hash(52)).await?,
        ]
    });
    assert_eq!(
        codes[1..],
        [true; 4],
        "replaced codes are gone; a code is spent once"
    );

    let (found, gone, again) = write_job!(store, |tx| {
        tx.insert_mfa_login(&pending(60, "alice", T0 + HOUR))
            .await?;
        tx.insert_mfa_login(&pending(61, "alice", T0 - 1)).await?;
        let found = tx.mfa_login_by_hash(&hash(60)).await?;
        (
            found,
            tx.delete_mfa_login(&hash(60)).await?,
            tx.delete_mfa_login(&hash(60)).await?,
        )
    });
    assert_eq!(found, Some(pending(60, "alice", T0 + HOUR)));
    assert!(gone && !again, "of two finishes only one succeeds");
    let (expired, checks) = write_job!(store, |tx| {
        tx.insert_mfa_login(&pending(62, "alice", T0 + HOUR))
            .await?;
        let expired = tx.delete_mfa_logins_expired_before(T0).await?;
        let mut checks = Vec::new();
        for _ in 0..3 {
            checks.push(tx.reserve_mfa_login_check(&hash(62), 2).await?);
        }
        checks.push(tx.reserve_mfa_login_check(&hash(61), 2).await?);
        (expired, checks)
    });
    assert_eq!(expired, 1);
    assert_eq!(
        checks,
        [Some(1), Some(2), None, None],
        "at most `max`, none once gone"
    );
    assert_eq!(
        write_job!(store, |tx| tx.mfa_login_by_hash(&hash(62)).await?)
            .unwrap()
            .failures,
        2
    );

    let removed = write_job!(store, |tx| (
        tx.delete_mfa_factor(&uid("alice")).await?,
        tx.delete_mfa_factor(&uid("alice")).await?,
        tx.mfa_login_by_hash(&hash(62)).await?.is_none(),
        tx.consume_recovery_code(&uid("alice"), &hash(52)).await?
    ));
    assert_eq!(
        removed,
        (true, false, true, false),
        "codes and logins went with it"
    );
}

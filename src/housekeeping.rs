//! Periodic upkeep that runs beside the requests, through the same writer (so it never
//! blocks a request for longer than one batch).

use std::time::Duration;

use actix_web::web;

use crate::state::AppState;

/// Wipes every sealed successor whose reuse interval has passed, so the database holds
/// a sealed head only for the interval (see `domain::rotation`). Returns how many.
pub async fn wipe_expired_seals(state: &AppState) -> anyhow::Result<usize> {
    let cutoff = state.now() - state.settings.refresh.reuse_interval.as_millis_i64();
    Ok(state
        .store
        .write(async move |tx| tx.wipe_sealed_heads_before(cutoff).await)
        .await?)
}

/// Rows removed by one [`cleanup`] pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    pub tokens: usize,
    pub sessions: usize,
    pub events: usize,
    pub revocations: usize,
    pub deliveries: usize,
}

/// Sessions one housekeeping write looks at, and events one write deletes at most: each
/// write stays a few milliseconds, so refreshes queued behind it barely notice.
const SWEEP: u32 = 500;
const CHUNK: u32 = 2_000;

/// Deletes the tokens of ended sessions (useless once the session has ended), sessions
/// ended longer ago than `session.retention`, revocation-log entries past the feed's
/// horizon, events older than `events.retention` and webhook deliveries delivered
/// longer ago than `webhooks.retention`,
/// so the database does not grow without bound. Sessions are swept in id order, a
/// bounded range per write (see `Tx::sweep_sessions`).
pub async fn cleanup(state: &AppState) -> anyhow::Result<Cleanup> {
    let mut total = Cleanup::default();
    // Instances sharing a database take turns: whoever holds the lock sweeps for all.
    let Some(_turn) = state.store.housekeeping_turn().await? else {
        return Ok(total);
    };
    let now = state.now();
    // Shared login-failure counts older than the hour they count over.
    if let Some(shared) = state.store.shared_failures() {
        let cutoff = now - crate::domain::throttle::HOUR;
        while shared.prune(cutoff, CHUNK).await? == CHUNK as usize {}
    }
    let session_cutoff = now - state.settings.session.retention.as_millis_i64();
    let event_cutoff = now - state.settings.events.retention.as_millis_i64();
    // Log entries that have left the feed's horizon can never be served again.
    let horizon = i64::try_from(state.settings.revocation_horizon().as_millis()).unwrap_or(0);
    let revocation_cutoff = now - horizon;
    loop {
        let n = state
            .store
            .write(async move |tx| tx.prune_revocations(revocation_cutoff, CHUNK).await)
            .await?;
        total.revocations += n;
        if n < CHUNK as usize {
            break;
        }
    }
    let mut after = String::new();
    loop {
        let cursor = after.clone();
        let step = state
            .store
            .write(async move |tx| tx.sweep_sessions(&cursor, SWEEP, now, session_cutoff).await)
            .await?;
        total.tokens += step.tokens;
        total.sessions += step.sessions;
        match step.next {
            Some(next) => after = next,
            None => break,
        }
    }
    // Reset and verification tokens: kept an hour past expiry, so the per-account count
    // of resets requested in the last hour (docs/contract.md "Email and account
    // recovery") still sees them.
    let token_cutoff = now - 3_600_000;
    state
        .store
        .write(async move |tx| tx.delete_account_tokens_expired_before(token_cutoff).await)
        .await?;
    // Pending second-factor logins (`mfa_token`, 5 minutes) that were never finished.
    state
        .store
        .write(async move |tx| tx.delete_mfa_logins_expired_before(now).await)
        .await?;
    // WebAuthn ceremonies (5 minutes) that were started and never finished.
    state
        .store
        .write(async move |tx| tx.delete_ceremonies_expired_before(now).await)
        .await?;
    // Delivered webhooks, kept `webhooks.retention` for the admin routes.
    let delivered_cutoff = now - state.settings.webhooks.retention.as_millis_i64();
    loop {
        let n = state
            .store
            .write(async move |tx| tx.prune_delivered(delivered_cutoff, CHUNK).await)
            .await?;
        total.deliveries += n;
        if n < CHUNK as usize {
            break;
        }
    }
    // Sign-ins sent to an identity provider and never back (10 minutes).
    state
        .store
        .write(async move |tx| tx.delete_federation_states_expired_before(now).await)
        .await?;
    // Authorization codes (60 s); a used one stays until then to catch its reuse, and the
    // session of one never exchanged ends.
    state
        .store
        .write(async move |tx| crate::domain::authorization_codes::sweep_expired(tx, now).await)
        .await?;
    loop {
        let events = state
            .store
            .write(async move |tx| tx.delete_events_before(event_cutoff, CHUNK).await)
            .await?;
        total.events += events;
        if events < CHUNK as usize {
            return Ok(total);
        }
    }
}

const CLEANUP_EVERY: Duration = Duration::from_secs(600);

/// Wipes expired seals every `reuse_interval` (between 1 s and 60 s) and runs
/// [`cleanup`] every ten minutes, until the server stops.
pub fn spawn(state: web::Data<AppState>) {
    let period = state
        .settings
        .refresh
        .reuse_interval
        .0
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        let mut last_cleanup = std::time::Instant::now();
        loop {
            tick.tick().await;
            if let Err(e) = wipe_expired_seals(&state).await {
                tracing::warn!(error = format!("{e:#}"), "housekeeping failed");
            }
            if last_cleanup.elapsed() >= CLEANUP_EVERY {
                last_cleanup = std::time::Instant::now();
                // In-memory throttling state: forget what has fully recovered.
                state.throttle.prune(state.now());
                state.limits.prune();
                match cleanup(&state).await {
                    Ok(c) => tracing::info!(
                        tokens = c.tokens,
                        sessions = c.sessions,
                        events = c.events,
                        webhook_deliveries = c.deliveries,
                        "housekeeping"
                    ),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "housekeeping failed"),
                }
            }
        }
    });
}

/// Picks up `latchkey keys …` changes made by another process (or another instance
/// sharing `keys.dir` or the database): re-reads the manifest through the key storage
/// every `keys.reload_interval` and at once on SIGHUP, on a blocking thread (a database
/// round trip must not hold an async worker). A bad manifest, or one the KEK does not
/// open, is reported and the previous key set keeps serving, so a reload never fails a
/// request.
pub fn spawn_key_reloader(state: web::Data<AppState>) {
    let period = state
        .settings
        .keys
        .reload_interval
        .0
        .max(Duration::from_millis(10));
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            {
                let sighup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = sighup => tracing::info!("SIGHUP: re-reading the signing keys"),
                }
            }
            #[cfg(not(unix))]
            tick.tick().await;
            let st = state.clone();
            let result = tokio::task::spawn_blocking(move || st.keys.reload(st.now())).await;
            match result {
                Ok(Ok(true)) => {
                    let set = state.keys.current(state.now());
                    let kids: Vec<String> = set
                        .entries
                        .iter()
                        .map(|(e, s)| format!("{}:{}", e.kid, s.as_str()))
                        .collect();
                    tracing::info!(signing = %set.signing.kid, keys = ?kids, "signing keys reloaded");
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(
                    error = format!("{e:#}"),
                    "cannot reload the signing keys; keeping the previous set"
                ),
                Err(e) => tracing::error!(error = %e, "key reload task failed"),
            }
        }
    });
}

//! Periodic upkeep that runs beside the requests, through the same writer (so it never
//! blocks a request for longer than one batch).

use std::time::Duration;

use actix_web::web;

use crate::startup::AppState;
use crate::store::queries;

/// Wipes every sealed successor whose reuse interval has passed, so the database holds
/// a sealed head only for the interval (see `domain::rotation`). Returns how many.
pub async fn wipe_expired_seals(state: &AppState) -> anyhow::Result<usize> {
    let cutoff = state.now() - state.settings.refresh.reuse_interval.as_millis_i64();
    Ok(state
        .store
        .write(move |conn| queries::wipe_sealed_rotated_before(conn, cutoff))
        .await?)
}

/// Rows removed by one [`cleanup`] pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    pub tokens: usize,
    pub sessions: usize,
    pub events: usize,
}

/// Most rows one write deletes; a pass loops in chunks so requests interleave.
const CHUNK: u32 = 2_000;

/// Deletes the tokens of ended sessions (useless once the session has ended), sessions
/// ended longer ago than `session.retention`, and events older than `events.retention`,
/// so the database does not grow without bound.
pub async fn cleanup(state: &AppState) -> anyhow::Result<Cleanup> {
    let mut total = Cleanup::default();
    let now = state.now();
    let session_cutoff = now - state.settings.session.retention.as_millis_i64();
    let event_cutoff = now - state.settings.events.retention.as_millis_i64();
    loop {
        let (t, s, e) = state
            .store
            .write(move |conn| {
                Ok((
                    queries::delete_tokens_of_ended_sessions(conn, now, CHUNK)?,
                    queries::delete_sessions_ended_before(conn, session_cutoff, CHUNK)?,
                    queries::delete_events_before(conn, event_cutoff, CHUNK)?,
                ))
            })
            .await?;
        total.tokens += t;
        total.sessions += s;
        total.events += e;
        if t < CHUNK as usize && s < CHUNK as usize && e < CHUNK as usize {
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
                match cleanup(&state).await {
                    Ok(c) => tracing::info!(
                        tokens = c.tokens,
                        sessions = c.sessions,
                        events = c.events,
                        "housekeeping"
                    ),
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "housekeeping failed"),
                }
            }
        }
    });
}

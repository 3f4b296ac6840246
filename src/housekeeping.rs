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

/// Runs the upkeep every `reuse_interval` (between 1 s and 60 s) until the server stops.
pub fn spawn(state: web::Data<AppState>) {
    let period = state
        .settings
        .refresh
        .reuse_interval
        .0
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = wipe_expired_seals(&state).await {
                tracing::warn!(error = format!("{e:#}"), "housekeeping failed");
            }
        }
    });
}

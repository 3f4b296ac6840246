//! `GET /metrics`: Prometheus text. On the main listener unless `server.metrics_bind`
//! moves it to a separate admin listener (then the main listener answers 404).

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};

use super::RouteTable;
use crate::error::ApiError;
use crate::state::AppState;

/// Marks the app served on `server.metrics_bind`.
pub struct AdminListener;

pub fn configure(t: &mut RouteTable) {
    t.get("/metrics", metrics);
}

/// How long the active-sessions count (a table scan) is reused between scrapes.
const ACTIVE_SESSIONS_REFRESH_MS: i64 = 15_000;

async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if state.settings.server.metrics_bind.is_some() && req.app_data::<AdminListener>().is_none() {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    let now = state.now();
    let m = &state.metrics;
    let last = m.active_sessions_counted_at.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= ACTIVE_SESSIONS_REFRESH_MS || now < last {
        m.active_sessions_counted_at.store(now, Ordering::Relaxed);
        let active = state
            .store
            .read(async move |tx| tx.count_active_sessions(now).await)
            .await?;
        m.active_sessions.set(active);
    }
    let keys = state.keys.current(now);
    if let Some((entry, _)) = keys.entries.iter().find(|(e, _)| e.kid == keys.signing.kid) {
        let age_ms = now.saturating_sub(entry.signs_from.timestamp_millis());
        m.signing_key_age.set(age_ms.max(0) as f64 / 1000.0);
    }
    m.argon2_queue_depth
        .set(i64::try_from(state.hasher.queue_depth()).unwrap_or(i64::MAX));
    let body = m.render().map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

/// The admin listener's app: metrics and health only.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(super::health::healthz))
        .route("/readyz", web::get().to(super::health::readyz));
}

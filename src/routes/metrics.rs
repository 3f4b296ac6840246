//! `GET /metrics`: Prometheus text. On the main listener unless `server.metrics_bind`
//! moves it to a separate admin listener (then the main listener answers 404).

use actix_web::{web, HttpRequest, HttpResponse};

use super::RouteTable;
use crate::error::ApiError;
use crate::service::status;
use crate::state::AppState;

/// Marks the app served on `server.metrics_bind`.
pub struct AdminListener;

pub fn configure(t: &mut RouteTable) {
    t.get("/metrics", metrics);
}

async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if state.settings.server.metrics_bind.is_some() && req.app_data::<AdminListener>().is_none() {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    let observed = status::Observed {
        metrics: &state.metrics,
        store: &state.store,
        keys: &state.keys,
        hasher: &state.hasher,
    };
    let body = status::metrics_text(observed, state.now()).await?;
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

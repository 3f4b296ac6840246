use actix_web::{web, HttpResponse};
use serde_json::json;

use super::RouteTable;
use crate::service::status;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/healthz", healthz);
    t.get("/readyz", readyz);
}

/// Liveness: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the store completes a read and a write within two seconds and a signing
/// key is active.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let r = status::readiness(&state.store, &state.keys, state.now()).await;
    let body = json!({
        "status": if r.ready() { "ready" } else { "not_ready" },
        "store": r.store,
        "signing_key": r.signing_key,
    });
    if r.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::RouteTable;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/healthz", healthz);
    t.get("/readyz", readyz);
}

/// Liveness: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the store completes a read and a write within two seconds (a stalled
/// writer or a locked table is not ready, though the connection is fine) and a signing
/// key is active.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = state.store.probe().await.is_ok();
    let keys = state.keys.current(state.now());
    let key_ok = keys
        .entries
        .iter()
        .any(|(_, s)| *s == crate::keys::KeyState::Active);
    let body = json!({
        "status": if store_ok && key_ok { "ready" } else { "not_ready" },
        "store": store_ok,
        "signing_key": key_ok,
    });
    if store_ok && key_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

//! The revocation feed (docs/contract.md "Revocation feed"): for resource servers,
//! authenticated as for introspection.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::oauth::authenticate_resource_server;
use super::RouteTable;
use crate::error::ApiError;
use crate::service::revocations::{self, FeedAnswer};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/revocations", document);
    t.get("/revocations/stream", stream);
}

async fn document(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    authenticate_resource_server(&state, &req)?;
    let inm = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let cache = format!(
        "private, max-age={}",
        state.settings.revocations.max_age.as_secs()
    );
    Ok(match revocations::document(&state, inm) {
        FeedAnswer::NotModified(etag) => HttpResponse::NotModified()
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, etag))
            .finish(),
        FeedAnswer::Document(snap) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, snap.etag))
            .content_type("application/json")
            .body(snap.body),
    })
}

async fn stream(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let rs_id = authenticate_resource_server(&state, &req)?.id.clone();
    // An id that is not a number is treated as no id: the stream replays the horizon.
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let events = revocations::stream(&state, &rs_id, last_event_id)?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Reverse proxies (nginx) must pass each event on at once.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(events))
}

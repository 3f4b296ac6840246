//! Response helpers shared by the token-issuing routes.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::domain::model::Session;

/// Names the session's user and client on the request's span once a login or refresh
/// has issued for it (`telemetry::record_caller`).
pub fn name_caller(session: &Session) {
    crate::telemetry::record_caller(
        session.user_id.as_str(),
        session.id.as_str(),
        &session.client_id,
    );
}

/// 200 JSON with `Cache-Control: no-store` and `Pragma: no-cache`: token responses
/// (RFC 6749 §5.1), and a user's own data (`/me*`, `/admin/*`: OWASP Session Management,
/// "Web Content Caching"), which no shared or browser cache may keep.
pub fn no_store_json(body: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

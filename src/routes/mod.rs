//! HTTP routes, one module per area. Each module's `configure` adds its routes to the
//! [`RouteTable`], which registers them and also lists them, so a test can hold the
//! server's routes against `openapi.yaml`.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod authorize;
pub mod browser;
pub mod client_addr;
pub mod extract;
mod federated_step;
pub mod federation;
pub mod health;
pub mod login;
pub mod me;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod passkey_login;
pub mod passkeys;
pub mod recovery;
pub mod responses;
pub mod revocations;
mod service_error;
pub mod sessions;
mod signin_form;
mod signin_page;
pub mod webhooks;
pub mod wellknown;

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{self, DefaultHeaders, Next};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route};

use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::state::AppState;

/// One route: its path and method, the handler, and the per-IP rate-limit buckets its
/// requests draw from (checked before anything else, even the body).
pub struct RouteEntry {
    path: &'static str,
    method: Method,
    route: Route,
    buckets: Vec<Endpoint>,
}

impl RouteEntry {
    /// Requests to this route draw from `bucket` (429 with `Retry-After` when empty),
    /// in addition to any bucket named before: a route that checks a password draws
    /// from `Endpoint::Login` whatever else it draws from.
    pub fn rate_limited(&mut self, bucket: Endpoint) -> &mut Self {
        self.buckets.push(bucket);
        self
    }
}

#[derive(Default)]
pub struct RouteTable {
    entries: Vec<RouteEntry>,
}

impl RouteTable {
    pub fn add<F, Args>(
        &mut self,
        method: Method,
        path: &'static str,
        handler: F,
    ) -> &mut RouteEntry
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.entries.push(RouteEntry {
            path,
            method: method.clone(),
            route: web::method(method).to(handler),
            buckets: Vec::new(),
        });
        self.entries.last_mut().expect("just pushed")
    }

    pub fn get<F, Args>(&mut self, path: &'static str, handler: F) -> &mut RouteEntry
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::GET, path, handler)
    }

    pub fn post<F, Args>(&mut self, path: &'static str, handler: F) -> &mut RouteEntry
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::POST, path, handler)
    }

    pub fn delete<F, Args>(&mut self, path: &'static str, handler: F) -> &mut RouteEntry
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::DELETE, path, handler)
    }

    /// `(METHOD, path)` for every route, e.g. `("POST", "/login")`.
    pub fn manifest(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|e| (e.method.to_string(), e.path.to_owned()))
            .collect()
    }

    /// `(METHOD, path, buckets)` for every route.
    pub fn buckets(&self) -> Vec<(String, &'static str, Vec<Endpoint>)> {
        self.entries
            .iter()
            .map(|e| (e.method.to_string(), e.path, e.buckets.clone()))
            .collect()
    }

    /// One resource per path; other methods on it answer 405 with the API error body.
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        let mut paths: Vec<&'static str> = Vec::new();
        for e in &self.entries {
            if !paths.contains(&e.path) {
                paths.push(e.path);
            }
        }
        let mut entries = self.entries;
        for path in paths {
            let mut resource = web::resource(path);
            let (mine, rest): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.path == path);
            entries = rest;
            let allow = mine
                .iter()
                .map(|e| e.method.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            for e in mine {
                resource = resource.route(if e.buckets.is_empty() {
                    e.route
                } else {
                    let buckets = e.buckets;
                    e.route.wrap(middleware::from_fn(
                        move |req: ServiceRequest, next: Next<BoxBody>| {
                            rate_limited(buckets.clone(), req, next)
                        },
                    ))
                });
            }
            // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
            cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, &allow) }
            })));
        }
    }
}

/// Draws one request from each of the client address's `buckets`; 429 when one is
/// empty.
async fn rate_limited(
    buckets: Vec<Endpoint>,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>() {
        let ip = auth::client_ip(req.request());
        for bucket in buckets {
            if let Err(e) = state.limits.check(bucket, ip) {
                let res = actix_web::ResponseError::error_response(&e);
                return Ok(req.into_response(res));
            }
        }
    }
    next.call(req).await
}

/// Every route of the server.
pub fn table() -> RouteTable {
    let mut t = RouteTable::default();
    health::configure(&mut t);
    wellknown::configure(&mut t);
    accounts::configure(&mut t);
    login::configure(&mut t);
    mfa::configure(&mut t);
    me::configure(&mut t);
    passkeys::configure(&mut t);
    passkey_login::configure(&mut t);
    oauth::configure(&mut t);
    authorize::configure(&mut t);
    revocations::configure(&mut t);
    sessions::configure(&mut t);
    admin::configure(&mut t);
    browser::configure(&mut t);
    metrics::configure(&mut t);
    recovery::configure(&mut t);
    webhooks::configure(&mut t);
    federation::configure(&mut t);
    t
}

/// `(METHOD, path)` of every route, for the OpenAPI consistency test.
pub fn manifest() -> Vec<(String, String)> {
    table().manifest()
}

pub async fn no_such_endpoint() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such endpoint".into()))
}

fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let err = ApiError::MethodNotAllowed(format!("{} is not allowed here", req.method()));
    let mut res = actix_web::ResponseError::error_response(&err);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
}

/// Headers on every response (OWASP Secure Headers).
/// CORS for the SPAs: credentialed requests from exactly the clients' `allowed_origins`
/// (never `*`, `Vary: Origin`). Requests from other origins pass through without CORS
/// headers (so browsers refuse to expose the answer) and `/browser/*` refuses them.
pub fn cors(state: &AppState) -> actix_cors::Cors {
    let mut origins: Vec<String> = state
        .settings
        .clients
        .iter()
        .flat_map(|c| c.allowed_origins.iter().cloned())
        .collect();
    origins.sort();
    origins.dedup();
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-latchkey-csrf"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .supports_credentials()
        .max_age(600)
        .block_on_origin_mismatch(false);
    for o in &origins {
        cors = cors.allowed_origin(o);
    }
    cors
}

/// On every response. `Strict-Transport-Security` only when latchkey itself serves TLS
/// (behind a proxy, the proxy that terminates TLS sends it).
pub fn security_headers(hsts: bool) -> DefaultHeaders {
    let headers = DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Content-Security-Policy", "frame-ancestors 'none'"));
    if hsts {
        // Two years, the value hstspreload.org asks for (OWASP HTTP Headers cheat sheet).
        headers.add((
            "Strict-Transport-Security",
            "max-age=63072000; includeSubDomains",
        ))
    } else {
        headers
    }
}

/// One log line per request: method, route pattern (never the query string), status,
/// latency and request id. Bodies and headers are never logged, so no token or password
/// can be. Also feeds the request metrics.
///
/// The request id is the client's `X-Request-Id` when it is a sane token (1–128 of
/// `A–Z a–z 0–9 - _ .`), else a new UUID; it is echoed in the response and attached to
/// every log line written while the request runs.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    // The caller's ids are filled in once known (`telemetry::record_caller`).
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        user_id = tracing::field::Empty,
        session_id = tracing::field::Empty,
        client_id = tracing::field::Empty,
    );
    // Store jobs' deadlines count from here (`store::deadline`).
    let mut res =
        crate::store::deadline::from_arrival(started, next.call(req).instrument(span.clone()))
            .await?;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            %method,
            route,
            status,
            // Whole microseconds, so the number prints without float artefacts.
            latency_ms = elapsed.as_micros() as f64 / 1000.0,
            "request"
        )
    });
    if let Some(state) = state {
        let method_label = match method.as_str() {
            m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
            _ => "other",
        };
        state.metrics.request(&route, method_label, status, elapsed);
    }
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(REQUEST_ID),
            v,
        );
    }
    Ok(res)
}

const REQUEST_ID: &str = "x-request-id";

/// Puts a deadline on every request's body: it must have arrived within
/// `server.client_timeout` of the head (as the head must within that of the connection),
/// or extraction answers 408 and the connection is closed (`extract::Deadline`).
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let within = req
        .app_data::<web::Data<AppState>>()
        .map_or(std::time::Duration::from_secs(5), |s| {
            s.settings.server.client_timeout.0
        });
    let payload = actix_web::HttpMessage::take_payload(&mut req);
    let stream: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>,
            >,
        >,
    > = Box::pin(extract::Deadline::new(payload, within));
    req.set_payload(actix_web::dev::Payload::from(stream));
    next.call(req).await
}

/// Outside CORS, on every response: (1) every error carries the JSON error body of
/// docs/contract.md "Conventions" (but the HTML pages shown to a person) — the CORS layer refuses a preflight with a plain-text
/// 400, and anything else not rendered by `ApiError` is rendered again here; (2)
/// `Access-Control-Allow-Credentials` (and `-Expose-Headers`) only beside an
/// `Access-Control-Allow-Origin`, i.e. only for an allowed origin (actix-cors adds them
/// to every response).
pub async fn response_hygiene(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let body_limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(16 * 1024, |s| s.settings.server.body_limit);
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    let status = res.status();
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    // latchkey's own pages (the sign-in page) answer a person, in HTML, on purpose.
    let page = res
        .response()
        .extensions()
        .contains::<signin_page::HtmlPage>();
    if (status.is_client_error() || status.is_server_error()) && !json && !page {
        let err = ApiError::for_status(status, body_limit);
        let (req, old) = res.into_parts();
        let mut new = actix_web::ResponseError::error_response(&err);
        // Keep what the layers inside added (CORS `Vary`, security headers, Allow).
        for (name, value) in old.headers() {
            if !new.headers().contains_key(name)
                && name != header::CONTENT_TYPE
                && name != header::CONTENT_LENGTH
            {
                new.headers_mut().append(name.clone(), value.clone());
            }
        }
        *new.status_mut() = status;
        return Ok(ServiceResponse::new(req, new));
    }
    Ok(res)
}

/// Total bytes of request header names and values accepted; more is 431 with the error
/// body (actix's own limit is far larger, and answers without one).
pub use crate::error::MAX_HEADER_BYTES;

/// Refuses oversized request heads before any handler runs.
pub async fn limit_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        let err = ApiError::HeadersTooLarge(MAX_HEADER_BYTES);
        let res = actix_web::ResponseError::error_response(&err);
        return Ok(req.into_response(res).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unauthenticated_state_changing_route_draws_from_a_rate_limit_bucket() {
        // docs/contract.md "Standards checklist" #19: revocation is rate-limited like the
        // token endpoint; login, signup and the browser endpoints are brute-force targets;
        // and every route that checks a password draws from the login bucket
        // (docs/contract.md "Login throttling").
        use Endpoint::*;
        let expected: [(&str, &str, &[Endpoint]); 31] = [
            ("POST", "/signup", &[Signup]),
            ("POST", "/login", &[Login]),
            ("POST", "/oauth/token", &[Token]),
            ("POST", "/oauth/revoke", &[Revoke]),
            ("POST", "/oauth/introspect", &[Introspect]),
            ("POST", "/browser/login", &[Browser, Login]),
            ("POST", "/browser/refresh", &[Browser]),
            ("POST", "/browser/logout", &[Browser]),
            ("POST", "/me/password", &[Login]),
            ("DELETE", "/me", &[Login]),
            // docs/contract.md "Email and account recovery".
            ("POST", "/password/forgot", &[Recovery]),
            ("POST", "/password/reset", &[Recovery]),
            ("POST", "/email/verify", &[Recovery]),
            ("POST", "/me/email", &[Login]),
            // docs/contract.md "Second factor": every route that checks a code or a
            // password.
            ("POST", "/login/mfa", &[Login]),
            ("POST", "/browser/login/mfa", &[Browser, Login]),
            ("POST", "/me/mfa/totp", &[Login]),
            ("POST", "/me/mfa/totp/confirm", &[Login]),
            ("DELETE", "/me/mfa/totp", &[Login]),
            ("POST", "/me/mfa/recovery-codes", &[Login]),
            // docs/contract.md "Passkeys": each start stores a ceremony, each finish
            // verifies an authenticator's answer.
            ("POST", "/me/passkeys/register/start", &[Login]),
            ("POST", "/me/passkeys/register/finish", &[Login]),
            ("POST", "/login/passkey/start", &[Login]),
            ("POST", "/login/passkey/finish", &[Login]),
            ("POST", "/browser/login/passkey/start", &[Browser, Login]),
            ("POST", "/browser/login/passkey/finish", &[Browser, Login]),
            ("POST", "/login/mfa/passkey/start", &[Login]),
            // Identity providers: each start stores a state, each callback calls out.
            ("GET", "/browser/federate/{idp}", &[Browser]),
            ("GET", "/federate/{idp}/callback", &[Browser]),
            // Native apps: the sign-in page, and its form, which checks a password.
            ("GET", "/oauth/authorize", &[Browser]),
            ("POST", "/oauth/authorize", &[Browser, Login]),
        ];
        let table = table().buckets();
        for (method, path, bucket) in expected {
            let found = table
                .iter()
                .find(|(m, p, _)| m == method && *p == path)
                .unwrap_or_else(|| panic!("{method} {path} is not routed"));
            assert_eq!(found.2, bucket, "{method} {path}");
        }
        let limited = table.iter().filter(|(_, _, b)| !b.is_empty()).count();
        assert_eq!(
            limited,
            expected.len(),
            "a route draws from a bucket not listed here"
        );
    }
}

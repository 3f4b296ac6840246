//! HTTP routes, one module per area. Each module's `configure` adds its routes to the
//! [`RouteTable`], which registers them and also lists them, so a test can hold the
//! server's routes against `openapi.yaml`.

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod extract;
pub mod health;
pub mod login;
pub mod me;
pub mod oauth;
pub mod responses;
pub mod sessions;
pub mod wellknown;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route};

use crate::error::ApiError;

#[derive(Default)]
pub struct RouteTable {
    entries: Vec<(&'static str, Method, Route)>,
}

impl RouteTable {
    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.entries
            .push((path, method.clone(), web::method(method).to(handler)));
    }

    pub fn get<F, Args>(&mut self, path: &'static str, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::GET, path, handler);
    }

    pub fn post<F, Args>(&mut self, path: &'static str, handler: F)
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.add(Method::POST, path, handler);
    }

    /// `(METHOD, path)` for every route, e.g. `("POST", "/login")`.
    pub fn manifest(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .map(|(p, m, _)| (m.to_string(), (*p).to_owned()))
            .collect()
    }

    /// One resource per path; other methods on it answer 405 with the API error body.
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        let mut paths: Vec<&'static str> = Vec::new();
        for (p, _, _) in &self.entries {
            if !paths.contains(p) {
                paths.push(p);
            }
        }
        let mut entries = self.entries;
        for path in paths {
            let mut resource = web::resource(path);
            let (mine, rest): (Vec<_>, Vec<_>) =
                entries.into_iter().partition(|(p, _, _)| *p == path);
            entries = rest;
            let allow = mine
                .iter()
                .map(|(_, m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            for (_, _, route) in mine {
                resource = resource.route(route);
            }
            // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
            cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, &allow) }
            })));
        }
    }
}

/// Every route of the server.
pub fn table() -> RouteTable {
    let mut t = RouteTable::default();
    health::configure(&mut t);
    wellknown::configure(&mut t);
    accounts::configure(&mut t);
    login::configure(&mut t);
    me::configure(&mut t);
    oauth::configure(&mut t);
    sessions::configure(&mut t);
    admin::configure(&mut t);
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
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("Content-Security-Policy", "frame-ancestors 'none'"))
}

/// One log line per request: method, route pattern (never the query string), status,
/// latency. Bodies and headers are never logged, so no token or password can be.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let res = next.call(req).await?;
    tracing::info!(
        %method,
        route,
        status = res.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(res)
}

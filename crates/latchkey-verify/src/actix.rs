//! actix-web glue: [`Claims`](crate::Claims) as an extractor. Register the verifier
//! with `App::new().app_data(web::Data::new(verifier))`; a handler that takes `Claims`
//! runs only for a request with a valid, unrevoked Bearer token. Otherwise the answer is
//! 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3: `error="invalid_token"` when a
//! token was sent), or 503 when the revocation feed is stale and the verifier refuses.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};

use crate::{Claims, Verifier, VerifyError};

/// Why the extractor refused a request.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no Bearer token")]
    Missing,
    #[error("{0}")]
    Token(VerifyError),
    #[error("no Verifier registered as app data")]
    NotConfigured,
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        match self {
            Rejection::Missing => StatusCode::UNAUTHORIZED,
            Rejection::Token(VerifyError::FeedStale) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Token(_) => StatusCode::UNAUTHORIZED,
            Rejection::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        match self {
            // RFC 6750 §3.1: no error code when the request had no token.
            Rejection::Missing => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Rejection::Token(VerifyError::FeedStale) => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            Rejection::Token(e) => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer error=\"invalid_token\", error_description=\"{e}\""),
                ));
            }
            Rejection::NotConfigured => {}
        }
        res.json(serde_json::json!({"error": match self {
            Rejection::Missing | Rejection::Token(VerifyError::FeedStale) => "unauthorized",
            Rejection::Token(_) => "invalid_token",
            Rejection::NotConfigured => "server_error",
        }, "error_description": self.to_string()}))
    }
}

impl FromRequest for Claims {
    type Error = Rejection;
    type Future = Pin<Box<dyn Future<Output = Result<Claims, Rejection>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        Box::pin(async move {
            let verifier = verifier.ok_or(Rejection::NotConfigured)?;
            let token = token.ok_or(Rejection::Missing)?;
            verifier.verify(&token).await.map_err(Rejection::Token)
        })
    }
}

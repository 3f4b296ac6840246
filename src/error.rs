//! The one error type every handler returns, mapped to the error body of docs/contract.md "Conventions"
//! `{"error": "<code>", "error_description": "<text>"}` (RFC 6749 §5.2 style).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Total bytes of request header names and values accepted; more is 431 with the error
/// body (`routes::limit_headers`).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("{0}")]
    InvalidScope(String),
    /// RFC 8707 §2: a `resource` the client may not have a token for.
    #[error("{0}")]
    InvalidTarget(String),
    #[error("the grant type is not supported; use refresh_token")]
    UnsupportedGrantType,
    /// `basic`: the client authenticated with HTTP Basic, so 401 carries a challenge
    /// (RFC 6749 §5.2).
    #[error("client authentication failed")]
    InvalidClient { basic: bool },
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The password was right and the account has a second factor: finish at
    /// `/login/mfa` (or `/browser/login/mfa`) with this token (docs/contract.md "Second
    /// factor"). 401 with `mfa_token` and `mfa_methods` beside the usual members.
    #[error("a second factor is required; send a code with the mfa_token to /login/mfa")]
    MfaRequired {
        mfa_token: crate::secret::Secret<String>,
        methods: Vec<&'static str>,
    },
    /// A second-factor code that is wrong, reused, outside the allowed drift, or a
    /// recovery code that is unknown or spent. 401 `invalid_credentials`.
    #[error("the code is wrong, expired or already used")]
    WrongCode,
    /// RFC 9470 §3: the access token's authentication is not strong or recent enough for
    /// this route. 401 with `WWW-Authenticate: Bearer
    /// error="insufficient_user_authentication"`, `max_age` and, when the second factor
    /// is what is missing, `acr_values`.
    #[error("{description}")]
    StepUpRequired {
        description: String,
        /// RFC 9470 §3 `max_age`: seconds since the login that the route accepts.
        max_age: u64,
        /// The login behind the token had no second factor.
        needs_mfa: bool,
    },
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// The request body did not arrive within `server.client_timeout`; the connection
    /// is closed after this answer.
    #[error("the request body took too long to arrive")]
    RequestTimeout,
    #[error("too many requests; retry later")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the server is busy; retry later")]
    Unavailable { retry_after_secs: u64 },
    /// The database cannot be reached (PostgreSQL down or restarting): 503 like
    /// `Unavailable`, saying what is wrong so an operator reading it looks at the
    /// database, not at the load.
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable { retry_after_secs: u64 },
    /// Anything the client did not cause. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: String,
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        ResponseError::status_code(self).as_u16()
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::InvalidScope(_) => "invalid_scope",
            ApiError::InvalidTarget(_) => "invalid_target",
            ApiError::UnsupportedGrantType => "unsupported_grant_type",
            ApiError::InvalidClient { .. } => "invalid_client",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::MfaRequired { .. } => "mfa_required",
            ApiError::WrongCode => "invalid_credentials",
            ApiError::StepUpRequired { .. } => "insufficient_user_authentication",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "invalid_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::HeadersTooLarge(_) => "invalid_request",
            ApiError::RequestTimeout => "invalid_request",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } | ApiError::DatabaseUnavailable { .. } => {
                "temporarily_unavailable"
            }
            ApiError::Internal(_) => "server_error",
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    /// The error to render for a response of `status` that some layer outside our
    /// handlers produced without the error body (the CORS layer refusing a preflight,
    /// say). The description is generic: nothing of the request is repeated.
    pub fn for_status(status: StatusCode, body_limit: usize) -> Self {
        match status.as_u16() {
            401 => ApiError::InvalidToken("authentication is required".into()),
            403 => ApiError::Forbidden("this request is not allowed".into()),
            404 => ApiError::NotFound("no such endpoint".into()),
            405 => ApiError::MethodNotAllowed("this method is not allowed here".into()),
            408 => ApiError::RequestTimeout,
            413 => ApiError::PayloadTooLarge(body_limit),
            415 => ApiError::UnsupportedMediaType("this content type is not accepted".into()),
            431 => ApiError::HeadersTooLarge(MAX_HEADER_BYTES),
            429 => ApiError::TooManyRequests {
                retry_after_secs: 1,
            },
            400..=499 => ApiError::InvalidRequest("the request was refused".into()),
            503 => ApiError::Unavailable {
                retry_after_secs: 1,
            },
            _ => ApiError::Internal(anyhow::anyhow!("a {status} response had no error body")),
        }
    }
}

/// RFC 6749 §5.2: error_description is printable ASCII without `"` and `\`.
fn sanitize_description(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .collect()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::InvalidGrant(_)
            | ApiError::InvalidScope(_)
            | ApiError::InvalidTarget(_)
            | ApiError::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            ApiError::InvalidClient { .. }
            | ApiError::InvalidCredentials
            | ApiError::MfaRequired { .. }
            | ApiError::WrongCode
            | ApiError::StepUpRequired { .. }
            | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::DatabaseUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            // The chain goes to the log; the client sees only "internal error".
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        match self {
            ApiError::InvalidToken(_) => {
                // RFC 6750 §3: the challenge names the error.
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ));
            }
            ApiError::InvalidClient { basic: true } => {
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"latchkey\""),
                ));
            }
            ApiError::TooManyRequests { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs }
            | ApiError::DatabaseUnavailable { retry_after_secs } => {
                res.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::RequestTimeout => {
                // The rest of the body may still be on its way: end the connection.
                res.force_close();
            }
            ApiError::StepUpRequired {
                max_age, needs_mfa, ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&step_up_challenge(
                    &sanitize_description(&self.to_string()),
                    *max_age,
                    *needs_mfa,
                )) {
                    res.insert_header((header::WWW_AUTHENTICATE, v));
                }
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.code(),
            error_description: sanitize_description(&self.to_string()),
        };
        if let ApiError::MfaRequired { mfa_token, methods } = self {
            // docs/contract.md "Second factor": the token and the methods that finish
            // the login, beside the usual error members.
            return res.json(serde_json::json!({
                "error": body.error,
                "error_description": body.error_description,
                "mfa_token": mfa_token.expose(),
                "mfa_methods": methods,
            }));
        }
        res.json(body)
    }
}

/// The ACR that RFC 9470 §3 `acr_values` asks for when the second factor is missing:
/// the OpenID PAPE multi-factor policy URI, the widely understood name for "log in with
/// more than one factor" (latchkey issues no `acr` claim of its own).
pub const MFA_ACR: &str = "http://schemas.openid.net/pape/policies/2007/06/multi-factor";

/// RFC 9470 §3 (with RFC 6750 §3): `Bearer error="insufficient_user_authentication",
/// error_description="…", max_age=N[, acr_values="…"]`.
fn step_up_challenge(description: &str, max_age: u64, needs_mfa: bool) -> String {
    let mut v = format!(
        "Bearer error=\"insufficient_user_authentication\", error_description=\"{description}\", max_age={max_age}"
    );
    if needs_mfa {
        v.push_str(&format!(", acr_values=\"{MFA_ACR}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_5_2_descriptions_are_printable_ascii_without_quotes_or_backslashes() {
        let s = sanitize_description("bad \"x\" \\ é\n");
        assert!(s
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'));
    }

    #[test]
    fn rfc9470_3_step_up_challenge_names_the_error_max_age_and_acr_values() {
        let e = ApiError::StepUpRequired {
            description: "log in again with your second factor".into(),
            max_age: 900,
            needs_mfa: true,
        };
        let res = e.error_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let h = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            h.starts_with("Bearer error=\"insufficient_user_authentication\""),
            "{h}"
        );
        assert!(h.contains(", max_age=900"), "{h}");
        assert!(h.contains(&format!("acr_values=\"{MFA_ACR}\"")), "{h}");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::internal(anyhow::anyhow!("SQLITE_BUSY: secret detail"));
        assert_eq!(e.to_string(), "internal error");
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

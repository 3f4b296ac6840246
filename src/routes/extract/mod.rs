//! Request-body extraction that fails with the API error body: 413 over the limit, 415
//! for other content types, 408 when the body does not arrive in time, 400 for
//! malformed or mistyped input — never a 500. Every JSON body is parsed by one parser
//! ([`parse_object`]), so `/login` and `/browser/login` refuse the same things.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;

use crate::error::ApiError;
use crate::state::AppState;

mod deadline;
mod oauth_params;

pub use deadline::Deadline;
pub use oauth_params::OAuthParams;

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type_required(true)
        .content_type(|mime| mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
        .error_handler(move |err, _req| json_error(err, limit).into())
}

/// Query strings that do not parse are 400 `invalid_request`.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ApiError::InvalidRequest(format!("invalid query string: {err}")).into()
    })
}

/// Path segments that do not parse are 404: no such resource.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err, _req| ApiError::NotFound("no such resource".into()).into())
}

fn json_error(err: JsonPayloadError, limit: usize) -> ApiError {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(limit)
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("the body must be application/json".into())
        }
        JsonPayloadError::Deserialize(e) => ApiError::InvalidRequest(describe_json_error(&e)),
        JsonPayloadError::Payload(e) => match payload_error(e) {
            ApiError::PayloadTooLarge(_) => ApiError::PayloadTooLarge(limit),
            other => other,
        },
        JsonPayloadError::Serialize(e) => ApiError::internal(e),
        other => ApiError::InvalidRequest(format!("cannot read the body: {other}")),
    }
}

/// serde's message, minus any quoted input (which could be a secret typed in the wrong
/// field).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => {
            format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        }
        Category::Io => "cannot read the body".into(),
        Category::Data => {
            // serde's text can quote the submitted value (possibly a password typed in
            // the wrong field); keep it only when it names a field and nothing else.
            let msg = e.to_string();
            let names_only_a_field = (msg.starts_with("missing field `")
                || msg.starts_with("unknown field `"))
                && msg.matches('`').count() <= 2 + usize::from(msg.starts_with("unknown field"));
            if names_only_a_field && msg.starts_with("missing field") {
                let field = msg.split('`').nth(1).unwrap_or_default();
                format!("invalid request body: missing field {field}")
            } else {
                format!(
                    "invalid request body: a field has the wrong type or value (line {}, column {})",
                    e.line(),
                    e.column()
                )
            }
        }
    }
}

fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<web::Data<AppState>>()
        .map_or(16 * 1024, |s| s.settings.server.body_limit)
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

fn content_type(req: &HttpRequest) -> Option<mime::Mime> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
}

/// A JSON object's members in order, duplicates kept (a `serde_json::Map` would keep
/// only the last), so a repeated parameter can be refused (RFC 6749 §3.2).
struct PairsInOrder(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for PairsInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PairsInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PairsInOrder, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    pairs.push(entry);
                }
                Ok(PairsInOrder(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

/// The JSON parser of every JSON body: a JSON object (an array or a bare value is not
/// a body serde should map onto a struct) in which no member appears twice (a
/// `serde_json::Map` would keep the last, a struct would refuse only the members it
/// knows), then `T`. 400 `invalid_request` otherwise, without echoing the input.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let PairsInOrder(pairs) = serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(describe_json_error(&e)))?;
    let mut seen = HashSet::with_capacity(pairs.len());
    if let Some((repeated, _)) = pairs.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        let name: String = repeated.chars().take(64).collect();
        return Err(ApiError::InvalidRequest(format!(
            "member {name} appears more than once"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest(describe_json_error(&e)))
}

fn is_json(req: &HttpRequest) -> bool {
    content_type(req).is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
}

/// The raw body, read within `server.body_limit` (413, also for a declared
/// `Content-Length` over it, before reading) and its deadline (408).
pub struct RawBody(pub Bytes);

impl FromRequest for RawBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = body_limit(req);
        let declared = declared_length(req);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            read_limited(&mut payload, limit).await.map(Self)
        })
    }
}

/// A JSON object body (`application/json` or `…+json`, else 415), parsed by
/// [`parse_object`].
pub struct JsonBody<T>(pub T);

impl<T> JsonBody<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The content type first: a body that will be refused is not read.
        if !is_json(req) {
            return Box::pin(async {
                Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json".into(),
                ))
            });
        }
        let raw = RawBody::from_request(req, payload);
        Box::pin(async move { parse_object(&raw.await?.0).map(Self) })
    }
}

/// A JSON body that may be empty (then `T::default()`); anything else must be valid
/// `application/json`.
pub struct OptionalJson<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = is_json(req);
        let raw = RawBody::from_request(req, payload);
        Box::pin(async move {
            let body = raw.await?.0;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            if !is_json {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json".into(),
                ));
            }
            parse_object(&body).map(Self)
        })
    }
}

/// A body-stream failure: 408 when its deadline passed ([`Deadline`]), 413 when
/// actix's own limit stopped it, 400 otherwise.
fn payload_error(e: PayloadError) -> ApiError {
    match e {
        PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::RequestTimeout
        }
        PayloadError::Overflow => ApiError::PayloadTooLarge(0),
        other => ApiError::InvalidRequest(format!("cannot read the body: {other}")),
    }
}

async fn read_limited(payload: &mut Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match payload_error(e) {
            ApiError::PayloadTooLarge(_) => ApiError::PayloadTooLarge(limit),
            other => other,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_never_echo_numbers_or_escaped_strings() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            password: String,
        }
        for body in [
            r#"{"password":12345678}"#,
            r#"{"password":["ab\"cd-secret"]}"#,
        ] {
            let e = serde_json::from_str::<T>(body).unwrap_err();
            let d = describe_json_error(&e);
            assert!(!d.contains("12345678") && !d.contains("secret"), "{d}");
        }
        let e = serde_json::from_str::<T>("{}").unwrap_err();
        assert_eq!(
            describe_json_error(&e),
            "invalid request body: missing field password"
        );
    }

    #[test]
    fn one_json_parser_refuses_repeated_members_and_non_objects() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            username: String,
        }
        let ok: T = parse_object(br#"{"username":"a","other":1}"#).unwrap();
        assert_eq!(ok.username, "a");
        for bad in [
            br#"{"username":"a","username":"b"}"#.as_slice(),
            br#"{"username":"a","x":1,"x":2}"#,
            br#"["a"]"#,
            b"\"a\"",
        ] {
            let e = parse_object::<T>(bad).unwrap_err();
            assert_eq!(
                e.code(),
                "invalid_request",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn json_errors_never_echo_input() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            remember_me: bool,
        }
        let e = serde_json::from_str::<T>(r#"{"remember_me":"hunter2"}"#).unwrap_err();
        assert!(!describe_json_error(&e).contains("hunter2"));
    }
}

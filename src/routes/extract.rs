//! Request-body extraction that fails with the API error body: 413 over the limit, 415
//! for other content types, 408 when the body does not arrive in time, 400 for
//! malformed or mistyped input — never a 500. Every JSON body is parsed by one parser
//! ([`parse_object`]), so `/login` and `/browser/login` refuse the same things.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PayloadError};
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::{Stream, StreamExt};

use crate::error::ApiError;
use crate::state::AppState;

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

/// Parameters of an `/oauth/*` request, from an `application/x-www-form-urlencoded` body
/// (as RFC 6749 clients send) or a JSON object of strings.
/// RFC 6749 §3.2: a parameter sent twice is `invalid_request`; empty values count as
/// omitted; unknown parameters are ignored. The exception is RFC 8707's `resource`,
/// which may be repeated (in JSON: a string or an array of strings).
#[derive(Debug, Default)]
pub struct OAuthParams(HashMap<String, String>, HashMap<String, Vec<String>>);

/// Parameters that may appear more than once (RFC 8707 §2: `resource`).
const REPEATABLE: [&str; 1] = ["resource"];

impl OAuthParams {
    /// The body parser on raw input, for the fuzz target (`fuzz/`): what the extractor
    /// does after the size and content-type checks of the request itself.
    pub fn parse_raw(content_type: &str, body: &[u8]) -> Result<Self, ApiError> {
        Self::parse(content_type.parse::<mime::Mime>().ok(), body)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every non-empty value of a repeatable parameter, in order.
    pub fn get_all(&self, name: &str) -> Vec<String> {
        self.1
            .get(name)
            .map(|v| v.iter().filter(|s| !s.is_empty()).cloned().collect())
            .unwrap_or_default()
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::InvalidRequest(format!("missing parameter: {name}")))
    }

    fn from_pairs(pairs: impl Iterator<Item = (String, String)>) -> Result<Self, ApiError> {
        let mut map = HashMap::new();
        let mut multi: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            if REPEATABLE.contains(&k.as_str()) {
                multi.entry(k).or_default().push(v);
                continue;
            }
            if map.insert(k.clone(), v).is_some() {
                return Err(ApiError::InvalidRequest(format!(
                    "parameter {k} is repeated"
                )));
            }
        }
        Ok(Self(map, multi))
    }

    fn parse(content_type: Option<mime::Mime>, body: &[u8]) -> Result<Self, ApiError> {
        let Some(mime) = content_type else {
            return Err(ApiError::UnsupportedMediaType(
                "send application/x-www-form-urlencoded or application/json".into(),
            ));
        };
        if mime.type_() == mime::APPLICATION && mime.subtype() == mime::WWW_FORM_URLENCODED {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::InvalidRequest("the body is not valid UTF-8".into()))?;
            Self::from_pairs(strict_form_pairs(text)?.into_iter())
        } else if mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON) {
            let PairsInOrder(obj) = serde_json::from_slice(body)
                .map_err(|e| ApiError::InvalidRequest(describe_json_error(&e)))?;
            let mut pairs = Vec::with_capacity(obj.len());
            for (k, v) in obj {
                match v {
                    serde_json::Value::String(s) => pairs.push((k, s)),
                    serde_json::Value::Null => {}
                    serde_json::Value::Array(items) if REPEATABLE.contains(&k.as_str()) => {
                        for item in items {
                            let serde_json::Value::String(s) = item else {
                                return Err(ApiError::InvalidRequest(format!(
                                    "parameter {k} must be a string or an array of strings"
                                )));
                            };
                            pairs.push((k.clone(), s));
                        }
                    }
                    _ => {
                        return Err(ApiError::InvalidRequest(format!(
                            "parameter {k} must be a string"
                        )))
                    }
                }
            }
            Self::from_pairs(pairs.into_iter())
        } else {
            Err(ApiError::UnsupportedMediaType(
                "send application/x-www-form-urlencoded or application/json".into(),
            ))
        }
    }
}

/// `application/x-www-form-urlencoded` pairs, refusing percent-escapes that decode to
/// invalid UTF-8 (a lossy decoder would turn them into U+FFFD and hide the mistake).
fn strict_form_pairs(text: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| -> Result<String, ApiError> {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                ApiError::InvalidRequest("a form parameter is not valid UTF-8 once decoded".into())
            })
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
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

/// A request body stream with a deadline: once `deadline` has passed without the body
/// having ended, it fails with a `TimedOut` error, which extraction turns into 408.
/// The `body_deadline` middleware puts it on every request, so a client that trickles
/// its body (one byte every few seconds) is cut off like one that trickles its head.
pub struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl Deadline {
    pub fn new(inner: Payload, within: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(within)),
            expired: false,
        }
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Poll::Pending
    }
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

impl FromRequest for OAuthParams {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = content_type(req);
        let raw = RawBody::from_request(req, payload);
        Box::pin(async move { Self::parse(content_type, &raw.await?.0) })
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

    fn form() -> Option<mime::Mime> {
        Some(mime::APPLICATION_WWW_FORM_URLENCODED)
    }

    #[test]
    fn rfc6749_3_2_repeated_parameters_are_invalid_request() {
        let err = OAuthParams::parse(form(), b"grant_type=a&grant_type=b").unwrap_err();
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn rfc8707_2_resource_may_be_repeated_in_a_form_or_be_a_json_array() {
        let p = OAuthParams::parse(form(), b"resource=a&grant_type=x&resource=b").unwrap();
        assert_eq!(p.get_all("resource"), ["a", "b"]);
        let p = OAuthParams::parse(
            Some(mime::APPLICATION_JSON),
            br#"{"resource":["a","b"],"grant_type":"x"}"#,
        )
        .unwrap();
        assert_eq!(p.get_all("resource"), ["a", "b"]);
        let p = OAuthParams::parse(Some(mime::APPLICATION_JSON), br#"{"resource":"a"}"#).unwrap();
        assert_eq!(p.get_all("resource"), ["a"]);
        assert!(OAuthParams::parse(Some(mime::APPLICATION_JSON), br#"{"resource":[1]}"#).is_err());
        // Other parameters still may not be repeated or be arrays.
        assert!(OAuthParams::parse(form(), b"scope=a&scope=b").is_err());
        assert!(OAuthParams::parse(Some(mime::APPLICATION_JSON), br#"{"scope":["a"]}"#).is_err());
    }

    #[test]
    fn rfc6749_3_1_empty_parameters_count_as_omitted() {
        let p = OAuthParams::parse(form(), b"grant_type=&x=1").unwrap();
        assert!(p.get("grant_type").is_none());
        assert!(p.require("grant_type").is_err());
    }

    #[test]
    fn json_bodies_of_strings_are_accepted() {
        let p = OAuthParams::parse(Some(mime::APPLICATION_JSON), br#"{"token":"abc","n":null}"#)
            .unwrap();
        assert_eq!(p.get("token"), Some("abc"));
    }

    #[test]
    fn rfc6749_3_2_repeated_json_members_are_invalid_request() {
        let err = OAuthParams::parse(
            Some(mime::APPLICATION_JSON),
            br#"{"grant_type":"refresh_token","grant_type":"password"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        let err = OAuthParams::parse(Some(mime::APPLICATION_JSON), b"[1]").unwrap_err();
        assert_eq!(err.code(), "invalid_request");
    }

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
    fn other_content_types_are_415() {
        let err = OAuthParams::parse(Some(mime::TEXT_PLAIN), b"token=x").unwrap_err();
        assert_eq!(err.code(), "unsupported_media_type");
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

//! The parameters of an `/oauth/*` request (RFC 6749 §3.2, RFC 8707 §2), from a form or
//! a JSON object of strings.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

use super::{content_type, describe_json_error, PairsInOrder, RawBody};
use crate::error::ApiError;

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

impl FromRequest for OAuthParams {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = content_type(req);
        let raw = RawBody::from_request(req, payload);
        Box::pin(async move { Self::parse(content_type, &raw.await?.0) })
    }
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
    fn other_content_types_are_415() {
        let err = OAuthParams::parse(Some(mime::TEXT_PLAIN), b"token=x").unwrap_err();
        assert_eq!(err.code(), "unsupported_media_type");
    }
}

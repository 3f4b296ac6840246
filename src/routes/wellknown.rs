//! Discovery: the JWKS (RFC 7517) and authorization-server metadata (RFC 8414).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::RouteTable;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/.well-known/jwks.json", jwks);
    t.get("/.well-known/oauth-authorization-server", metadata);
    t.get("/.well-known/openid-configuration", metadata);
}

/// Pre-serialized bytes, `Cache-Control: public, max-age`, strong `ETag`, 304 on match.
async fn jwks(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let set = state.keys.current(state.now());
    let cache = format!(
        "public, max-age={}",
        state.settings.keys.jwks_max_age.as_secs()
    );
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == set.etag || t.trim() == "*")
        });
    let mut res = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, set.etag.clone()));
    if matches {
        return res.finish();
    }
    res.content_type("application/json").body(set.jwks.clone())
}

/// RFC 8414 §2 metadata. `issuer` is the configured issuer byte for byte, the same
/// string every token carries in `iss`. Empty arrays are omitted (RFC 8414 §2).
///
/// `/.well-known/openid-configuration` serves this same document so that discovery
/// clients which only try that path find latchkey; it is not an OpenID Provider and
/// publishes no ID-token fields (docs/contract.md "Endpoints").
async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.settings.issuer.as_str();
    let base = issuer.trim_end_matches('/');
    let algs = state.keys.current(state.now()).algorithms();
    let mut m = Map::new();
    m.insert("issuer".into(), json!(issuer));
    m.insert(
        "jwks_uri".into(),
        json!(format!("{base}/.well-known/jwks.json")),
    );
    m.insert(
        "token_endpoint".into(),
        json!(format!("{base}/oauth/token")),
    );
    m.insert(
        "revocation_endpoint".into(),
        json!(format!("{base}/oauth/revoke")),
    );
    m.insert(
        "introspection_endpoint".into(),
        json!(format!("{base}/oauth/introspect")),
    );
    // docs/contract.md "Revocation feed"; `/stream` below it.
    m.insert(
        "latchkey_revocations_endpoint".into(),
        json!(format!("{base}/revocations")),
    );
    // RFC 9700 §2.4: no password grant; login is a first-party endpoint.
    m.insert(
        "grant_types_supported".into(),
        json!(["authorization_code", "refresh_token"]),
    );
    // RFC 8252 native apps: the code flow with PKCE S256 only (RFC 7636, OAuth 2.1),
    // and `iss` in the authorization response (RFC 9207).
    m.insert(
        "authorization_endpoint".into(),
        json!(format!("{base}/oauth/authorize")),
    );
    m.insert("response_types_supported".into(), json!(["code"]));
    m.insert("code_challenge_methods_supported".into(), json!(["S256"]));
    m.insert(
        "authorization_response_iss_parameter_supported".into(),
        json!(true),
    );
    // Public clients (SPAs, mobile apps): no client secret at the token endpoint.
    m.insert(
        "token_endpoint_auth_methods_supported".into(),
        json!(["none"]),
    );
    // Public clients revoke with no secret; resource servers authenticate either way.
    m.insert(
        "revocation_endpoint_auth_methods_supported".into(),
        json!(["none", "client_secret_basic", "client_secret_post"]),
    );
    m.insert(
        "introspection_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post"]),
    );
    m.insert(
        "access_token_signing_alg_values_supported".into(),
        json!(algs),
    );
    let mut scopes: Vec<&str> = state
        .settings
        .clients
        .iter()
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    if !scopes.is_empty() {
        m.insert("scopes_supported".into(), json!(scopes));
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(Value::Object(m))
}

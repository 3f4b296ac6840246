use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{jwt_parts, spawn_app};

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[tokio::test]
async fn rfc7517_jwks_holds_only_public_members_with_kid_alg_and_use() {
    let app = spawn_app().await;
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        for m in PRIVATE_MEMBERS {
            assert!(k.get(m).is_none(), "private member {m} in {k}");
        }
        assert_eq!(k["use"], "sig");
        assert!(k["kid"].is_string());
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["kty"], "EC");
        assert_eq!(k["crv"], "P-256");
    }
}

#[tokio::test]
async fn jwks_answers_if_none_match_with_304() {
    let app = spawn_app().await;
    let res = app.get("/.well-known/jwks.json").await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()["etag"], etag.as_str());
    let res = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn rfc8414_metadata_issuer_matches_token_iss_and_carries_no_id_token_fields() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let (header, claims) = jwt_parts(&t.access);
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(m["issuer"], claims["iss"], "{path}");
        assert_eq!(
            m["grant_types_supported"],
            serde_json::json!(["authorization_code", "refresh_token"])
        );
        // RFC 8252 native apps: the code flow with PKCE S256 only (RFC 7636, OAuth 2.1).
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            m["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            m["authorization_endpoint"],
            "http://127.0.0.1:8080/oauth/authorize"
        );
        assert!(!m["grant_types_supported"].to_string().contains("password"));
        for k in [
            "jwks_uri",
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            assert!(
                m[k].as_str().unwrap().starts_with("http://127.0.0.1:8080/"),
                "{k}"
            );
        }
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            serde_json::json!(["none"])
        );
        // Resource servers authenticate by Basic or in the body (client_secret_post,
        // openid-client v6's default); public clients revoke with no secret.
        assert_eq!(
            m["introspection_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            m["revocation_endpoint_auth_methods_supported"],
            serde_json::json!(["none", "client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            m["access_token_signing_alg_values_supported"],
            serde_json::json!(["ES256"])
        );
        // latchkey issues no ID tokens, so no ID-token field.
        for absent in [
            "id_token_signing_alg_values_supported",
            "subject_types_supported",
            "userinfo_endpoint",
        ] {
            assert!(m.get(absent).is_none(), "{path} has {absent}");
        }
        // RFC 8414 §2: arrays with no elements are omitted.
        for (k, v) in m.as_object().unwrap() {
            if let Some(a) = v.as_array() {
                assert!(!a.is_empty(), "{k} is an empty array");
            }
        }
    }
    // Both paths serve one document.
    let a: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a, b);
    // The token's kid is in the JWKS.
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == header["kid"]));
}

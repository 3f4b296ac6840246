//! The forged-token matrix (RFC 8725 §3.1, §3.10–3.12; RFC 9068 §4; docs/contract.md "Standards checklist" #10): every
//! token below is refused by `/me` with 401 `invalid_token` (never 200, never 500) and
//! reported inactive by introspection (RFC 7662 §2.2 answers `{"active":false}`, as
//! docs/contract.md "Standards checklist" #35 requires, rather than an error).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, kid_of, spawn_app, TestApp};

pub(crate) fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

pub(crate) fn encode(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    )
}

/// The order n of the P-256 group (SEC 2 §2.4.2), big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// The other S of an ECDSA signature: n − S (the signature's "twin", which verifies too).
fn flip_s(sig: &mut [u8]) {
    let s = &mut sig[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = (d + (borrow << 8)) as u8;
    }
}

/// Signs with an ES256 key pair (the server's own, or an attacker's), with a low S as
/// latchkey's verifier requires, so each test's token differs only by its one flaw.
pub(crate) fn sign_es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = encode(header, claims);
    let mut sig = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    if sig[32] > 0x7f {
        // Certainly above n/2 (whose first byte is 0x7f); the twin is below it.
        flip_s(&mut sig);
    } else if sig[32] == 0x7f {
        // Too close to n/2 to tell by one byte: sign again.
        return sign_es256(key, header, claims);
    }
    format!("{input}.{}", b64(&sig))
}

/// The server's signing key, read from its key folder as an attacker with the private
/// key file could not do: the tokens it signs are valid except for the one flaw each test
/// puts in.
pub(crate) fn server_key(app: &TestApp, kid: &str) -> EcdsaKeyPair {
    let text = String::from_utf8(app.key_file(&format!("{kid}.pem"))).unwrap();
    let der = pem::parse(text).unwrap();
    EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.contents(),
        &SystemRandom::new(),
    )
    .unwrap()
}

pub(crate) fn attacker_key() -> (EcdsaKeyPair, Value) {
    let rng = SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der.as_ref(), &rng).unwrap();
    let point = key.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]), "kid": "attacker", "alg": "ES256", "use": "sig"});
    (key, jwk)
}

struct Fixture {
    app: TestApp,
    genuine: String,
    refresh: String,
    kid: String,
    header: Value,
    claims: Value,
    key: EcdsaKeyPair,
}

impl Fixture {
    async fn new() -> Self {
        let app = spawn_app().await;
        let t = app.user_with_session("alice").await;
        let (header, claims) = jwt_parts(&t.access);
        let kid = kid_of(&t.access);
        let key = server_key(&app, &kid);
        Self {
            app,
            genuine: t.access,
            refresh: t.refresh,
            kid,
            header,
            claims,
            key,
        }
    }

    fn now(&self) -> i64 {
        self.app.state.now() / 1000
    }

    /// The genuine token's claims with some replaced, signed by the server's key.
    fn signed(&self, header_patch: Value, claims_patch: Value) -> String {
        let mut h = self.header.clone();
        let mut c = self.claims.clone();
        merge(&mut h, header_patch);
        merge(&mut c, claims_patch);
        sign_es256(&self.key, &h, &c)
    }

    async fn assert_refused(&self, case: &str, token: &str) {
        let res = self.app.get_bearer("/me", token).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{case}: /me");
        let body = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert!(
            !body.to_string().contains(token),
            "{case}: the token is not echoed"
        );
        let introspected = self.app.introspect(token).await;
        assert_eq!(
            introspected,
            json!({"active": false}),
            "{case}: introspection"
        );
    }
}

pub(crate) fn merge(into: &mut Value, patch: Value) {
    let (Value::Object(into), Value::Object(patch)) = (into, patch) else {
        panic!("objects only");
    };
    for (k, v) in patch {
        if v.is_null() {
            into.remove(&k);
        } else {
            into.insert(k, v);
        }
    }
}

#[tokio::test]
async fn the_genuine_token_is_accepted_so_the_matrix_below_tests_one_flaw_at_a_time() {
    let f = Fixture::new().await;
    assert_eq!(
        f.app.get_bearer("/me", &f.genuine).await.status(),
        StatusCode::OK
    );
    // Re-signing the genuine header and claims with the server's key is accepted too.
    let resigned = f.signed(json!({}), json!({}));
    assert_eq!(
        f.app.get_bearer("/me", &resigned).await.status(),
        StatusCode::OK
    );
    assert_eq!(f.app.introspect(&resigned).await["active"], true);
}

#[tokio::test]
async fn rfc8725_3_1_alg_none_in_any_spelling_is_refused() {
    let f = Fixture::new().await;
    for alg in ["none", "None", "noNE", "NONE"] {
        let mut h = f.header.clone();
        h["alg"] = json!(alg);
        let unsigned = format!("{}.", encode(&h, &f.claims));
        f.assert_refused(&format!("alg {alg}"), &unsigned).await;
        // And with the genuine signature left on.
        let sig = f.genuine.rsplit('.').next().unwrap();
        f.assert_refused(&format!("alg {alg} + sig"), &format!("{unsigned}{sig}"))
            .await;
    }
}

#[tokio::test]
async fn rfc8725_3_1_hs256_signed_with_the_public_key_is_refused() {
    let f = Fixture::new().await;
    let jwks = f.app.jwks().await;
    let jwk = &jwks["keys"][0];
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend(&x);
    sec1.extend(&y);
    // The secrets a key-confusion attacker would try: the JWK as served, the raw point.
    let secrets: Vec<Vec<u8>> = vec![serde_json::to_vec(jwk).unwrap(), sec1];
    for (i, secret) in secrets.iter().enumerate() {
        let mut h = f.header.clone();
        h["alg"] = json!("HS256");
        let input = encode(&h, &f.claims);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&key, input.as_bytes());
        f.assert_refused(
            &format!("HS256 secret #{i}"),
            &format!("{input}.{}", b64(tag.as_ref())),
        )
        .await;
    }
}

#[tokio::test]
async fn rfc9068_4_a_typ_other_than_at_jwt_is_refused() {
    let f = Fixture::new().await;
    for typ in [json!("JWT"), json!("jwt"), json!("at+jwt+x"), Value::Null] {
        let t = f.signed(json!({"typ": typ}), json!({}));
        f.assert_refused(&format!("typ {typ}"), &t).await;
    }
}

#[tokio::test]
async fn rfc9068_4_wrong_audience_or_issuer_is_refused() {
    let f = Fixture::new().await;
    let iss = f.claims["iss"].as_str().unwrap().to_owned();
    for (case, patch) in [
        ("aud other", json!({"aud": "https://other.example"})),
        (
            "aud array with other",
            json!({"aud": ["https://other.example"]}),
        ),
        ("aud missing", json!({"aud": null})),
        ("iss other", json!({"iss": "https://evil.example"})),
        ("iss with slash", json!({"iss": format!("{iss}/")})),
        ("iss missing", json!({"iss": null})),
    ] {
        f.assert_refused(case, &f.signed(json!({}), patch)).await;
    }
}

#[tokio::test]
async fn rfc8725_time_claims_beyond_the_30s_leeway_are_refused() {
    let f = Fixture::new().await;
    let now = f.now();
    for (case, patch) in [
        (
            "expired 31s ago",
            json!({"exp": now - 31, "iat": now - 900}),
        ),
        ("exp missing", json!({"exp": null})),
        ("nbf 60s ahead", json!({"nbf": now + 60})),
        ("iat 60s ahead", json!({"iat": now + 60, "exp": now + 900})),
    ] {
        f.assert_refused(case, &f.signed(json!({}), patch)).await;
    }
    // Inside the leeway is accepted (clock skew between instances).
    let skewed = f.signed(json!({}), json!({"exp": now - 10, "iat": now - 900}));
    assert_eq!(
        f.app.get_bearer("/me", &skewed).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_tampered_payload_or_signature_is_refused() {
    let f = Fixture::new().await;
    let parts: Vec<&str> = f.genuine.split('.').collect();
    let mut claims = f.claims.clone();
    claims["roles"] = json!(["admin"]);
    let payload = b64(&serde_json::to_vec(&claims).unwrap());
    f.assert_refused(
        "payload swapped",
        &format!("{}.{payload}.{}", parts[0], parts[2]),
    )
    .await;
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[5] ^= 0x01;
    f.assert_refused(
        "signature bit flipped",
        &format!("{}.{}.{}", parts[0], parts[1], b64(&sig)),
    )
    .await;
    f.assert_refused(
        "signature cut",
        &format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]),
    )
    .await;
    f.assert_refused("no signature", &format!("{}.{}.", parts[0], parts[1]))
        .await;
    f.assert_refused("two parts", &format!("{}.{}", parts[0], parts[1]))
        .await;
}

#[tokio::test]
async fn rfc8725_3_10_unknown_and_hostile_kids_are_refused_and_never_reach_a_path_or_sql() {
    let f = Fixture::new().await;
    for kid in [
        json!("unknown-kid"),
        json!("../../../../etc/passwd"),
        json!("../keys/manifest.json"),
        json!(format!("{}.pem", f.kid)),
        json!("' OR '1'='1' --"),
        json!("x\"; DROP TABLE users; --"),
        json!("/dev/zero"),
        json!(""),
        json!(42),
        Value::Null,
    ] {
        let t = f.signed(json!({"kid": kid}), json!({}));
        f.assert_refused(&format!("kid {kid}"), &t).await;
    }
    // The users table is intact: the genuine token still works.
    assert_eq!(
        f.app.get_bearer("/me", &f.genuine).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn rfc8725_3_10_keys_named_by_jwk_jku_or_x5u_headers_are_never_used() {
    let f = Fixture::new().await;
    let (attacker, jwk) = attacker_key();
    let attacker_url = "https://attacker.example/jwks.json";
    for (case, header_patch) in [
        ("embedded jwk", json!({"jwk": jwk, "kid": "attacker"})),
        ("embedded jwk, real kid", json!({"jwk": jwk})),
        ("jku", json!({"jku": attacker_url, "kid": "attacker"})),
        ("jku, real kid", json!({"jku": attacker_url})),
        ("x5u", json!({"x5u": attacker_url, "kid": "attacker"})),
        ("attacker key, real kid", json!({})),
    ] {
        let mut h = f.header.clone();
        merge(&mut h, header_patch);
        f.assert_refused(case, &sign_es256(&attacker, &h, &f.claims))
            .await;
    }
    // Even signed by the real key, a token carrying these headers is refused.
    let t = f.signed(json!({"jku": attacker_url}), json!({}));
    f.assert_refused("jku on a genuine signature", &t).await;
}

#[tokio::test]
async fn a_refresh_token_sent_as_a_bearer_is_refused() {
    let f = Fixture::new().await;
    let res = f.app.get_bearer("/me", &f.refresh).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // It still works as a refresh token: the refusal changed nothing.
    assert_eq!(f.app.refresh(&f.refresh).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_8_kib_token_is_refused_before_it_is_parsed() {
    let f = Fixture::new().await;
    let big = f.signed(json!({}), json!({"pad": "A".repeat(8 * 1024)}));
    assert!(big.len() > 8 * 1024);
    f.assert_refused("8 KiB", &big).await;
    f.assert_refused("8 KiB of garbage", &"A".repeat(8 * 1024))
        .await;
}

/// RFC 7518 §3.4 signatures are R ‖ S; (R, n − S) verifies too. latchkey signs with low
/// S and refuses the high-S twin, so a token has exactly one valid string (a replay
/// cache or a revocation list keyed by the token's text cannot be sidestepped).
#[tokio::test]
async fn es256_high_s_twin_of_a_genuine_token_is_refused() {
    let f = Fixture::new().await;
    let (input, sig) = f.genuine.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(sig.len(), 64);
    flip_s(&mut sig);
    let twin = format!("{input}.{}", b64(&sig));
    assert_ne!(twin, f.genuine);
    f.assert_refused("high-S twin", &twin).await;
    // Every token latchkey signs is the low-S one.
    for _ in 0..16 {
        let t = f.app.login("alice").await;
        assert_eq!(
            f.app.get_bearer("/me", &t.access).await.status(),
            StatusCode::OK
        );
    }
}

/// RFC 7515 §4.1.11: a recipient must refuse a JWS whose `crit` lists an extension it
/// does not understand; latchkey understands none.
#[tokio::test]
async fn rfc7515_4_1_11_a_crit_header_is_refused() {
    let f = Fixture::new().await;
    for crit in [
        json!(["exp"]),
        json!(["b64"]),
        json!(["urn:example:unknown"]),
        json!([]),
    ] {
        let t = f.signed(json!({ "crit": crit.clone() }), json!({}));
        f.assert_refused(&format!("crit {crit}"), &t).await;
    }
}

/// A retired key signed nothing after its retirement. A token it "signed" later (with a
/// key that left service, e.g. one being phased out because it leaked) is refused even
/// while the key still verifies the tokens it did sign.
#[tokio::test]
async fn a_token_issued_after_its_keys_retirement_is_refused() {
    let f = Fixture::new().await;
    let kid_b = f.app.keys_cli(&["rotate", "--now"]).await.trim().to_owned();
    f.app.wait_for_jwks(&kid_b, true).await;
    f.app.catch_up_with_wall_clock();
    f.app.advance(std::time::Duration::from_secs(60));
    // The genuine token, issued before the retirement, still verifies.
    assert_eq!(
        f.app.get_bearer("/me", &f.genuine).await.status(),
        StatusCode::OK
    );
    let now = f.now();
    let late = f.signed(json!({}), json!({"iat": now, "exp": now + 600}));
    f.assert_refused("iat after the key's retirement", &late)
        .await;
}

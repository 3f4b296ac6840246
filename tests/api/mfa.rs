//! The second factor and step-up (docs/contract.md "Second factor"; RFC 6238, RFC 9470,
//! RFC 8176, OWASP Multifactor Authentication cheat sheet), over HTTP against the real
//! server. The clock is the test's: codes are computed for the server's time and time
//! moves without sleeping.

use std::process::Command;
use std::time::{Duration, Instant};

use latchkey::clock::Clock;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_error, jwt_parts, spawn_app, spawn_app_with, totp_code, Enrolled, TestApp, PASSWORD,
};

fn now_step(app: &TestApp) -> i64 {
    app.clock.now_millis() / 1000 / 30
}

/// A user with a session and a confirmed TOTP factor; the session's token is from
/// before the factor (`amr: ["pwd"]`).
async fn enrolled(app: &TestApp, name: &str) -> (crate::helpers::Tokens, Enrolled) {
    let t = app.user_with_session(name).await;
    let e = app.enrol_totp(name, &t.access).await;
    (t, e)
}

/// `POST /login` with the right password, expecting `mfa_required`; the `mfa_token`.
async fn first_step(app: &TestApp, name: &str) -> String {
    let res = app
        .post_json("/login", &json!({"username": name, "password": PASSWORD}))
        .await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body = assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    assert_eq!(body["mfa_methods"], json!(["totp", "recovery_code"]));
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn second_step(app: &TestApp, body: Value) -> Response {
    app.post_json("/login/mfa", &body).await
}

/// Rows in `table` (a read-only look at the database).
fn rows(app: &TestApp, table: &str) -> i64 {
    app.sql()
        .count(&format!("SELECT count(*) FROM {table}"), &[])
}

fn sessions_of(app: &TestApp) -> i64 {
    rows(app, "sessions")
}

/// RFC 6238 codes from an independent implementation (Python's `pyotp`) finish a login,
/// and the enrolment's `otpauth://` URI reads back in pyotp as the same SHA-1, 6-digit,
/// 30-second key.
#[tokio::test]
#[ignore = "needs Python test packages: scripts/test runs it"]
async fn rfc6238_4_codes_computed_by_pyotp_are_accepted() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_bearer("/me/mfa/totp", &t.access, &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let enrol: Value = res.json().await.unwrap();
    let uri = enrol["otpauth_uri"].as_str().unwrap();
    let secret = enrol["secret"].as_str().unwrap();
    let pyotp = |time_secs: i64| -> String {
        let script = "import sys, pyotp\n\
            t = pyotp.parse_uri(sys.argv[1])\n\
            assert isinstance(t, pyotp.TOTP), t\n\
            assert t.secret == sys.argv[2] and t.digits == 6 and t.interval == 30, vars(t)\n\
            assert t.issuer == '127.0.0.1' and t.name == 'alice', vars(t)\n\
            print(t.at(int(sys.argv[3])))";
        let out = Command::new("python3")
            .args(["-c", script, uri, secret, &time_secs.to_string()])
            .output()
            .expect("python3 runs (scripts/test installs pyotp)");
        assert!(
            out.status.success(),
            "pyotp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let now = app.clock.now_millis() / 1000;
    let code = pyotp(now);
    assert_eq!(
        code,
        totp_code(secret, now / 30),
        "two implementations agree"
    );
    let res = app
        .post_bearer("/me/mfa/totp/confirm", &t.access, &json!({"code": code}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A login, a step later, finished with pyotp's code.
    app.advance(Duration::from_secs(30));
    let token = first_step(&app, "alice").await;
    let code = pyotp(app.clock.now_millis() / 1000);
    let res = second_step(&app, json!({"mfa_token": token, "code": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        jwt_parts(body["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd", "otp"])
    );
}

/// Enrolment answers the secret, an `otpauth://` URI and an SVG QR code (no-store); the
/// store keeps the secret only sealed, recovery codes and `mfa_token`s only hashed.
#[tokio::test]
async fn enrolment_shows_the_secret_once_and_the_store_keeps_it_sealed_and_codes_hashed() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_bearer("/me/mfa/totp", &t.access, &json!({"password": PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32, "160 bits in base32");
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/127.0.0.1:alice?secret="),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}&")), "{uri}");
    assert!(uri.contains("algorithm=SHA1&digits=6&period=30"), "{uri}");
    let svg = body["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    // Not active yet: logins need only the password until the first code confirms it.
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );

    app.totp.lock().unwrap().insert(
        "alice".into(),
        Enrolled {
            secret: secret.clone(),
            last_step: None,
            recovery_codes: vec![],
        },
    );
    let code = app.next_code("alice");
    let res = app
        .post_bearer("/me/mfa/totp/confirm", &t.access, &json!({"code": code}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let codes: Vec<String> = res.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    let token = first_step(&app, "alice").await;

    // What a database dump holds: no secret, no code, no token.
    let db = app.sql();
    let sealed = hex::decode(db.text("SELECT sealed_secret FROM mfa_factors", &[])).unwrap();
    let raw = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert!(!String::from_utf8_lossy(&sealed).contains(&secret));
    assert_eq!(rows(&app, "mfa_recovery_codes"), 10);
    let dump: Vec<Vec<u8>> = db
        .column(
            "SELECT code_hash FROM mfa_recovery_codes UNION ALL SELECT token_hash FROM mfa_logins",
            &[],
        )
        .into_iter()
        .map(|v| hex::decode(v.unwrap()).unwrap())
        .collect();
    assert_eq!(dump.len(), 11);
    for value in dump {
        assert_eq!(value.len(), 32, "SHA-256 only");
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains(&token));
        for c in &codes {
            assert!(!text.contains(&c.replace('-', "")));
        }
    }
    // Nor does any event.
    let events: Vec<String> = db
        .column("SELECT detail FROM events", &[])
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    assert!(events
        .iter()
        .all(|d| !d.contains(&secret) && !d.contains(&token)));
    assert_eq!(app.events_of("mfa_enabled").len(), 1);
}

/// RFC 8176 `amr` and `auth_time`: after the second step the access token says
/// `["pwd","otp"]` with the time of the password step; refreshes and introspection
/// keep both.
#[tokio::test]
async fn rfc8176_amr_is_pwd_otp_and_auth_time_is_the_password_step_through_refreshes() {
    let app = spawn_app().await;
    enrolled(&app, "alice").await;
    app.advance(Duration::from_secs(60));
    let password_at = app.clock.now_millis() / 1000;
    let token = first_step(&app, "alice").await;
    app.advance(Duration::from_secs(45));
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": token, "code": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["pragma"], "no-cache");
    let body: Value = res.json().await.unwrap();
    let claims = jwt_parts(body["access_token"].as_str().unwrap()).1;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["auth_time"], json!(password_at));
    assert!(body["refresh_token"].is_string() && body["device_token"].is_string());

    app.advance(Duration::from_secs(600));
    let refreshed = app.rotate(body["refresh_token"].as_str().unwrap()).await;
    let later = jwt_parts(&refreshed.access).1;
    assert_eq!(later["amr"], json!(["pwd", "otp"]));
    assert_eq!(later["auth_time"], json!(password_at));
    let seen = app.introspect(&refreshed.access).await;
    assert_eq!(seen["active"], true);
    assert_eq!(seen["amr"], json!(["pwd", "otp"]));
    assert_eq!(seen["auth_time"], json!(password_at));
    // The login event says how.
    let (_, detail) = app.events_of("login_succeeded").pop().unwrap();
    assert!(detail.unwrap().contains(r#""amr":["pwd","otp"]"#));
}

/// OWASP Authentication cheat sheet (no enumeration): until the password is right, an
/// account with a second factor answers exactly like one without — status, headers,
/// body, and time (both run one argon2 check; the factor is looked up only after it).
#[tokio::test]
async fn owasp_a_wrong_password_answers_the_same_with_or_without_a_factor() {
    let app = spawn_app_with(|s| {
        s.login.failures_before_delay = 1000;
    })
    .await;
    enrolled(&app, "withmfa").await;
    app.user_with_session("plain").await;
    let attempt = |name: &'static str| {
        let app = &app;
        async move {
            let start = Instant::now();
            let res = app
                .post_json(
                    "/login",
                    &json!({"username": name, "password": "wrong password!"}),
                )
                .await;
            let took = start.elapsed();
            let status = res.status();
            let mut headers: Vec<String> = res
                .headers()
                .iter()
                .filter(|(k, _)| *k != "date" && *k != "x-request-id")
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect();
            headers.sort();
            let body: Value = res.json().await.unwrap();
            (status, headers, body, took)
        }
    };
    let mut times = (Vec::new(), Vec::new());
    for _ in 0..7 {
        let a = attempt("withmfa").await;
        let b = attempt("plain").await;
        assert_eq!(a.0, StatusCode::UNAUTHORIZED);
        assert_eq!((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2));
        assert_eq!(a.2["error"], "invalid_credentials");
        assert!(a.2.get("mfa_token").is_none());
        times.0.push(a.3);
        times.1.push(b.3);
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a, b) = (median(times.0), median(times.1));
    let (lo, hi) = (a.min(b), a.max(b));
    assert!(
        hi - lo < Duration::from_millis(40) + lo / 2,
        "median times differ: {a:?} with a factor, {b:?} without"
    );
}

/// RFC 6238 §5.2: one step of drift either way is accepted, two are not.
#[tokio::test]
async fn rfc6238_5_2_one_step_of_drift_either_way_and_not_two() {
    let app = spawn_app().await;
    let (_, e) = enrolled(&app, "alice").await;
    // Past the step the enrolment used.
    app.advance(Duration::from_secs(120));
    let step = now_step(&app);
    for offset in [-2, 2] {
        let token = first_step(&app, "alice").await;
        let res = second_step(
            &app,
            json!({"mfa_token": token, "code": totp_code(&e.secret, step + offset)}),
        )
        .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for offset in [-1, 0, 1] {
        let token = first_step(&app, "alice").await;
        let res = second_step(
            &app,
            json!({"mfa_token": token, "code": totp_code(&e.secret, step + offset)}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "drift {offset}");
    }
}

/// RFC 6238 §5.2: a code is accepted once; the same code (or an earlier step's) again is
/// refused with 401 `invalid_credentials`, and nothing changes: no session, the
/// `mfa_token` still usable with a fresh code.
#[tokio::test]
async fn rfc6238_5_2_a_code_is_accepted_once_and_a_reused_or_older_one_changes_nothing() {
    let app = spawn_app().await;
    let (_, e) = enrolled(&app, "alice").await;
    app.advance(Duration::from_secs(90));
    let step = now_step(&app);
    let token = first_step(&app, "alice").await;
    let used = totp_code(&e.secret, step);
    let res = second_step(&app, json!({"mfa_token": token, "code": used})).await;
    assert_eq!(res.status(), StatusCode::OK);
    for code in [used.clone(), totp_code(&e.secret, step - 1)] {
        let before = sessions_of(&app);
        let token = first_step(&app, "alice").await;
        let res = second_step(&app, json!({"mfa_token": &token, "code": code})).await;
        let body = assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert!(body.get("access_token").is_none());
        assert_eq!(sessions_of(&app), before, "no session");
        // The next step's code still finishes this login.
        let res = second_step(
            &app,
            json!({"mfa_token": &token, "code": totp_code(&e.secret, step + 1)}),
        )
        .await;
        if code == used {
            assert_eq!(res.status(), StatusCode::OK);
        } else {
            // step + 1 is now spent as well.
            assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
    }
    assert_eq!(app.events_of("mfa_failed").len(), 3);
}

/// Malformed input is 400 `invalid_request` before anything is looked up, and counts
/// for nothing; a malformed, unknown, used or expired `mfa_token` is 400 `invalid_grant`.
#[tokio::test]
async fn malformed_codes_and_dead_mfa_tokens_get_their_error_and_change_nothing() {
    let app = spawn_app().await;
    enrolled(&app, "alice").await;
    let token = first_step(&app, "alice").await;
    for bad in [
        json!({"mfa_token": &token, "code": "12345"}),
        json!({"mfa_token": &token, "code": "1234567"}),
        json!({"mfa_token": &token, "code": "12a456"}),
        json!({"mfa_token": &token, "code": "١٢٣٤٥٦"}),
        json!({"mfa_token": &token, "recovery_code": "not-a-code"}),
        json!({"mfa_token": &token}),
        json!({"mfa_token": &token, "code": "123456", "recovery_code": "aaaa-aaaa-aaaa-aaaa"}),
    ] {
        assert_error(
            second_step(&app, bad).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
    }
    assert_error(
        second_step(&app, json!({"code": "123456"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(
        app.events_of("mfa_failed").is_empty(),
        "malformed is not a guess"
    );
    for dead in ["", "short", &"A".repeat(43), &format!("{}x", &token[1..])] {
        let res = second_step(&app, json!({"mfa_token": dead, "code": "123456"})).await;
        assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // Seven malformed tries later, the token still works: single use, then dead.
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": &token, "code": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sessions = sessions_of(&app);
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": &token, "code": code})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Five minutes is the limit.
    let token = first_step(&app, "alice").await;
    app.advance(Duration::from_secs(5 * 60 + 1));
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": &token, "code": code})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(sessions_of(&app), sessions);
}

/// OWASP MFA cheat sheet: the fifth wrong code ends the `mfa_token` (400 `invalid_grant`,
/// then even the right code is refused); each wrong code is an `mfa_failed` event.
#[tokio::test]
async fn five_wrong_codes_end_the_mfa_token() {
    let app = spawn_app().await;
    let (_, e) = enrolled(&app, "alice").await;
    let token = first_step(&app, "alice").await;
    let wrong = |n: i64| totp_code(&e.secret, now_step(&app) + 10 + n);
    for n in 0..4 {
        let res = second_step(&app, json!({"mfa_token": &token, "code": wrong(n)})).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = second_step(&app, json!({"mfa_token": &token, "code": wrong(4)})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Past the pause the throttle asks after five failures from one address.
    app.advance(Duration::from_secs(3));
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": &token, "code": code})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let failed = app.events_of("mfa_failed");
    assert_eq!(failed.len(), 5);
    assert!(failed[0]
        .1
        .as_deref()
        .unwrap()
        .contains(r#""purpose":"login""#));
    assert_eq!(rows(&app, "mfa_logins"), 0);
}

/// Wrong codes count toward the per-account login throttle (docs/contract.md "Login
/// throttling"): once the account is over its limit, both steps answer 429.
#[tokio::test]
async fn wrong_codes_count_toward_the_per_account_login_throttle() {
    let app = spawn_app_with(|s| {
        s.login.max_failures_per_account_per_hour = 3;
        s.login.failures_before_delay = 1000;
    })
    .await;
    let (_, e) = enrolled(&app, "alice").await;
    let wrong = totp_code(&e.secret, now_step(&app) + 10);
    for _ in 0..3 {
        let token = first_step(&app, "alice").await;
        let res = second_step(&app, json!({"mfa_token": token, "code": &wrong})).await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let res = app
        .post_json(
            "/login",
            &json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_error(res, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    // An hour later the account is free again; a right password alone does not clear the
    // count (the code does).
    app.advance(Duration::from_secs(3601));
    let token = first_step(&app, "alice").await;
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": token, "code": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// OWASP MFA cheat sheet: a recovery code finishes a login once (case and hyphens do not
/// matter) and is recorded as `recovery_code_used`; the same code again is refused.
#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = spawn_app().await;
    let (_, e) = enrolled(&app, "alice").await;
    let code = &e.recovery_codes[3];
    let token = first_step(&app, "alice").await;
    let typed = code.to_uppercase().replace('-', " ");
    let res = second_step(&app, json!({"mfa_token": token, "recovery_code": typed})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        jwt_parts(body["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd", "otp"])
    );
    assert_eq!(app.events_of("recovery_code_used").len(), 1);
    assert_eq!(rows(&app, "mfa_recovery_codes"), 9);
    let sessions = sessions_of(&app);
    let token = first_step(&app, "alice").await;
    let res = second_step(&app, json!({"mfa_token": token, "recovery_code": code})).await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(sessions_of(&app), sessions);
    assert_eq!(rows(&app, "mfa_recovery_codes"), 9);
    // New codes replace the old ones (step-up: a fresh login with a code, and a code).
    let fresh = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/mfa/recovery-codes",
            &fresh.access,
            &json!({"code": app.next_code("alice")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let new: Value = res.json().await.unwrap();
    assert_eq!(new["recovery_codes"].as_array().unwrap().len(), 10);
    let token = first_step(&app, "alice").await;
    let res = second_step(
        &app,
        json!({"mfa_token": token, "recovery_code": &e.recovery_codes[0]}),
    )
    .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(app.events_of("recovery_codes_regenerated").len(), 1);
}

/// Enrolment errors: confirm without an enrolment (409), a wrong confirmation code
/// (401, counted, factor still inactive), a wrong password (401), a second enrolment
/// over an active factor (409 after step-up).
#[tokio::test]
async fn enrolment_errors_change_nothing() {
    let app = spawn_app().await;
    let t = app.user_with_session("alice").await;
    let res = app
        .post_bearer(
            "/me/mfa/totp/confirm",
            &t.access,
            &json!({"code": "123456"}),
        )
        .await;
    assert_error(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .post_bearer(
            "/me/mfa/totp",
            &t.access,
            &json!({"password": "not the password"}),
        )
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(rows(&app, "mfa_factors"), 0);
    let res = app
        .post_bearer("/me/mfa/totp", &t.access, &json!({"password": PASSWORD}))
        .await;
    let secret = res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = totp_code(&secret, now_step(&app) + 5);
    let res = app
        .post_bearer("/me/mfa/totp/confirm", &t.access, &json!({"code": wrong}))
        .await;
    assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let res = app
        .post_bearer("/me/mfa/totp/confirm", &t.access, &json!({"code": "12 34"}))
        .await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(rows(&app, "mfa_recovery_codes"), 0);
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK,
        "inactive"
    );
    assert_eq!(app.events_of("mfa_failed").len(), 1);

    let e = app.enrol_totp("alice", &t.access).await;
    assert_ne!(e.secret, secret, "a new enrolment, a new secret");
    let fresh = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/mfa/totp",
            &fresh.access,
            &json!({"password": PASSWORD}),
        )
        .await;
    assert_error(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .post_bearer(
            "/me/mfa/totp/confirm",
            &fresh.access,
            &json!({"code": app.next_code("alice")}),
        )
        .await;
    assert_error(res, StatusCode::CONFLICT, "conflict").await;
}

/// Removal needs step-up, the password and a code; a wrong code (401) or password
/// (401) removes nothing. Removed, logins need only the password again.
#[tokio::test]
async fn removing_the_factor_needs_password_and_code_and_a_wrong_one_changes_nothing() {
    let app = spawn_app().await;
    let (_, e) = enrolled(&app, "alice").await;
    let fresh = app.login("alice").await;
    let wrong = totp_code(&e.secret, now_step(&app) + 7);
    for body in [
        json!({"password": PASSWORD, "code": wrong}),
        json!({"password": "not the password", "code": app.next_code("alice")}),
    ] {
        let res = app
            .delete_bearer("/me/mfa/totp", &fresh.access, Some(&body))
            .await;
        assert_error(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        assert_eq!(rows(&app, "mfa_factors"), 1);
        assert_eq!(rows(&app, "mfa_recovery_codes"), 10);
    }
    let res = app
        .delete_bearer(
            "/me/mfa/totp",
            &fresh.access,
            Some(&json!({"password": PASSWORD, "code": app.next_code("alice")})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(rows(&app, "mfa_factors"), 0);
    assert_eq!(rows(&app, "mfa_recovery_codes"), 0);
    assert_eq!(app.events_of("mfa_disabled").len(), 1);
    app.totp.lock().unwrap().remove("alice");
    let res = app.login_as("alice", json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        jwt_parts(body["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd"])
    );
    let res = app
        .delete_bearer(
            "/me/mfa/totp",
            body["access_token"].as_str().unwrap(),
            Some(&json!({"password": PASSWORD, "code": "123456"})),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

fn assert_step_up_challenge(res: &Response, needs_mfa: bool) {
    let h = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        h.starts_with(r#"Bearer error="insufficient_user_authentication""#),
        "{h}"
    );
    assert!(h.contains("error_description=\""), "{h}");
    assert!(h.contains("max_age=900"), "{h}");
    assert_eq!(
        h.contains(r#"acr_values="http://schemas.openid.net/pape/policies/2007/06/multi-factor""#),
        needs_mfa,
        "{h}"
    );
}

/// RFC 9470 §3: for a user with a factor, password change, erasure, `/me/email` and
/// `/me/mfa/*` need a token from a login with `otp` within `mfa.step_up_max_age`;
/// otherwise 401 `insufficient_user_authentication` with `max_age` (and `acr_values`
/// when the factor is missing), and nothing changes.
#[tokio::test]
async fn rfc9470_3_sensitive_self_service_routes_need_a_recent_second_factor() {
    let app = spawn_app().await;
    let (old, _) = enrolled(&app, "alice").await;
    let routes = |app: &TestApp, token: &str| {
        let c = &app.client;
        vec![
            c.post(app.url("/me/password")).bearer_auth(token).json(
                &json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
            ),
            c.delete(app.url("/me"))
                .bearer_auth(token)
                .json(&json!({"password": PASSWORD})),
            c.post(app.url("/me/mfa/totp"))
                .bearer_auth(token)
                .json(&json!({"password": PASSWORD})),
            c.post(app.url("/me/mfa/totp/confirm"))
                .bearer_auth(token)
                .json(&json!({"code": "123456"})),
            c.delete(app.url("/me/mfa/totp"))
                .bearer_auth(token)
                .json(&json!({"password": PASSWORD, "code": "123456"})),
            c.post(app.url("/me/mfa/recovery-codes"))
                .bearer_auth(token)
                .json(&json!({"code": "123456"})),
            c.post(app.url("/me/email"))
                .bearer_auth(token)
                .json(&json!({"email": "someone@example.com", "password": PASSWORD})),
        ]
    };
    // A token from before the factor (amr ["pwd"]).
    for req in routes(&app, &old.access) {
        let res = req.send().await.unwrap();
        assert_step_up_challenge(&res, true);
        assert_error(
            res,
            StatusCode::UNAUTHORIZED,
            "insufficient_user_authentication",
        )
        .await;
    }
    // A fresh login with a code passes (here: regenerating codes, with a current code).
    let fresh = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/mfa/recovery-codes",
            &fresh.access,
            &json!({"code": app.next_code("alice")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Past mfa.step_up_max_age (15 min) the same session (refreshed, auth_time kept) no
    // longer does: max_age, but no acr_values.
    app.advance(Duration::from_secs(15 * 60 + 1));
    let later = app.rotate(&fresh.refresh).await;
    for req in routes(&app, &later.access) {
        let res = req.send().await.unwrap();
        assert_step_up_challenge(&res, false);
        assert_error(
            res,
            StatusCode::UNAUTHORIZED,
            "insufficient_user_authentication",
        )
        .await;
    }
    // Nothing changed: the password, the account and the factor are as they were.
    assert_eq!(rows(&app, "mfa_factors"), 1);
    let again = app.login("alice").await;
    // And with a fresh login each works: the password change, then erasure.
    let res = app
        .post_bearer(
            "/me/password",
            &again.access,
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .delete_bearer(
            "/me",
            &again.access,
            Some(&json!({"password": "another long passphrase"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // Erasure takes the factor with it.
    assert_eq!(rows(&app, "mfa_factors"), 0);
    assert_eq!(rows(&app, "mfa_recovery_codes"), 0);
}

/// A user without a factor is not asked for step-up on their own account routes.
#[tokio::test]
async fn a_user_without_a_factor_changes_the_password_with_the_password_alone() {
    let app = spawn_app().await;
    let t = app.user_with_session("bob").await;
    let res = app
        .post_bearer(
            "/me/password",
            &t.access,
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}

/// RFC 9470 §3 with `admin.require_mfa = true` (the default): every `/admin/*` route in
/// the route table refuses an admin token without a recent second factor, and accepts a
/// fresh one; with it off, a password login is enough.
#[tokio::test]
async fn rfc9470_3_every_admin_route_needs_step_up_while_admin_require_mfa() {
    let admin_routes: Vec<(String, String)> = latchkey::routes::manifest()
        .into_iter()
        .filter(|(_, p)| p.starts_with("/admin/"))
        .collect();
    assert!(admin_routes.len() >= 4, "{admin_routes:?}");
    let app = spawn_app().await;
    let victim = app.user_with_session("victim").await;
    let victim_id = jwt_parts(&victim.access).1["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = app
        .cli(
            &["users", "add", "root", "--role", "admin"],
            &format!("{PASSWORD}\n"),
        )
        .await;
    assert!(out.status.success());
    let pwd_only = app.login("root").await;
    let send = |token: String, method: String, path: String| {
        let app = &app;
        let path = path.replace("{id}", &victim_id);
        async move {
            app.client
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    for (method, path) in &admin_routes {
        let res = send(pwd_only.access.clone(), method.clone(), path.clone()).await;
        assert_step_up_challenge(&res, true);
        assert_error(
            res,
            StatusCode::UNAUTHORIZED,
            "insufficient_user_authentication",
        )
        .await;
    }
    // Nothing happened to the victim.
    assert_eq!(
        app.get_bearer("/me", &victim.access).await.status(),
        StatusCode::OK
    );
    // The admin enrols (no step-up needed without a factor) and logs in with a code.
    app.enrol_totp("root", &pwd_only.access).await;
    let fresh = app.login("root").await;
    let res = send(fresh.access.clone(), "GET".into(), "/admin/events".into()).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Fifteen minutes on, a refreshed token of that session is too old.
    app.advance(Duration::from_secs(15 * 60 + 1));
    let later = app.rotate(&fresh.refresh).await;
    let res = send(later.access, "GET".into(), "/admin/events".into()).await;
    assert_step_up_challenge(&res, false);

    // admin.require_mfa = false: a password login administers.
    let relaxed = spawn_app_with(|s| s.admin.require_mfa = false).await;
    let admin = relaxed.admin().await;
    assert_eq!(jwt_parts(&admin.access).1["amr"], json!(["pwd"]));
    assert_eq!(
        relaxed
            .get_bearer("/admin/events", &admin.access)
            .await
            .status(),
        StatusCode::OK
    );
}

const SPA_ORIGIN: &str = "https://app.example.com";

fn browser_post(app: &TestApp, path: &str, body: &Value) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(path))
        .header("origin", SPA_ORIGIN)
        .header("x-latchkey-csrf", "1")
        .json(body)
}

/// Browser mode: `/browser/login` answers `mfa_required` like `/login`;
/// `/browser/login/mfa` has `/browser/login`'s CSRF rules (403 before anything is
/// read) and answers with the refresh cookie and `amr: ["pwd","otp"]`.
#[tokio::test]
async fn browser_login_mfa_has_the_csrf_rules_of_browser_login() {
    let app = spawn_app_with(|s| {
        s.clients[0].allowed_origins = vec![SPA_ORIGIN.into()];
    })
    .await;
    enrolled(&app, "alice").await;
    let res = browser_post(
        &app,
        "/browser/login",
        &json!({"username": "alice", "password": PASSWORD}),
    )
    .send()
    .await
    .unwrap();
    assert!(res.headers().get("set-cookie").is_none());
    let body = assert_error(res, StatusCode::UNAUTHORIZED, "mfa_required").await;
    let token = body["mfa_token"].as_str().unwrap().to_owned();
    let code = app.next_code("alice");
    let step = json!({"mfa_token": token, "code": code});
    let refused = [
        app.client
            .post(app.url("/browser/login/mfa"))
            .header("origin", SPA_ORIGIN)
            .json(&step),
        app.client
            .post(app.url("/browser/login/mfa"))
            .header("x-latchkey-csrf", "1")
            .json(&step),
        app.client
            .post(app.url("/browser/login/mfa"))
            .header("origin", "https://evil.example")
            .header("x-latchkey-csrf", "1")
            .json(&step),
        browser_post(&app, "/browser/login/mfa", &step).header("sec-fetch-site", "cross-site"),
        app.client
            .post(app.url("/browser/login/mfa"))
            .header("origin", SPA_ORIGIN)
            .header("x-latchkey-csrf", "1")
            .header("content-type", "text/plain")
            .body(step.to_string()),
    ];
    for req in refused {
        assert_error(
            req.send().await.unwrap(),
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    // None of that used the code or the token.
    let res = browser_post(&app, "/browser/login/mfa", &step)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-lk_rt="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        jwt_parts(body["access_token"].as_str().unwrap()).1["amr"],
        json!(["pwd", "otp"])
    );
}

/// `latchkey users reset-mfa USERNAME` removes a locked-out user's factor; an event
/// records it as the administrator's doing.
#[tokio::test]
async fn cli_reset_mfa_removes_the_factor_and_records_an_event() {
    let app = spawn_app().await;
    enrolled(&app, "alice").await;
    let out = app.cli(&["users", "reset-mfa", "alice"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&app, "mfa_factors"), 0);
    let events = app.events_of("mfa_disabled");
    assert_eq!(events.len(), 1);
    assert!(events[0]
        .1
        .as_deref()
        .unwrap()
        .contains(r#""by":"administrator""#));
    app.totp.lock().unwrap().remove("alice");
    assert_eq!(
        app.login_as("alice", json!({})).await.status(),
        StatusCode::OK
    );
    let out = app.cli(&["users", "reset-mfa", "nobody"], "").await;
    assert!(!out.status.success());
}

/// A password changed between the two steps ends the pending login.
#[tokio::test]
async fn a_password_change_between_the_steps_ends_the_pending_login() {
    let app = spawn_app().await;
    enrolled(&app, "alice").await;
    let token = first_step(&app, "alice").await;
    let fresh = app.login("alice").await;
    let res = app
        .post_bearer(
            "/me/password",
            &fresh.access,
            &json!({"current_password": PASSWORD, "new_password": "another long passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let code = app.next_code("alice");
    let res = second_step(&app, json!({"mfa_token": token, "code": code})).await;
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
}

#[tokio::test]
async fn readyz_reports_store_and_signing_key() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["store"], true);
    assert_eq!(body["signing_key"], true);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/healthz", "/no-such-thing"] {
        let res = app.get(path).await;
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["content-security-policy"], "frame-ancestors 'none'");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_get_the_error_body() {
    let app = spawn_app().await;
    crate::helpers::assert_error(
        app.get("/nope").await,
        reqwest::StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app.client.delete(app.url("/login")).send().await.unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    crate::helpers::assert_error(
        res,
        reqwest::StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
    )
    .await;
}

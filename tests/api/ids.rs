//! User and session ids from outside (URL paths, query filters) in a form the service
//! never issues name nothing: they are answered as unknown ids are, and change nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_error, jwt_parts, spawn_app};

#[tokio::test]
async fn ids_in_another_spelling_are_answered_as_unknown_ones() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let alice = app.user_with_session("alice").await;
    let (_, claims) = jwt_parts(&alice.access);
    let alice_id = claims["sub"].as_str().unwrap().to_owned();
    // The same UUIDs, upper-case and without hyphens: ids we never issued.
    let user_ids = [alice_id.to_uppercase(), alice_id.replace('-', "")];
    for id in &user_ids {
        let res = app
            .get_bearer(&format!("/admin/users/{id}/sessions"), &admin.access)
            .await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app
            .post_bearer(
                &format!("/admin/users/{id}/disable"),
                &admin.access,
                &json!({}),
            )
            .await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app
            .delete_bearer(&format!("/admin/users/{id}/sessions"), &admin.access, None)
            .await;
        assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
        let events: Vec<Value> = app
            .get_bearer(&format!("/admin/events?user_id={id}"), &admin.access)
            .await
            .json()
            .await
            .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }
    let res = app
        .delete_bearer(
            &format!("/me/sessions/{}", alice.session_id.to_uppercase()),
            &alice.access,
            None,
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // Alice is neither disabled nor signed out.
    app.rotate(&alice.refresh).await;
}

//! `openapi.yaml` and the server agree: the same (method, path) pairs, and every path
//! the spec lists is routed by the running server.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn spec() -> serde_norway::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml at the top level");
    serde_norway::from_str(&text).expect("openapi.yaml parses")
}

fn spec_operations() -> BTreeSet<(String, String)> {
    let spec = spec();
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        let path = path.as_str().unwrap().to_owned();
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn openapi_is_version_3_1() {
    assert_eq!(spec()["openapi"].as_str(), Some("3.1.0"));
}

#[test]
fn every_server_route_is_in_openapi_and_every_openapi_operation_is_a_route() {
    let server: BTreeSet<(String, String)> = latchkey::routes::manifest().into_iter().collect();
    let spec = spec_operations();
    let missing_in_spec: Vec<_> = server.difference(&spec).collect();
    let missing_in_server: Vec<_> = spec.difference(&server).collect();
    assert!(
        missing_in_spec.is_empty(),
        "routes missing from openapi.yaml: {missing_in_spec:?}"
    );
    assert!(
        missing_in_server.is_empty(),
        "openapi.yaml operations the server lacks: {missing_in_server:?}"
    );
}

/// Over HTTP: no documented operation answers "no such endpoint" or 405.
#[tokio::test]
async fn every_documented_operation_is_routed_by_the_running_server() {
    let app = spawn_app().await;
    for (method, path) in spec_operations() {
        let concrete = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
        let res = app
            .client
            .request(method.parse().unwrap(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert_ne!(status, 405, "{method} {path}");
        if status == 404 {
            let body: Value = res.json().await.unwrap();
            assert_ne!(
                body["error_description"], "no such endpoint",
                "{method} {path}"
            );
        }
        assert!(
            status.as_u16() < 500 || status == 503,
            "{method} {path}: {status}"
        );
    }
}

//! Operator routes for webhooks (docs/webhooks-guide.md "Operating"): `Admin` only.
//! Secrets are never shown.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Admin;
use super::responses::no_store_json;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::domain::webhooks::{Delivery, EndpointHealth};
use crate::error::ApiError;
use crate::service::events::page_limit;
use crate::service::webhooks;
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.get("/admin/webhooks", list_endpoints);
    t.get("/admin/webhooks/{id}/deliveries", list_deliveries);
    t.post("/admin/webhooks/deliveries/{delivery_id}/retry", retry);
}

fn endpoint_json(e: &EndpointHealth) -> Value {
    let events: Vec<&str> = match e.endpoint.events.as_str() {
        "*" => vec!["*"],
        kinds => kinds.split_whitespace().collect(),
    };
    json!({
        "id": e.endpoint.id,
        "url": e.endpoint.url,
        "events": events,
        "disabled_at": e.endpoint.disabled_at.map(rfc3339),
        "pending": e.pending,
        "failed": e.failed,
        "delivered": e.delivered,
        "last_delivered_at": e.last_delivered_at.map(rfc3339),
    })
}

fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "status": d.status.as_str(),
        "attempts": d.attempts,
        "next_attempt_at": (d.status.as_str() == "pending").then(|| rfc3339(d.next_attempt_at)),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "delivered_at": d.delivered_at.map(rfc3339),
        "payload": serde_json::from_str::<Value>(&d.payload).unwrap_or(Value::Null),
    })
}

async fn list_endpoints(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let list = webhooks::endpoints(&state.store).await?;
    let endpoints: Vec<Value> = list.iter().map(endpoint_json).collect();
    Ok(no_store_json(&json!({ "endpoints": endpoints })))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesParams {
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_deliveries(
    state: web::Data<AppState>,
    path: web::Path<String>,
    params: web::Query<DeliveriesParams>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let p = params.into_inner();
    let list = webhooks::deliveries(
        &state.store,
        path.into_inner(),
        p.status.as_deref(),
        page_limit(p.limit)?,
    )
    .await?;
    let deliveries: Vec<Value> = list.iter().map(delivery_json).collect();
    Ok(no_store_json(&json!({ "deliveries": deliveries })))
}

async fn retry(
    state: web::Data<AppState>,
    path: web::Path<String>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    webhooks::retry(&state.store, state.now(), path.into_inner()).await?;
    Ok(HttpResponse::Accepted().finish())
}

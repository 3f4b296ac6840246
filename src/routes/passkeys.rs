//! Passkeys of the signed-in user (docs/contract.md "Passkeys"): adding one
//! (`/me/passkeys/register/start|finish`), listing, renaming and removing them. The
//! registration routes draw from the login bucket: a start stores a ceremony, a finish
//! verifies an authenticator's answer.

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::{client_context, Authenticated};
use super::extract::JsonBody;
use super::responses::no_store_json;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::domain::passkeys::StoredPasskey;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::passkeys::{self, Ceremonies};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/me/passkeys/register/start", register_start)
        .rate_limited(Endpoint::Login);
    t.post("/me/passkeys/register/finish", register_finish)
        .rate_limited(Endpoint::Login);
    t.get("/me/passkeys", list);
    t.add(Method::PATCH, "/me/passkeys/{id}", rename);
    t.delete("/me/passkeys/{id}", remove);
}

/// A passkey as its user and the admin API see it: never its credential material.
pub(super) fn passkey_json(p: &StoredPasskey) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "created_at": rfc3339(p.created_at),
        "last_used_at": p.last_used_at.map(rfc3339),
    })
}

async fn register_start(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let started = passkeys::start_registration(&Ceremonies::of(&state), &auth).await?;
    Ok(no_store_json(&json!({
        "ceremony": started.ceremony.expose(),
        // The options themselves, in their WebAuthn Level 3 JSON form (bytes in
        // base64url), ready for `PublicKeyCredential.parseCreationOptionsFromJSON`.
        "options": started.options.public_key,
    })))
}

#[derive(Deserialize)]
struct FinishBody {
    ceremony: String,
    credential: Value,
    #[serde(default)]
    name: Option<String>,
}

async fn register_finish(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<FinishBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let added = passkeys::finish_registration(
        &Ceremonies::of(&state),
        &auth,
        &b.ceremony,
        b.credential,
        b.name,
        &client_context(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(passkey_json(&added)))
}

async fn list(state: web::Data<AppState>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    let all = passkeys::list(&state.store, &auth).await?;
    Ok(no_store_json(
        &all.iter().map(passkey_json).collect::<Vec<_>>(),
    ))
}

#[derive(Deserialize)]
struct RenameBody {
    #[serde(default)]
    name: Option<String>,
}

async fn rename(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<RenameBody>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let renamed = passkeys::rename(&state.store, &auth, &path, body.into_inner().name).await?;
    Ok(no_store_json(&passkey_json(&renamed)))
}

async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    passkeys::remove(&Ceremonies::of(&state), &auth, &path, &client_context(&req)).await?;
    Ok(HttpResponse::NoContent().finish())
}

//! `POST /login`: first-party credential login (not the OAuth password grant, which
//! RFC 9700 §2.4 forbids).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::origin;
use super::extract::JsonBody;
use super::responses::{name_caller, no_store_json};
use super::RouteTable;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::issue::Issuing;
use crate::service::login::{self, Credentials};
use crate::state::AppState;

pub fn configure(t: &mut RouteTable) {
    t.post("/login", handle).rate_limited(Endpoint::Login);
}

/// The body of `/login` and `/browser/login`.
#[derive(Deserialize)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub remember_me: Option<bool>,
    #[serde(default)]
    pub scope: Option<String>,
    /// RFC 8707 resource indicators: one string or an array of strings.
    #[serde(default)]
    pub resource: Option<OneOrMany>,
    /// Apps: the `device_token` of an earlier login (browser mode uses a cookie).
    #[serde(default)]
    pub device_token: Option<String>,
}

/// A JSON member that may be one string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }
}

impl From<LoginBody> for Credentials {
    fn from(b: LoginBody) -> Self {
        Credentials {
            username: b.username,
            password: b.password,
            client_id: b.client_id,
            remember_me: b.remember_me,
            scope: b.scope,
            resource: b.resource.map(OneOrMany::into_vec).unwrap_or_default(),
            device_token: b.device_token,
            browser: false,
        }
    }
}

async fn handle(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let issued = login::login(&Issuing::of(&state), body.into_inner().into(), origin(&req)).await?;
    name_caller(&issued.session);
    Ok(no_store_json(&issued.body))
}

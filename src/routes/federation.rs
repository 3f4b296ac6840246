//! Identity providers in the browser (docs/identity-providers-guide.md):
//! `GET /browser/federate/{idp}` sends the browser to the provider, `GET
//! /federate/{idp}/callback` brings it back with a session (the refresh cookie, as
//! `/browser/login` sets it) or `#error=`; `/me/identities` lists and unlinks.
//!
//! Both browser routes are top-level navigations, not `fetch` calls, so browser mode's
//! CSRF header cannot apply. The callback is bound to the browser that started by the
//! `__Host-lk_fed` cookie (the state itself, `SameSite=Lax` so that it comes back with
//! the provider's redirect; RFC 9700 §2.1 / OIDC Core §15.5.2).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::{client_context, Authenticated};
use super::browser::{device_cookie, refresh_cookie, session_of_cookie, single_cookie};
use super::responses::{name_caller, no_store_json};
use super::signin_form::error_location;
use super::RouteTable;
use crate::clock::rfc3339;
use crate::error::ApiError;
use crate::ratelimit::Endpoint;
use crate::service::authorize;
use crate::service::federation::{self, Callback, Failure, Federation, Finished, ReportTo};
use crate::service::issue::Issuing;
use crate::service::{self};
use crate::state::AppState;

/// Holds the state between start and callback (10 minutes, like the stored state).
const STATE_COOKIE: &str = "__Host-lk_fed";
const STATE_COOKIE_SECS: i64 = 600;

pub fn configure(t: &mut RouteTable) {
    t.get("/browser/federate/{idp}", start)
        .rate_limited(Endpoint::Browser);
    t.get("/federate/{idp}/callback", callback)
        .rate_limited(Endpoint::Browser);
    t.get("/identity-providers", providers);
    t.get("/me/identities", list);
    t.delete("/me/identities/{id}", unlink);
}

fn deps(state: &AppState) -> Federation<'_> {
    Federation {
        issuing: Issuing::of(state),
        providers: &state.providers,
    }
}

#[derive(Deserialize)]
struct StartParams {
    client_id: Option<String>,
    return_to: Option<String>,
    /// `true`: link the provider's identity to the account of the browser's session
    /// (its refresh cookie) instead of signing in.
    link: Option<bool>,
}

fn state_cookie(value: String, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(STATE_COOKIE, value)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(max_age)
        .finish()
}

/// 302 with no caching (the Location carries a state).
fn redirect(location: &str) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Found();
    res.insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"));
    res
}

/// `return_to#error=…&error_description=…`: the SPA reads the fragment, which never
/// reaches a server.
fn report(return_to: &str, failure: &Failure) -> HttpResponse {
    let location = error_location(return_to, failure.code, &failure.description);
    redirect(&location)
        .cookie(state_cookie(String::new(), CookieDuration::ZERO))
        .finish()
}

async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    idp: web::Path<String>,
    params: web::Query<StartParams>,
) -> Result<HttpResponse, ApiError> {
    let deps = deps(&state);
    // Nothing is reported to return_to until it is known to be the client's.
    let target = federation::target(
        &deps,
        &idp,
        params.client_id.as_deref(),
        params.return_to.as_deref(),
    )?;
    let link_user = if params.link == Some(true) {
        match linking_user(&state, &req, &target.client.id).await? {
            Some(user) => Some(user),
            None => {
                let f = Failure {
                    code: "login_required",
                    description: "sign in first to link an identity".into(),
                };
                return Ok(report(&target.return_to, &f));
            }
        }
    } else {
        None
    };
    match federation::start(&deps, &target, link_user, None).await {
        Ok(started) => Ok(redirect(&started.location)
            .cookie(state_cookie(
                started.state,
                CookieDuration::seconds(STATE_COOKIE_SECS),
            ))
            .finish()),
        Err(f) => Ok(report(&target.return_to, &f)),
    }
}

/// `/oauth/authorize?idp=`: the same start, carrying the app's vetted authorization
/// request in the state; a provider that cannot be reached is reported at the app's
/// redirect URI.
pub(super) async fn start_for_app(
    state: &AppState,
    provider: &str,
    request: &crate::service::authorize::Request<'_>,
) -> Result<HttpResponse, ApiError> {
    let deps = deps(state);
    let provider = state
        .settings
        .identity_provider(provider)
        .ok_or_else(|| ApiError::InvalidRequest("no such identity provider".into()))?;
    let target = federation::Target {
        provider,
        client: request.client,
        return_to: request.redirect_uri.clone(),
    };
    let pending = request.pending();
    match federation::start(&deps, &target, None, Some(pending.clone())).await {
        Ok(started) => Ok(redirect(&started.location)
            .cookie(state_cookie(
                started.state,
                CookieDuration::seconds(STATE_COOKIE_SECS),
            ))
            .finish()),
        Err(f) => Ok(redirect(&authorize::refusal_location(
            &state.settings,
            &pending,
            f.code,
            &f.description,
        ))
        .finish()),
    }
}

/// The account of the browser's live session for this client, from its refresh cookie.
/// A cross-site navigation is refused (Fetch Metadata): only the client's own pages may
/// start a link.
async fn linking_user(
    state: &AppState,
    req: &HttpRequest,
    client_id: &str,
) -> Result<Option<crate::domain::UserId>, ApiError> {
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    if cross_site {
        return Ok(None);
    }
    let raw = single_cookie(req, &state.settings.browser.cookie_name).unwrap_or(None);
    let Some((_, session)) = session_of_cookie(state, raw).await? else {
        return Ok(None);
    };
    let live = session.is_active(state.now()) && session.client_id == client_id;
    Ok(live.then_some(session.user_id))
}

#[derive(Deserialize)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    idp: web::Path<String>,
    params: web::Query<CallbackParams>,
) -> Result<HttpResponse, ApiError> {
    let cookie = single_cookie(&req, STATE_COOKIE).unwrap_or(None);
    let cb = Callback {
        provider: &idp,
        state: params.state.as_deref(),
        code: params.code.as_deref(),
        error: params.error.as_deref(),
        cookie_state: cookie.as_deref(),
        ctx: client_context(&req),
    };
    match federation::finish(&deps(&state), cb).await {
        Ok(Finished::SignedIn { issued, to }) => {
            name_caller(&issued.session);
            if let Some(pending) = to.authorization {
                let location = authorize::grant(&Issuing::of(&state), &pending, *issued).await?;
                return Ok(redirect(&location)
                    .cookie(state_cookie(String::new(), CookieDuration::ZERO))
                    .finish());
            }
            let return_to = to.return_to;
            let mut res = redirect(&return_to);
            res.cookie(refresh_cookie(&state, &issued.refresh, &issued.session))
                .cookie(state_cookie(String::new(), CookieDuration::ZERO));
            if let Some(device) = issued.body.device_token.clone() {
                res.cookie(device_cookie(&state, device));
            }
            Ok(res.finish())
        }
        Ok(Finished::SecondFactor {
            mfa_token,
            methods,
            to,
        }) => {
            let methods = methods.join(" ");
            let mut res = super::federated_step::page(&state, mfa_token.expose(), &methods, &to)?;
            let _ = res.add_cookie(&state_cookie(String::new(), CookieDuration::ZERO));
            Ok(res)
        }
        Ok(Finished::Linked { return_to }) => Ok(redirect(&return_to)
            .cookie(state_cookie(String::new(), CookieDuration::ZERO))
            .finish()),
        Err((
            Some(ReportTo {
                authorization: Some(p),
                ..
            }),
            f,
        )) => {
            let location = authorize::refusal_location(&state.settings, &p, f.code, &f.description);
            Ok(redirect(&location)
                .cookie(state_cookie(String::new(), CookieDuration::ZERO))
                .finish())
        }
        Err((Some(to), f)) => Ok(report(&to.return_to, &f)),
        // No state we know: no address to send the browser to, so the error body.
        Err((None, f)) if f.code == "not_found" => Err(ApiError::NotFound(format!(
            "sign-in failed: {}",
            f.description
        ))),
        Err((None, f)) => Err(ApiError::InvalidRequest(format!(
            "sign-in failed: {}",
            f.description
        ))),
    }
}

/// The configured providers, for a sign-in screen's buttons: public, as the page at
/// `/oauth/authorize` shows them to anyone (Supabase's `/settings` lists its providers the
/// same way). Only ids and names; issuers and client ids stay in the configuration.
async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let items: Vec<_> = state
        .settings
        .identity_providers
        .iter()
        .map(|p| json!({ "id": p.id, "display_name": p.display_name() }))
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({ "identity_providers": items }))
}

async fn list(state: web::Data<AppState>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    let identities = federation::identities_of(&state.store, &auth.user.id).await?;
    let items: Vec<_> = identities
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "provider": i.provider,
                "display_name": state
                    .settings
                    .identity_provider(&i.provider)
                    .map(|p| p.display_name().to_owned()),
                "email": i.email,
                "email_verified": i.email_verified,
                "created_at": rfc3339(i.created_at),
                "last_login_at": rfc3339(i.last_login_at),
            })
        })
        .collect();
    Ok(no_store_json(&json!({ "identities": items })))
}

async fn unlink(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: Authenticated,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::federation::unlink(
        &state.store,
        state.now(),
        &auth.user.id,
        &id,
        client_context(&req),
    )
    .await?;
    Ok(HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

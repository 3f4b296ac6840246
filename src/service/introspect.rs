//! RFC 7662 introspection for resource servers: answers from the store, so a
//! revocation shows at once. Anything not active is `{"active":false}` and nothing else
//! (RFC 7662 §2.2). Also how a resource server proves who it is, here and at revocation.

use serde_json::{json, Value};

use super::Error;
use crate::clock::Millis;
use crate::config::ResourceServerSettings;
use crate::domain::{RefreshToken, SessionId, UserId};
use crate::store::Store;
use crate::tokens::{Audience, TokenService};

/// Credentials a caller presented as a resource server: each pair is one reading of
/// what was sent (HTTP Basic is tried both form-decoded, as RFC 6749 §2.3.1 asks, and
/// raw, as Authlib, `requests` and `curl -u` send it).
pub struct Presented {
    pub pairs: Vec<(String, String)>,
}

/// The resource server these credentials belong to. Every configured server is compared
/// against every reading, without an early exit, through SHA-256 digests: the time taken
/// depends on neither which part matched nor how much of it (docs/contract.md "Standards
/// checklist" #29).
#[tracing::instrument(skip_all)]
pub fn authenticate_resource_server<'a>(
    configured: &'a [ResourceServerSettings],
    presented: &Presented,
) -> Option<&'a ResourceServerSettings> {
    let mut found = None;
    for rs in configured {
        let mut matched = false;
        for (id, secret) in &presented.pairs {
            let id_ok = constant_time_eq(rs.id.as_bytes(), id.as_bytes());
            let secret_ok = constant_time_eq(rs.secret.expose().as_bytes(), secret.as_bytes());
            matched |= id_ok & secret_ok;
        }
        if matched && found.is_none() {
            found = Some(rs);
        }
    }
    found
}

/// Compares SHA-256 digests so neither length nor content leaks through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let da = ring::digest::digest(&ring::digest::SHA256, a);
    let db = ring::digest::digest(&ring::digest::SHA256, b);
    // The same constant-time comparison as everywhere else in latchkey (`subtle`).
    subtle::ConstantTimeEq::ct_eq(da.as_ref(), db.as_ref()).into()
}

/// The introspection response for `raw`, as `rs` may see it: an access JWT whose `aud`
/// includes one of `rs.audiences` and whose session is live. Refresh tokens are
/// latchkey's own business and answer inactive, as do other audiences' access tokens
/// (docs/contract.md "Audiences").
#[tracing::instrument(skip_all, fields(resource_server = %rs.id))]
pub async fn introspect(
    tokens: &TokenService,
    store: &Store,
    now: Millis,
    rs: &ResourceServerSettings,
    raw: &str,
) -> Result<Value, Error> {
    if RefreshToken::parse(raw).is_ok() {
        return Ok(inactive());
    }
    // The issuer is the authority on expiry: no leeway here (RFC 7662 §2.2).
    let Ok(claims) = tokens.verify(raw, Audience::AnyOf(&rs.audiences)) else {
        return Ok(inactive());
    };
    if claims.exp <= now / 1000 {
        return Ok(inactive());
    }
    // Claims in a form we never issue name no session or user: inactive.
    let (sid, sub) = (SessionId::parse(&claims.sid), UserId::parse(&claims.sub));
    let live = store
        .read(async move |tx| {
            let s = match &sid {
                Some(sid) => tx.session_by_id(sid).await?,
                None => None,
            };
            let u = match &sub {
                Some(sub) => tx.user_by_id(sub).await?,
                None => None,
            };
            Ok(match (s, u) {
                (Some(s), Some(u)) if s.is_active(now) && u.is_enabled() => Some(u),
                _ => None,
            })
        })
        .await?;
    let Some(user) = live else {
        return Ok(inactive());
    };
    // The claims as the token carries them (empty `scope` and `roles` left out).
    let mut body = serde_json::to_value(&claims).map_err(Error::internal)?;
    if let Value::Object(m) = &mut body {
        m.insert("active".into(), json!(true));
        m.insert("token_type".into(), json!("Bearer"));
        m.insert("username".into(), json!(user.username));
    }
    Ok(body)
}

fn inactive() -> Value {
    json!({"active": false})
}

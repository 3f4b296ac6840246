//! RFC 7662 introspection for resource servers: answers from the store, so a
//! revocation shows at once. Anything not active is `{"active":false}` and nothing else
//! (RFC 7662 §2.2).

use serde_json::{json, Value};

use crate::domain::{rotation, RefreshToken};
use crate::error::ApiError;
use crate::state::AppState;

/// The introspection response for `raw` (a refresh token or an access JWT).
pub async fn introspect(state: &AppState, raw: &str) -> Result<Value, ApiError> {
    let now = state.now();
    if let Ok(token) = RefreshToken::parse(raw) {
        let keys = state.sealer.clone();
        let found = state
            .store
            .read(async move |tx| {
                let Some(found) = rotation::find(tx, keys.as_ref(), &token).await? else {
                    return Ok(None);
                };
                let user = tx.user_by_id(&found.session.user_id).await?;
                Ok(user.map(|u| (found, u)))
            })
            .await?;
        return Ok(match found {
            Some((f, u)) if f.is_head && f.session.is_active(now) && u.is_enabled() => {
                let s = f.session;
                json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "iss": state.settings.issuer,
                    "sub": s.user_id,
                    "username": u.username,
                    "sid": s.id,
                    "client_id": s.client_id,
                    "scope": s.scope.to_claim(),
                    "iat": s.head_issued_at / 1000,
                    "exp": s.ends_at() / 1000,
                })
            }
            _ => inactive(),
        });
    }

    // The issuer is the authority on expiry: no leeway here (RFC 7662 §2.2).
    let Ok(claims) = state.tokens.verify(raw) else {
        return Ok(inactive());
    };
    if claims.exp <= now / 1000 {
        return Ok(inactive());
    }
    let (sid, sub) = (claims.sid.clone(), claims.sub.clone());
    let live = state
        .store
        .read(async move |tx| {
            let s = tx.session_by_id(&sid).await?;
            let u = tx.user_by_id(&sub).await?;
            Ok(match (s, u) {
                (Some(s), Some(u)) if s.is_active(now) && u.is_enabled() => Some(u),
                _ => None,
            })
        })
        .await?;
    let Some(user) = live else {
        return Ok(inactive());
    };
    let mut body = serde_json::to_value(&claims).map_err(ApiError::internal)?;
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

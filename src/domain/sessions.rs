//! Sessions (refresh-token families): creation at login with the per-user limit.
//! Every function runs inside one store transaction (`repository::Tx`).

use ring::rand::SystemRandom;

use crate::clock::Millis;
use crate::domain::model::{ClientContext, NewEvent, Session, User};
use crate::domain::repository::Tx;
pub use crate::domain::revocation::{revoke, revoke_all_of_user};
use crate::domain::rotation::first_head;
use crate::domain::{
    AuthMethod, EventKind, Lifetimes, LimitPolicy, RefreshToken, RevocationReason, Scope,
    SessionId, TokenTagger, UserId,
};

#[derive(Clone)]
pub struct NewSession {
    pub user_id: UserId,
    pub client_id: String,
    pub scope: Scope,
    pub remember_me: bool,
    pub lifetimes: Lifetimes,
    pub max_per_user: u32,
    pub limit_policy: LimitPolicy,
    pub ctx: ClientContext,
    /// How the user authenticated (RFC 8176): `[Pwd]`, `[Pwd, Otp]` or `[Pwd, Hwk, Mfa]`
    /// after a second factor, `[Hwk, User, Mfa]` for a passkey alone. Kept on the
    /// session, so every refresh carries it.
    pub amr: Vec<AuthMethod>,
    /// When the password was checked; `None` for now (the session's start).
    pub auth_time: Option<Millis>,
    /// The identity provider that authenticated the user (with `amr` `fed`).
    pub idp: Option<String>,
}

pub struct CreatedSession {
    pub session: Session,
    pub user: User,
    pub token: RefreshToken,
}

/// A login from a network and browser family unseen for this long is a new device.
const NEW_DEVICE_WINDOW_MS: i64 = 30 * 86_400 * 1000;

pub enum LoginOutcome {
    Created(Box<CreatedSession>),
    /// The account vanished, was disabled, or had its password changed between the
    /// password check and this write.
    UserUnavailable,
    /// `limit_policy = "reject"` and the user is at `max_per_user`.
    LimitReached,
}

/// Starts a new family with its generation-0 token. Every login gets a new session id
/// (ASVS v4 3.2.1: no session fixation). For a session that a password check opens, use
/// [`create_login_session`].
pub async fn create_session(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    req: &NewSession,
) -> anyhow::Result<LoginOutcome> {
    create(tx, now, rng, tagger, req, None).await
}

/// [`create_session`] for a login that verified `verified_hash` (the user's argon2 PHC
/// string as it was read for the check). The check runs outside the writer, so a
/// password change may commit in between; the change ends every other session
/// (docs/contract.md "Endpoints", `/me/password`) but cannot see this one yet. So the
/// write refuses unless the stored hash is still the one verified: a login made with the
/// old password never outlives the change.
pub async fn create_login_session(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    req: &NewSession,
    verified_hash: &str,
) -> anyhow::Result<LoginOutcome> {
    create(tx, now, rng, tagger, req, Some(verified_hash)).await
}

async fn create(
    tx: &mut dyn Tx,
    now: Millis,
    rng: &SystemRandom,
    tagger: &dyn TokenTagger,
    req: &NewSession,
    verified_hash: Option<&str>,
) -> anyhow::Result<LoginOutcome> {
    let user = match tx.user_by_id(&req.user_id).await? {
        Some(u)
            if u.is_enabled()
                && verified_hash
                    .is_none_or(|h| same_bytes(h.as_bytes(), u.password_hash.as_bytes())) =>
        {
            u
        }
        _ => return Ok(LoginOutcome::UserUnavailable),
    };
    let active = tx.active_sessions_of_user(&user.id, now).await?;
    let over = (active.len() + 1).saturating_sub(req.max_per_user as usize);
    if over > 0 {
        match req.limit_policy {
            LimitPolicy::Reject => return Ok(LoginOutcome::LimitReached),
            LimitPolicy::EvictOldest => {
                for old in active.iter().take(over) {
                    revoke(tx, now, old, RevocationReason::Evicted, &req.ctx).await?;
                }
            }
        }
    }
    let mut session = Session {
        id: SessionId::new_random(),
        user_id: user.id.clone(),
        client_id: req.client_id.clone(),
        scope: req.scope.clone(),
        remember_me: req.remember_me,
        created_at: now,
        last_active_at: now,
        idle_expires_at: now.saturating_add(req.lifetimes.idle_ms),
        expires_at: now.saturating_add(req.lifetimes.absolute_ms),
        ip: req.ctx.ip.clone(),
        user_agent: req.ctx.user_agent.clone(),
        revoked_at: None,
        revoked_reason: None,
        head_generation: 0,
        head_issued_at: now,
        head_hash: None,
        sealed_head: None,
        amr: req.amr.clone(),
        auth_time: req.auth_time.unwrap_or(now),
    };
    let token = first_head(rng, tagger, &mut session)?;
    tx.insert_session(&session).await?;
    let network = req.ctx.ip.as_deref().and_then(network_of);
    let ua_family = req.ctx.user_agent.as_deref().map(user_agent_family);
    if let (Some(net), Some(fam)) = (&network, &ua_family) {
        let since = now.saturating_sub(NEW_DEVICE_WINDOW_MS);
        if tx.has_logged_in_before(&user.id).await?
            && !tx.seen_device(&user.id, since, net, fam).await?
        {
            let event = NewEvent::about_session(EventKind::NewDeviceLogin, &session, &req.ctx)
                .detail(serde_json::json!({ "network": net, "ua_family": fam }));
            tx.insert_event(now, &event).await?;
        }
    }
    let mut detail = serde_json::json!({
        "remember_me": req.remember_me,
        "amr": req.amr.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        // How the login began: an identity provider, a password (then `amr` names the
        // second factor, if any), or a passkey alone.
        "method": if req.idp.is_some() {
            "identity_provider"
        } else if req.amr.contains(&AuthMethod::Pwd) {
            "password"
        } else {
            "passkey"
        },
        "network": network,
        "ua_family": ua_family,
    });
    if let Some(idp) = &req.idp {
        detail["idp"] = idp.as_str().into();
    }
    let event =
        NewEvent::about_session(EventKind::LoginSucceeded, &session, &req.ctx).detail(detail);
    tx.insert_event(now, &event).await?;
    Ok(LoginOutcome::Created(Box::new(CreatedSession {
        session,
        user,
        token,
    })))
}

/// Equal contents, compared in constant time (hashes are not secrets, but there is no
/// reason to time them either).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// The network a login came from, coarsely: the IPv4 /24 or IPv6 /48.
pub fn network_of(ip: &str) -> Option<String> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
    }
}

/// A browser or client family from a user agent, coarse on purpose: versions change
/// every few weeks and must not make a known device look new.
pub fn user_agent_family(ua: &str) -> String {
    const KNOWN: [&str; 8] = [
        "Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/", "curl/", "okhttp/", "Dart/",
    ];
    for k in KNOWN {
        if ua.contains(k) {
            return k.trim_end_matches('/').to_owned();
        }
    }
    ua.split(['/', ' '])
        .next()
        .unwrap_or_default()
        .chars()
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_v4_slash_24_and_v6_slash_48() {
        assert_eq!(
            network_of("203.0.113.77").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            network_of("2001:db8:abcd:12::1").as_deref(),
            Some("2001:db8:abcd::/48")
        );
        assert_eq!(network_of("not an ip"), None);
    }

    #[test]
    fn user_agent_families_ignore_versions() {
        let a = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        let b = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        assert_eq!(user_agent_family(a), user_agent_family(b));
        assert_eq!(user_agent_family(a), "Chrome");
        assert_eq!(user_agent_family("curl/8.5.0"), "curl");
        assert_eq!(user_agent_family("reqwest"), "reqwest");
    }
}

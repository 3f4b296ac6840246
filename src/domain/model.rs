//! The entities the rules work on. The store loads and saves them; nothing here knows
//! how (see `repository::Tx`).

use crate::clock::Millis;
use crate::domain::{
    AuthMethod, EventKind, IdentityId, RevocationReason, Scope, SessionId, TokenHash, UserId,
};

/// An account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    /// As the user typed it at signup; `Username::key` of it is unique.
    pub username: String,
    /// A PHC string (argon2id); never logged.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: Millis,
    pub disabled_at: Option<Millis>,
}

impl User {
    pub fn is_enabled(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// A session: one login's refresh-token family (docs/architecture.md "Sessions and
/// token families").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub client_id: String,
    pub scope: Scope,
    pub remember_me: bool,
    pub created_at: Millis,
    pub last_active_at: Millis,
    pub idle_expires_at: Millis,
    pub expires_at: Millis,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<Millis>,
    pub revoked_reason: Option<RevocationReason>,
    /// The generation of the family's head (its newest refresh token).
    pub head_generation: i64,
    /// When the head was issued, which is when its parent rotated.
    pub head_issued_at: Millis,
    /// SHA-256 of the head token when it is in the located format; `None` while the
    /// head is a legacy token (its hash is then in the refresh-token table).
    pub head_hash: Option<TokenHash>,
    /// The head sealed (AES-256-GCM) with its parent's hash as AAD, kept only during the
    /// reuse interval; see `domain::rotation`. Ciphertext, useless without the seal key.
    pub sealed_head: Option<Vec<u8>>,
    /// How the login that started the session authenticated (RFC 8176): `pwd`, and
    /// `otp` after a second factor. Every access token of the session carries it.
    pub amr: Vec<AuthMethod>,
    /// When that login checked the password (the `auth_time` claim; refreshes keep it).
    pub auth_time: Millis,
}

impl Session {
    /// Live at `now`: not revoked, and neither the idle nor the absolute limit passed.
    pub fn is_active(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.expires_at
    }

    /// When the session ends if nothing else happens.
    pub fn ends_at(&self) -> Millis {
        self.idle_expires_at.min(self.expires_at)
    }
}

/// One entry of the revocation log (docs/contract.md "Revocation feed"): a session
/// that was revoked or erased, numbered in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub session_id: SessionId,
    pub revoked_at: Millis,
}

/// What the store keeps of one refresh token: its hash, never the token.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub token_hash: TokenHash,
    pub session_id: SessionId,
    pub generation: i64,
    pub issued_at: Millis,
}

/// Where a request came from, for sessions and events.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Set when an administrator (or the operator's CLI) acts on another user's
    /// account: events about that user then carry none of the administrator's address
    /// or user agent in their own fields, only `"by": "administrator"` in the detail;
    /// who did it goes into the event's actor, which only the admin view shows.
    pub admin: Option<Actor>,
}

impl ClientContext {
    /// An administrator's request (`ctx`), acting on someone else's account.
    pub fn administrator(user_id: &UserId, ctx: ClientContext) -> Self {
        Self {
            ip: None,
            user_agent: None,
            admin: Some(Actor {
                user_id: Some(user_id.clone()),
                ip: ctx.ip,
                user_agent: ctx.user_agent,
            }),
        }
    }

    /// The operator at the command line acting on a user's account.
    pub fn operator() -> Self {
        Self {
            admin: Some(Actor::default()),
            ..Self::default()
        }
    }
}

/// Who acted on another user's account: an administrator's user id, IP and user agent
/// (none of them for the operator's CLI). Shown only in the admin view of events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Option<UserId>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A security event to record. Never put a token or password in any field.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// An administrator acting on this event's user (see [`ClientContext::admin`]).
    pub actor: Option<Actor>,
}

impl NewEvent {
    /// An event with no subject yet; add one with the `with_*` methods.
    pub fn new(kind: EventKind) -> Self {
        Self {
            kind,
            user_id: None,
            session_id: None,
            client_id: None,
            ip: None,
            user_agent: None,
            detail: None,
            actor: None,
        }
    }

    /// An event about `session`, from the request described by `ctx`.
    pub fn about_session(kind: EventKind, session: &Session, ctx: &ClientContext) -> Self {
        Self::new(kind)
            .user(&session.user_id)
            .session(&session.id)
            .client(&session.client_id)
            .from(ctx)
    }

    pub fn user(mut self, id: &UserId) -> Self {
        self.user_id = Some(id.clone());
        self
    }

    pub fn session(mut self, id: &SessionId) -> Self {
        self.session_id = Some(id.clone());
        self
    }

    pub fn client(mut self, id: &str) -> Self {
        self.client_id = Some(id.to_owned());
        self
    }

    pub fn from(mut self, ctx: &ClientContext) -> Self {
        self.ip = ctx.ip.clone();
        self.user_agent = ctx.user_agent.clone();
        if let Some(actor) = &ctx.admin {
            self.ip = None;
            self.user_agent = None;
            self.actor = Some(actor.clone());
            let detail = self.detail.take().unwrap_or_else(|| serde_json::json!({}));
            return self.detail(detail);
        }
        self
    }

    /// Sets the detail; an event with an administrator as actor also says so there
    /// (`"by": "administrator"`), which is all its user sees of who did it.
    pub fn detail(mut self, mut detail: serde_json::Value) -> Self {
        if self.actor.is_some() {
            if let Some(obj) = detail.as_object_mut() {
                obj.insert("by".into(), "administrator".into());
            }
        }
        self.detail = Some(detail);
        self
    }
}

/// A recorded security event, as the event views show it.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub at: Millis,
    /// Stored text; events recorded by older versions may carry kinds no longer written.
    pub kind: String,
    pub user_id: Option<UserId>,
    pub session_id: Option<SessionId>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<serde_json::Value>,
    /// Who acted, when an administrator did (admin view only).
    pub actor: Option<Actor>,
}

/// Filters for reading events, newest first; `before` is an event id (the cursor).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub user_id: Option<UserId>,
    pub kind: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// A user's email address (docs/contract.md "Email and account recovery"): at most one
/// per user, unique by its case-insensitive key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEmail {
    pub user_id: UserId,
    /// As the user gave it (trimmed, domain lower-cased).
    pub email: String,
    pub verified_at: Option<Millis>,
}

/// What a single-use account token (password reset, email verification) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    Reset,
    Verify,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::Reset => "reset",
            TokenPurpose::Verify => "verify",
        }
    }
}

/// What the store keeps of a reset or verification token: its SHA-256, never the token.
#[derive(Debug, Clone)]
pub struct AccountToken {
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    /// For a verification token: the key of the address it verifies.
    pub email_key: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// A user's TOTP factor (docs/contract.md "Second factor"): one per user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaFactor {
    pub user_id: UserId,
    /// The RFC 6238 shared secret sealed with AES-256-GCM, bound to the user id
    /// (`keys::Sealer`). Never stored in plaintext.
    pub sealed_secret: Vec<u8>,
    pub created_at: Millis,
    /// `None` while the enrolment waits for its first code: such a factor is not
    /// asked for at login.
    pub confirmed_at: Option<Millis>,
    /// The last time step whose code was accepted: no code of it or an earlier step is
    /// accepted again (RFC 6238 §5.2).
    pub last_step: Option<i64>,
}

impl MfaFactor {
    pub fn is_active(&self) -> bool {
        self.confirmed_at.is_some()
    }
}

/// A login waiting for its second factor: what `mfa_token` stands for. The store keeps
/// the token's SHA-256, never the token, and what the first step decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub client_id: String,
    pub scope: Scope,
    /// The access token's audiences as the first step narrowed them (RFC 8707).
    pub audiences: Vec<String>,
    pub remember_me: bool,
    /// SHA-256 of the password hash that was verified: a password changed since makes
    /// the pending login useless.
    pub password_fingerprint: TokenHash,
    /// When the password was checked (becomes the session's `auth_time`).
    pub auth_time: Millis,
    pub expires_at: Millis,
    /// Wrong codes so far; the fifth ends it.
    pub failures: u32,
    /// Started at `/browser/login`: finishes only at `/browser/login/mfa` (and one from
    /// `/login` only at `/login/mfa`), so a browser login's refresh token never reaches
    /// a JSON body.
    pub browser: bool,
    /// The first step was this identity provider, not the password: the session's `amr`
    /// then starts with `fed` and its `login_succeeded` names the provider.
    pub idp: Option<String>,
}

/// A provider's user linked to an account: `(provider, subject)` is unique (OIDC Core
/// §5.7: `sub` is unique and never reassigned within one issuer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: IdentityId,
    pub user_id: UserId,
    /// The `[[identity_providers]]` id.
    pub provider: String,
    /// The ID token's `sub`.
    pub subject: String,
    /// What the provider said at the last sign-in.
    pub email: Option<String>,
    pub email_verified: bool,
    pub created_at: Millis,
    pub last_login_at: Millis,
}

/// A sign-in sent to a provider and not yet back: found by the SHA-256 of its `state`
/// and used once. Holds what the callback needs: the nonce the ID token must carry
/// (OIDC Core §3.1.2.1), the PKCE verifier (RFC 7636 §4.1), and where to send the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationState {
    pub state_hash: TokenHash,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub client_id: String,
    pub return_to: String,
    /// An explicit link by this signed-in user, rather than a sign-in.
    pub link_user: Option<UserId>,
    /// A sign-in for an app's authorization request (`/oauth/authorize?idp=`): it ends
    /// with a code at the app's redirect URI instead of a cookie at `return_to`.
    pub authorization: Option<PendingAuthorization>,
    pub expires_at: Millis,
}

/// An authorization request waiting for its sign-in (vetted by `/oauth/authorize`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub state: Option<String>,
    /// The requested scope (checked against the client's): the session gets it.
    /// `default`: rows stored before it was kept read as no scope.
    #[serde(default)]
    pub scope: Option<String>,
}

/// An authorization code (RFC 6749 §4.1.2) for a session already signed in at
/// `/oauth/authorize`: found by the SHA-256 of the code, used once, bound to the client,
/// the redirect URI and the PKCE challenge (RFC 7636 §4.4). Until its first use it holds
/// the session's refresh token sealed (with the code's hash as associated data); the
/// exchange rotates that token, so what the client gets was never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_hash: TokenHash,
    pub client_id: String,
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)), RFC 7636 §4.2 S256.
    pub code_challenge: String,
    pub session_id: SessionId,
    /// `None` once used.
    pub sealed_refresh: Option<Vec<u8>>,
    pub used_at: Option<Millis>,
    pub expires_at: Millis,
}

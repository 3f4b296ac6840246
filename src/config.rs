//! Configuration: safe defaults, layered under one TOML file, layered under
//! `LATCHKEY_SECTION__KEY` environment variables (figment does the layering).
//!
//! Every key has a default so `latchkey serve` runs with no file at all. Unknown keys
//! are refused (`deny_unknown_fields`) so a typo never silently falls back to a default.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{Algorithm, Lifetimes, LimitPolicy};
use crate::secret::Secret;

/// A duration written as whole seconds (`900`) or with a unit (`"15m"`, `"30d"`, `"500ms"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn as_millis_i64(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Text(t) => {
                let t = t.trim();
                if let Ok(s) = t.parse::<u64>() {
                    return Ok(Self(Duration::from_secs(s)));
                }
                humantime::parse_duration(t).map(Self).map_err(|e| {
                    serde::de::Error::custom(format!(
                        "bad duration {t:?} ({e}); use seconds or a unit, e.g. \"15m\", \"30d\""
                    ))
                })
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The issuer URL: the `iss` of every token and the metadata `issuer`, byte for byte.
    pub issuer: String,
    pub registration: Registration,
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub keys: KeySettings,
    pub access_token: AccessTokenSettings,
    pub refresh: RefreshSettings,
    pub session: SessionSettings,
    pub login: LoginSettings,
    pub rate_limits: RateLimitSettings,
    pub browser: BrowserSettings,
    pub clients: Vec<ClientSettings>,
    pub resource_servers: Vec<ResourceServerSettings>,
    pub events: EventSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Security events older than this are deleted by housekeeping.
    pub retention: HumanDuration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: HumanDuration::secs(90 * 86_400),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            registration: Registration::Open,
            server: ServerSettings::default(),
            store: StoreSettings::default(),
            keys: KeySettings::default(),
            access_token: AccessTokenSettings::default(),
            refresh: RefreshSettings::default(),
            session: SessionSettings::default(),
            login: LoginSettings::default(),
            rate_limits: RateLimitSettings::default(),
            browser: BrowserSettings::default(),
            clients: vec![ClientSettings::named("default")],
            resource_servers: Vec::new(),
            events: EventSettings::default(),
            log: LogSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Serve `/metrics` (and `/healthz`, `/readyz`) on this separate address instead of
    /// the main one, e.g. `127.0.0.1:9090` for a scraper on the host only.
    pub metrics_bind: Option<String>,
    /// Serve HTTPS directly (rustls) with this certificate chain and key (PEM).
    pub tls: Option<TlsSettings>,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish.
    pub shutdown_timeout: HumanDuration,
    /// How long a client has to send a request's head (slow clients get 408 and are
    /// disconnected).
    pub client_timeout: HumanDuration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            body_limit: 16 * 1024,
            workers: 0,
            trusted_proxies: Vec::new(),
            metrics_bind: None,
            tls: None,
            shutdown_timeout: HumanDuration::secs(30),
            client_timeout: HumanDuration::secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// Read-only connections serving reads beside the single writer.
    pub readers: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/latchkey.db"),
            readers: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    pub dir: PathBuf,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age: HumanDuration,
    /// How long a staged key is published before it signs (default 2 × `jwks_max_age`).
    pub publish_ahead: Option<HumanDuration>,
    /// Algorithm of the key generated on first start and by `keys rotate`.
    pub algorithm: Algorithm,
    /// How often a running server re-reads `manifest.json` to pick up `latchkey keys`
    /// changes made by another process (SIGHUP re-reads at once).
    pub reload_interval: HumanDuration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./keys"),
            jwks_max_age: HumanDuration::secs(300),
            publish_ahead: None,
            algorithm: Algorithm::ES256,
            reload_interval: HumanDuration::secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessTokenSettings {
    pub ttl: HumanDuration,
    /// Clock-skew allowance when verifying `exp`, `nbf` and `iat`.
    pub leeway: HumanDuration,
}

impl Default for AccessTokenSettings {
    fn default() -> Self {
        Self {
            ttl: HumanDuration::secs(15 * 60),
            leeway: HumanDuration::secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshSettings {
    /// Grace window in which the head's parent returns the same head (lost responses,
    /// concurrent tabs) instead of counting as reuse.
    pub reuse_interval: HumanDuration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            reuse_interval: HumanDuration::secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    pub idle_timeout: HumanDuration,
    pub absolute_lifetime: HumanDuration,
    pub idle_timeout_no_remember: HumanDuration,
    pub absolute_lifetime_no_remember: HumanDuration,
    pub max_per_user: u32,
    pub limit_policy: LimitPolicy,
    /// How long ended sessions stay visible to admins before housekeeping deletes them.
    pub retention: HumanDuration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_timeout: HumanDuration::secs(14 * 86_400),
            absolute_lifetime: HumanDuration::secs(30 * 86_400),
            idle_timeout_no_remember: HumanDuration::secs(30 * 60),
            absolute_lifetime_no_remember: HumanDuration::secs(12 * 3600),
            max_per_user: 50,
            limit_policy: LimitPolicy::EvictOldest,
            retention: HumanDuration::secs(30 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Failed logins per account in any sliding hour before attempts get 429 (ASVS
    /// v4 2.2.1 asks for at most 100).
    pub max_failures_per_account_per_hour: u32,
    /// Failed logins per client IP (any account) per hour before attempts get 429.
    pub max_failures_per_ip_per_hour: u32,
    /// Failures from one address on one account before delays start.
    pub failures_before_delay: u32,
    /// The first delay; each further failure doubles it.
    pub first_delay: HumanDuration,
    /// The longest delay.
    pub max_delay: HumanDuration,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_failures_per_account_per_hour: 100,
            max_failures_per_ip_per_hour: 1000,
            failures_before_delay: 5,
            first_delay: HumanDuration::secs(1),
            max_delay: HumanDuration::secs(300),
        }
    }
}

/// Browser (SPA) mode: the refresh token travels only in this cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserSettings {
    /// `__Host-` makes browsers insist on `Secure`, `Path=/` and no `Domain`.
    pub cookie_name: String,
}

impl Default for BrowserSettings {
    fn default() -> Self {
        Self {
            cookie_name: "__Host-lk_rt".into(),
        }
    }
}

/// One per-IP request rate limit: a sustained rate and a burst (GCRA).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

/// Per-IP request rate limits (429 with `Retry-After` beyond them). IPv6 clients are
/// counted by their /64.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub signup: RateLimit,
    pub login: RateLimit,
    pub token: RateLimit,
    pub revoke: RateLimit,
    pub introspect: RateLimit,
    pub browser: RateLimit,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            signup: RateLimit::new(10, 10),
            login: RateLimit::new(60, 30),
            token: RateLimit::new(300, 60),
            revoke: RateLimit::new(120, 30),
            introspect: RateLimit::new(3000, 500),
            browser: RateLimit::new(300, 60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub id: String,
    /// The `aud` of access tokens issued to this client.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Scopes this client may request; a request for anything else is refused.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Exact origins allowed for browser (cookie) mode and CORS.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub access_token_ttl: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub absolute_lifetime: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout_no_remember: Option<HumanDuration>,
    #[serde(default)]
    pub absolute_lifetime_no_remember: Option<HumanDuration>,
}

fn default_audience() -> String {
    "latchkey".into()
}

impl ClientSettings {
    pub fn named(id: &str) -> Self {
        Self {
            id: id.into(),
            audience: default_audience(),
            scopes: Vec::new(),
            allowed_origins: Vec::new(),
            access_token_ttl: None,
            idle_timeout: None,
            absolute_lifetime: None,
            idle_timeout_no_remember: None,
            absolute_lifetime_no_remember: None,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceServerSettings {
    pub id: String,
    pub secret: Secret<String>,
}

impl fmt::Debug for ResourceServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceServerSettings")
            .field("id", &self.id)
            .field("secret", &self.secret)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// A configuration problem, reported as one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Defaults → `file` (or `latchkey.toml` if present) → `LATCHKEY_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist or is not a file",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("latchkey.toml")),
        }
        figment = figment.merge(Env::prefixed("LATCHKEY_").split("__").ignore(&["config"]));
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError(one_line(&e.to_string())))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| ConfigError(format!("issuer {:?} is not a URL: {e}", self.issuer)))?;
        if !matches!(issuer.scheme(), "http" | "https")
            || issuer.query().is_some()
            || issuer.fragment().is_some()
        {
            // RFC 8414 §2: the issuer is an https URL with no query or fragment.
            return Err(ConfigError(format!(
                "issuer {:?} must be an http(s) URL without query or fragment",
                self.issuer
            )));
        }
        self.bind_addr()?;
        self.metrics_addr()?;
        if self.server.client_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError(
                "server.client_timeout must be at least 1s (actix measures it with a clock refreshed every 500 ms)".into(),
            ));
        }
        let name = &self.browser.cookie_name;
        // RFC 6265 §4.1.1: a cookie name is a token.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(ConfigError(format!(
                "browser.cookie_name {name:?} is not a valid cookie name"
            )));
        }
        for c in &self.clients {
            for origin in &c.allowed_origins {
                let ok = url::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.path() == "/"
                        && !origin.ends_with('/')
                        && u.query().is_none()
                });
                if !ok {
                    return Err(ConfigError(format!(
                        "client {:?}: allowed origin {origin:?} must be scheme://host[:port] with no path",
                        c.id
                    )));
                }
            }
        }
        let l = &self.login;
        if l.max_failures_per_account_per_hour == 0 || l.max_failures_per_ip_per_hour == 0 {
            return Err(ConfigError(
                "login.max_failures_per_account_per_hour and login.max_failures_per_ip_per_hour must be at least 1".into(),
            ));
        }
        let r = &self.rate_limits;
        for (name, limit) in [
            ("signup", r.signup),
            ("login", r.login),
            ("token", r.token),
            ("revoke", r.revoke),
            ("introspect", r.introspect),
            ("browser", r.browser),
        ] {
            if limit.per_minute == 0 || limit.burst == 0 {
                return Err(ConfigError(format!(
                    "rate_limits.{name}: per_minute and burst must be at least 1"
                )));
            }
        }
        if self.clients.is_empty() {
            return Err(ConfigError("at least one client must be configured".into()));
        }
        let mut ids = HashSet::new();
        for c in &self.clients {
            crate::domain::ClientId::parse(&c.id)
                .map_err(|e| ConfigError(format!("client id {:?}: {e}", c.id)))?;
            if !ids.insert(c.id.as_str()) {
                return Err(ConfigError(format!("client id {:?} is listed twice", c.id)));
            }
            if c.audience.is_empty() {
                return Err(ConfigError(format!(
                    "client {:?} has an empty audience",
                    c.id
                )));
            }
        }
        let mut rs_ids = HashSet::new();
        for rs in &self.resource_servers {
            if rs.id.is_empty() || rs.secret.expose().len() < 16 {
                return Err(ConfigError(format!(
                    "resource server {:?} needs an id and a secret of at least 16 characters",
                    rs.id
                )));
            }
            if !rs_ids.insert(rs.id.as_str()) {
                return Err(ConfigError(format!(
                    "resource server {:?} is listed twice",
                    rs.id
                )));
            }
        }
        if self.session.max_per_user == 0 {
            return Err(ConfigError(
                "session.max_per_user must be at least 1".into(),
            ));
        }
        if self.access_token.ttl.0.is_zero() {
            return Err(ConfigError("access_token.ttl must be positive".into()));
        }
        if self.server.body_limit < 1024 {
            return Err(ConfigError(
                "server.body_limit must be at least 1024 bytes".into(),
            ));
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            ConfigError(format!(
                "server.bind {:?} is not an address like 127.0.0.1:8080",
                self.server.bind
            ))
        })
    }

    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.server
            .metrics_bind
            .as_deref()
            .map(|b| {
                b.parse().map_err(|_| {
                    ConfigError(format!(
                        "server.metrics_bind {b:?} is not an address like 127.0.0.1:9090"
                    ))
                })
            })
            .transpose()
    }

    pub fn client(&self, id: &str) -> Option<&ClientSettings> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// The longest access-token lifetime of any client.
    pub fn longest_access_ttl(&self) -> Duration {
        self.clients
            .iter()
            .filter_map(|c| c.access_token_ttl)
            .map(|d| d.0)
            .chain(std::iter::once(self.access_token.ttl.0))
            .max()
            .unwrap_or(self.access_token.ttl.0)
    }

    /// How long a retired key stays published: every token it signed has expired and
    /// every cached JWKS has been refetched by then.
    pub fn retired_key_grace(&self) -> Duration {
        self.longest_access_ttl() + self.keys.jwks_max_age.0 + self.access_token.leeway.0
    }

    pub fn access_ttl(&self, client: &ClientSettings) -> HumanDuration {
        client.access_token_ttl.unwrap_or(self.access_token.ttl)
    }

    /// Idle and absolute lifetimes for a session of `client`, per its remember-me choice.
    pub fn lifetimes(&self, client: Option<&ClientSettings>, remember_me: bool) -> Lifetimes {
        let s = &self.session;
        let pick = |per_client: Option<HumanDuration>, global: HumanDuration| {
            per_client.unwrap_or(global).as_millis_i64()
        };
        if remember_me {
            Lifetimes {
                idle_ms: pick(client.and_then(|c| c.idle_timeout), s.idle_timeout),
                absolute_ms: pick(
                    client.and_then(|c| c.absolute_lifetime),
                    s.absolute_lifetime,
                ),
            }
        } else {
            Lifetimes {
                idle_ms: pick(
                    client.and_then(|c| c.idle_timeout_no_remember),
                    s.idle_timeout_no_remember,
                ),
                absolute_ms: pick(
                    client.and_then(|c| c.absolute_lifetime_no_remember),
                    s.absolute_lifetime_no_remember,
                ),
            }
        }
    }

    pub fn publish_ahead(&self) -> HumanDuration {
        self.keys
            .publish_ahead
            .unwrap_or(HumanDuration(self.keys.jwks_max_age.0 * 2))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        #[derive(Deserialize)]
        struct T {
            d: HumanDuration,
        }
        let t: T = toml_from("d = 900");
        assert_eq!(t.d.0, Duration::from_secs(900));
        let t: T = toml_from("d = \"15m\"");
        assert_eq!(t.d.0, Duration::from_secs(900));
        let t: T = toml_from("d = \"30d\"");
        assert_eq!(t.d.0, Duration::from_secs(30 * 86400));
        let t: T = toml_from("d = \"250ms\"");
        assert_eq!(t.d.0, Duration::from_millis(250));
    }

    fn toml_from<T: for<'de> Deserialize<'de>>(s: &str) -> T {
        Figment::from(Toml::string(s)).extract().expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn issuer_with_query_is_refused() {
        let s = Settings {
            issuer: "https://auth.example.com/?x=1".into(),
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }
}

//! `[mail]`: outgoing mail for email verification and password resets
//! (docs/contract.md "Email and account recovery").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};
use crate::secret::Secret;

/// How mail leaves latchkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    /// SMTP to `mail.smtp_url`; with no URL, no mail is sent (a warning at start).
    Smtp,
    /// Development only: each message, link included, is written to the log.
    Log,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    pub transport: MailTransport,
    /// `smtps://user:pass@host:465` (implicit TLS), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), or `smtp://host:25` (no TLS: only to a relay on the same host).
    pub smtp_url: Option<Secret<String>>,
    /// The `From` mailbox, e.g. `"Example <no-reply@example.com>"`.
    pub from: String,
    /// The reset link; `{token}` is replaced by the token. Default:
    /// `<issuer>/reset-password#token={token}` (a fragment never reaches a server log).
    pub reset_url: Option<String>,
    /// The verification link; `{token}` as above. Default: `<issuer>/verify-email#token={token}`.
    pub verify_url: Option<String>,
    /// How long a reset token works.
    pub reset_ttl: HumanDuration,
    /// How long a verification link works.
    pub verify_ttl: HumanDuration,
    /// At most this many reset mails per account per hour (further requests still
    /// answer 202, and send nothing).
    pub max_resets_per_account_per_hour: u32,
    /// A folder with templates that replace the built-in ones: `reset.txt`,
    /// `reset.html`, `verify.txt`, `verify.html` (any subset).
    pub templates_dir: Option<PathBuf>,
    /// Messages waiting to be sent; when full, new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// Tries per message before it is given up (and counted as failed).
    pub max_attempts: u32,
    /// The wait after the first failed try; it doubles each time, up to 5 minutes.
    pub retry_backoff: HumanDuration,
    /// One SMTP conversation's timeout.
    pub timeout: HumanDuration,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            transport: MailTransport::Smtp,
            smtp_url: None,
            from: "latchkey <no-reply@localhost.localdomain>".into(),
            reset_url: None,
            verify_url: None,
            reset_ttl: HumanDuration::secs(30 * 60),
            verify_ttl: HumanDuration::secs(24 * 3600),
            max_resets_per_account_per_hour: 3,
            templates_dir: None,
            queue_capacity: 1000,
            max_attempts: 8,
            retry_backoff: HumanDuration::secs(2),
            timeout: HumanDuration::secs(15),
        }
    }
}

impl MailSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError(format!(
                "mail.from {:?} is not a mailbox such as \"Example <no-reply@example.com>\"",
                self.from
            )));
        }
        for (name, url) in [
            ("reset_url", &self.reset_url),
            ("verify_url", &self.verify_url),
        ] {
            if let Some(u) = url {
                if !u.contains("{token}") {
                    return Err(ConfigError(format!("mail.{name} must contain {{token}}")));
                }
            }
        }
        if let Some(u) = &self.smtp_url {
            let parsed = url::Url::parse(u.expose())
                .map_err(|_| ConfigError("mail.smtp_url is not a URL".into()))?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
                return Err(ConfigError(
                    "mail.smtp_url must be smtp://… or smtps://… with a host".into(),
                ));
            }
        }
        if self.reset_ttl.0.is_zero() || self.verify_ttl.0.is_zero() {
            return Err(ConfigError(
                "mail.reset_ttl and mail.verify_ttl must be positive".into(),
            ));
        }
        if self.queue_capacity == 0 || self.max_attempts == 0 {
            return Err(ConfigError(
                "mail.queue_capacity and mail.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// `template` (`reset_url`/`verify_url` or its default under `issuer`) with the token.
    pub fn link(template: Option<&str>, issuer: &str, default_path: &str, token: &str) -> String {
        match template {
            Some(t) => t.replace("{token}", token),
            None => format!(
                "{}/{default_path}#token={token}",
                issuer.trim_end_matches('/')
            ),
        }
    }
}

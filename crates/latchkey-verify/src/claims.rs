//! What a verified token carries: [`Claims`], and the step-up check over them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::unix_now;

/// The claims of a latchkey access token (RFC 9068 §2.2, plus `sid`, `scope`, `roles`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    /// The session: what the revocation feed lists.
    pub sid: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

impl Claims {
    /// The space-separated `scope` claim, as a list.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// A route that needs step-up (docs/contract.md "Second factor and step-up") was called
/// with a token whose authentication is not recent or strong enough: answer 401 with
/// [`StepUpRequired::www_authenticate`] (RFC 9470 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the access token's authentication is insufficient (a second factor within {max_age}s is required)")]
pub struct StepUpRequired {
    /// The largest `auth_time` age accepted, in seconds.
    pub max_age: u64,
}

impl StepUpRequired {
    /// The `WWW-Authenticate` value of RFC 9470 §3: error
    /// `insufficient_user_authentication` and the `max_age` the client must meet.
    pub fn www_authenticate(&self) -> String {
        format!(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A second factor is required\", max_age=\"{}\"",
            self.max_age
        )
    }
}

impl Claims {
    /// RFC 9470 step-up, as latchkey's own step-up routes check it: `otp` in `amr`
    /// (RFC 8176) and `auth_time` no older than `max_age` (with no leeway).
    pub fn require_step_up(&self, max_age: Duration) -> Result<(), StepUpRequired> {
        let otp = self
            .amr
            .as_ref()
            .is_some_and(|amr| amr.iter().any(|m| m == "otp"));
        let max = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let recent = self
            .auth_time
            .is_some_and(|t| unix_now().saturating_sub(t) <= max);
        if otp && recent {
            Ok(())
        } else {
            Err(StepUpRequired {
                max_age: max_age.as_secs(),
            })
        }
    }
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(v) => v.iter().any(|a| a == aud),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_up_needs_otp_within_max_age() {
        let claims = |amr: &[&str], auth_time: i64| Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("a".into()),
            client_id: "c".into(),
            iat: unix_now(),
            exp: unix_now() + 900,
            nbf: None,
            jti: "j".into(),
            sid: "sid".into(),
            scope: String::new(),
            roles: Vec::new(),
            auth_time: Some(auth_time),
            amr: Some(amr.iter().map(|m| (*m).to_owned()).collect()),
        };
        let max = Duration::from_secs(900);
        assert!(claims(&["pwd", "otp"], unix_now())
            .require_step_up(max)
            .is_ok());
        let err = claims(&["pwd"], unix_now())
            .require_step_up(max)
            .unwrap_err();
        assert_eq!(
            err.www_authenticate(),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A second factor is required\", max_age=\"900\""
        );
        assert!(claims(&["pwd", "otp"], unix_now() - 901)
            .require_step_up(max)
            .is_err());
    }
}

//! How values are written in columns, shared by every backend so the SQLite file and the
//! PostgreSQL database hold the same forms (and `store copy` moves them as they are).

use crate::clock::Millis;
use crate::domain::model::{Actor, TokenPurpose};
use crate::domain::passkeys::{CeremonyKind, CeremonyMode};
use crate::domain::webhooks::Attempted;
use crate::domain::AuthMethod;

/// `amr` is stored as its RFC 8176 values separated by spaces (`"pwd otp"`).
pub fn amr_text(amr: &[AuthMethod]) -> String {
    amr.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(" ")
}

/// The methods of a stored `amr`; values this version does not know are dropped.
pub fn amr_of(text: &str) -> Vec<AuthMethod> {
    text.split(' ').filter_map(AuthMethod::parse).collect()
}

/// An account token's stored purpose.
pub fn purpose_of(s: &str) -> TokenPurpose {
    match s {
        "verify" => TokenPurpose::Verify,
        _ => TokenPurpose::Reset,
    }
}

/// A WebAuthn ceremony's stored kind; an unknown one is an error, never a guess.
pub fn ceremony_kind_of(s: &str) -> anyhow::Result<CeremonyKind> {
    CeremonyKind::parse(s).ok_or_else(|| anyhow::anyhow!("unknown ceremony kind {s:?}"))
}

/// A WebAuthn ceremony's stored mode; an unknown one is an error, never a guess.
pub fn ceremony_mode_of(s: &str) -> anyhow::Result<CeremonyMode> {
    CeremonyMode::parse(s).ok_or_else(|| anyhow::anyhow!("unknown ceremony mode {s:?}"))
}

/// The actor an event shows: the administrator who acted (recorded apart from the
/// user's own request fields), or none for the user's own actions.
pub fn shown_actor(actor: Actor, detail: Option<&serde_json::Value>) -> Option<Actor> {
    let by_admin = detail.is_some_and(|d| d["by"] == "administrator");
    (by_admin || actor != Actor::default()).then_some(actor)
}

/// An attempt's outcome as columns: status, next attempt, delivered at, HTTP status,
/// error.
pub fn attempt_columns(
    o: &Attempted,
) -> (
    &'static str,
    Option<Millis>,
    Option<Millis>,
    Option<i64>,
    Option<&str>,
) {
    match o {
        Attempted::Delivered { at, status } => ("delivered", None, Some(*at), Some(*status), None),
        Attempted::Retry {
            next_at,
            status,
            error,
        } => ("pending", Some(*next_at), None, *status, Some(error)),
        Attempted::Failed { at, status, error } => {
            ("failed", Some(*at), None, *status, Some(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amr_round_trips_through_its_stored_text() {
        let amr = vec![
            AuthMethod::parse("pwd").unwrap(),
            AuthMethod::parse("otp").unwrap(),
        ];
        assert_eq!(amr_text(&amr), "pwd otp");
        assert_eq!(amr_of("pwd otp"), amr);
    }
}

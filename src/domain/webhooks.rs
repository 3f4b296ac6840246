//! Webhook deliveries (docs/webhooks-guide.md): what a delivery carries, and the retry
//! rule. The outbox row is written by the store in the transaction that records the
//! event (`EventRepo::insert_event`), so a committed event is delivered and a rolled-back
//! one never is; the sender is `src/webhooks/`.

use chrono::SecondsFormat;

use crate::clock::{to_datetime, Millis};
use crate::domain::model::NewEvent;
use crate::domain::DeliveryStatus;

/// An endpoint as the store keeps it: its subscription and whether a 410 disabled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    /// `*`, or ` kind kind ` (`config::WebhookEndpoint::events_filter`).
    pub events: String,
    pub disabled_at: Option<Millis>,
}

/// An endpoint with its deliveries counted (GET /admin/webhooks).
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub endpoint: EndpointRow,
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    pub last_delivered_at: Option<Millis>,
}

/// One outbox row: one event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `webhook-id` header: the same on every attempt.
    pub id: String,
    pub endpoint_id: String,
    /// The exact body sent on every attempt.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    /// Retries stop `webhooks.max_age` after this (the creation, or a manual retry).
    pub retry_since: Millis,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
}

/// What one attempt's answer leaves the row as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    Delivered {
        at: Millis,
        status: i64,
    },
    Retry {
        next_at: Millis,
        status: Option<i64>,
        error: String,
    },
    Failed {
        at: Millis,
        status: Option<i64>,
        error: String,
    },
}

/// A new delivery id: `msg_` and 128 random bits; the store appends `_<endpoint id>`
/// so each endpoint's copy has its own.
pub fn new_message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// The Standard Webhooks body for `event` recorded at `at`, split around the event's
/// id, which only the store knows once the row is in: `prefix ‖ id ‖ suffix`. Never a
/// token or password: events hold neither.
pub fn payload_around_id(at: Millis, e: &NewEvent) -> (String, String) {
    let s = |v: &Option<String>| serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    let prefix = format!(
        "{{\"type\":{},\"timestamp\":{},\"data\":{{\"id\":",
        serde_json::Value::from(e.kind.as_str()),
        serde_json::Value::from(to_datetime(at).to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    let suffix = format!(
        ",\"user_id\":{},\"session_id\":{},\"client_id\":{},\"ip\":{},\
         \"user_agent\":{},\"detail\":{}}}}}",
        s(&e.user_id.as_ref().map(|u| u.as_str().to_owned())),
        s(&e.session_id.as_ref().map(|u| u.as_str().to_owned())),
        s(&e.client_id),
        s(&e.ip),
        s(&e.user_agent),
        e.detail
            .as_ref()
            .map_or_else(|| "null".into(), |d| d.to_string()),
    );
    (prefix, suffix)
}

/// After a failed attempt (`attempts` so far, the failed one included): when to try
/// again, or `None` once the next try would fall after `retry_since + max_age`.
/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff
/// and Jitter"): a uniform wait in `[0, min(1 h, base · 2^(attempts − 1))]`, so many
/// failing deliveries spread out instead of retrying together; `unit` in `[0, 1)`.
pub fn next_attempt(
    now: Millis,
    attempts: i64,
    retry_since: Millis,
    base_ms: i64,
    max_age_ms: i64,
    unit: f64,
) -> Option<Millis> {
    const CAP_MS: i64 = 3_600_000;
    let shift = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = base_ms.saturating_mul(1 << shift).clamp(1, CAP_MS);
    // At least a tenth of the ceiling, so a run of zero draws cannot spin.
    let wait = (ceiling as f64 * (0.1 + 0.9 * unit.clamp(0.0, 1.0))) as i64;
    let at = now.saturating_add(wait.max(1));
    (at <= retry_since.saturating_add(max_age_ms)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;

    #[test]
    fn the_payload_is_json_with_the_event_id_where_the_store_puts_it() {
        let mut e = NewEvent::new(EventKind::NewDeviceLogin);
        e.ip = Some("203.0.113.9".into());
        e.detail = Some(serde_json::json!({"network": "203.0.113.0/24"}));
        let (p, s) = payload_around_id(1_700_000_000_123, &e);
        let v: serde_json::Value = serde_json::from_str(&format!("{p}42{s}")).unwrap();
        assert_eq!(v["type"], "new_device_login");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["data"]["id"], 42);
        assert_eq!(v["data"]["ip"], "203.0.113.9");
        assert_eq!(v["data"]["detail"]["network"], "203.0.113.0/24");
    }

    #[test]
    fn backoff_grows_is_jittered_and_stops_at_max_age() {
        let (base, day) = (1_000, 86_400_000);
        let first = next_attempt(0, 1, 0, base, day, 0.99).unwrap();
        let fifth = next_attempt(0, 5, 0, base, day, 0.99).unwrap();
        assert!(first <= 1_000 && fifth > 10_000 && fifth <= 16_000);
        assert!(next_attempt(0, 5, 0, base, day, 0.0).unwrap() < fifth);
        assert!(next_attempt(0, 40, 0, base, day, 0.99).unwrap() <= 3_600_000);
        assert_eq!(next_attempt(day, 3, 0, base, day, 0.5), None);
    }
}

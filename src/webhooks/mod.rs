//! The webhook sender (docs/webhooks-guide.md): one task per instance takes due
//! deliveries from the outbox a small batch at a time, POSTs each signed per Standard
//! Webhooks, and records the answer. Memory stays bounded whatever the backlog: the
//! outbox is in the database, and the task holds one batch.
//!
//! Woken by the store right after a commit that queued deliveries
//! (`StoreObserver::deliveries_queued`), and by a short poll otherwise (other
//! instances' and processes' events, retries coming due, leases ending).

mod sign;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::clock::{Millis, SharedClock};
use crate::config::{secret_key, WebhookEndpoint, WebhookSettings};
use crate::domain::model::NewEvent;
use crate::domain::webhooks::{next_attempt, Attempted, Delivery, EndpointRow};
use crate::domain::{EventKind, RevocationReason};
use crate::metrics::Metrics;
use crate::store::{Store, StoreObserver};

pub use sign::signature_header;

/// Deliveries one claim takes: the most requests in flight per instance.
const BATCH: u32 = 16;
/// The longest wait between looks at the outbox when nothing wakes the sender.
const POLL: Duration = Duration::from_millis(500);

/// The sender's shared half: the store wakes it, shutdown closes it.
pub struct Webhooks {
    settings: WebhookSettings,
    client: reqwest::Client,
    wake: Notify,
    closed: AtomicBool,
}

/// What an endpoint answered, or why it did not.
#[derive(Debug)]
pub enum Answer {
    Status(u16),
    /// No answer: a timeout or a connection error (never the URL or a secret).
    NoAnswer(&'static str),
    /// The endpoint is no longer in the configuration: nothing was sent.
    Unconfigured,
}

impl Webhooks {
    pub fn new(settings: &WebhookSettings) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(settings.longest_timeout())
            .user_agent(concat!("latchkey-webhooks/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend a signed body somewhere else.
            .redirect(reqwest::redirect::Policy::none());
        // The system's roots cost a read of its certificate folder: only for https.
        let https = settings
            .endpoints
            .iter()
            .any(|e| e.url.starts_with("https:"));
        let roots = if https {
            rustls_native_certs::load_native_certs().certs
        } else {
            Vec::new()
        };
        for cert in roots {
            if let Ok(c) = reqwest::Certificate::from_der(&cert) {
                client = client.add_root_certificate(c);
            }
        }
        Ok(Self {
            settings: settings.clone(),
            client: client.build()?,
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// The endpoints as the store keeps them.
    pub fn endpoint_rows(&self) -> Vec<EndpointRow> {
        self.settings
            .endpoints
            .iter()
            .map(|e| EndpointRow {
                id: e.id.clone(),
                url: e.url.clone(),
                events: e.events_filter(),
                disabled_at: None,
            })
            .collect()
    }

    /// Stops the sender after its current batch.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// One signed POST of `body` as delivery `id` (also `latchkey webhooks test`).
    pub async fn post(
        &self,
        endpoint: &WebhookEndpoint,
        id: &str,
        now: Millis,
        body: &str,
    ) -> Answer {
        let keys: Vec<Vec<u8>> = endpoint
            .secret
            .all()
            .into_iter()
            .filter_map(secret_key)
            .collect();
        let timestamp = now.div_euclid(1000);
        let sent = self
            .client
            .post(&endpoint.url)
            .timeout(self.settings.timeout_of(endpoint))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature_header(&keys, id, timestamp, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) => Answer::Status(r.status().as_u16()),
            Err(e) if e.is_timeout() => Answer::NoAnswer("timeout"),
            Err(e) if e.is_connect() => Answer::NoAnswer("connection failed"),
            Err(_) => Answer::NoAnswer("request failed"),
        }
    }

    fn idle_wait(&self) -> Duration {
        self.settings
            .retry_backoff
            .0
            .clamp(Duration::from_millis(20), POLL)
    }
}

impl StoreObserver for Webhooks {
    fn batch_committed(&self, _writes: usize, _took: Duration) {}
    fn sessions_revoked(&self, _reason: RevocationReason, _n: usize) {}
    fn deliveries_queued(&self, _n: usize) {
        self.wake.notify_one();
    }
}

/// Runs the sender until [`Webhooks::close`].
pub fn spawn_sender(
    hooks: Arc<Webhooks>,
    store: Store,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The lease outlasts one attempt (bounded by the timeout) and its recording, so
        // a live sender's claim does not come due again; a crashed one's does soon.
        let lease = i64::try_from(
            (hooks.settings.longest_timeout() * 2 + Duration::from_secs(1)).as_millis(),
        )
        .unwrap_or(i64::MAX);
        while !hooks.closed.load(Ordering::Relaxed) {
            let now = clock.now_millis();
            let claimed = store
                .write(async move |tx| tx.claim_deliveries(now, now + lease, BATCH).await)
                .await;
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    let runs = batch
                        .into_iter()
                        .map(|d| attempt(&hooks, &store, &clock, &metrics, d));
                    join_all(runs).await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries"),
            }
            tokio::select! {
                () = hooks.wake.notified() => {}
                () = tokio::time::sleep(hooks.idle_wait()) => {}
            }
        }
    })
}

/// One attempt of `d`, its outcome recorded and counted.
async fn attempt(
    hooks: &Webhooks,
    store: &Store,
    clock: &SharedClock,
    metrics: &Metrics,
    d: Delivery,
) {
    let answer = match hooks.settings.endpoint(&d.endpoint_id) {
        Some(endpoint) => {
            hooks
                .post(endpoint, &d.id, clock.now_millis(), &d.payload)
                .await
        }
        None => Answer::Unconfigured,
    };
    let now = clock.now_millis();
    let gone = matches!(answer, Answer::Status(410));
    let outcome = outcome_of(&hooks.settings, &d, now, &answer);
    let label = match (&outcome, gone) {
        (_, true) => "disabled",
        (Attempted::Delivered { .. }, _) => "delivered",
        (Attempted::Retry { .. }, _) => "retried",
        (Attempted::Failed { .. }, _) => "failed",
    };
    metrics.webhook_attempt(&d.endpoint_id, label);
    let (id, endpoint_id) = (d.id.clone(), d.endpoint_id.clone());
    let recorded = store
        .write(async move |tx| {
            tx.record_attempt(&id, &outcome).await?;
            // RFC 9110 §15.5.11: 410 Gone is permanent; the endpoint asked to be dropped.
            if gone && tx.disable_webhook_endpoint(&endpoint_id, now).await? {
                let mut e = NewEvent::new(EventKind::WebhookDisabled);
                e.detail = Some(serde_json::json!({ "endpoint": endpoint_id }));
                tx.insert_event(now, &e).await?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = recorded {
        // The lease ends and the delivery is tried again: at least once, never lost.
        tracing::warn!(error = %e, delivery = %d.id, "webhooks: cannot record an attempt");
    }
}

/// What an answer makes of the delivery.
fn outcome_of(s: &WebhookSettings, d: &Delivery, now: Millis, answer: &Answer) -> Attempted {
    let (status, error) = match answer {
        Answer::Status(code) if (200..300).contains(code) => {
            return Attempted::Delivered {
                at: now,
                status: i64::from(*code),
            }
        }
        Answer::Status(410) => {
            return Attempted::Failed {
                at: now,
                status: Some(410),
                error: "410 Gone: endpoint disabled".into(),
            }
        }
        Answer::Status(code) => (Some(i64::from(*code)), format!("HTTP {code}")),
        Answer::Unconfigured => {
            return Attempted::Failed {
                at: now,
                status: None,
                error: "endpoint no longer configured".into(),
            }
        }
        Answer::NoAnswer(why) => (None, (*why).to_owned()),
    };
    let unit = f64::from(rand_u16()) / 65_536.0;
    match next_attempt(
        now,
        d.attempts,
        d.retry_since,
        s.retry_backoff.as_millis_i64(),
        s.max_age_of(&d.endpoint_id).as_millis_i64(),
        unit,
    ) {
        Some(next_at) => Attempted::Retry {
            next_at,
            status,
            error,
        },
        None => Attempted::Failed {
            at: now,
            status,
            error: format!("{error}; gave up after webhooks.max_age"),
        },
    }
}

/// Jitter needs no secrecy, but the CSPRNG is already here.
fn rand_u16() -> u16 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}

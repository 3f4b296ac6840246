//! Prometheus metrics (`GET /metrics`, text format 0.0.4). One registry per application,
//! held in `AppState`: no process-global recorder.
//!
//! Counters move where the event happens (the request middleware, the login, refresh and
//! revocation handlers, the store's writer thread); gauges that describe state (active
//! sessions, signing-key age, argon2 queue depth) are read at scrape time.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    logins: IntCounterVec,
    refreshes: IntCounterVec,
    reuse_detected: IntCounter,
    revocations: IntCounterVec,
    pub active_sessions: IntGauge,
    pub signing_key_age: prometheus::Gauge,
    pub argon2_queue_depth: IntGauge,
    /// When `active_sessions` was last counted (it costs a scan of the sessions).
    pub active_sessions_counted_at: std::sync::atomic::AtomicI64,
    writer_batch_size: Histogram,
    writer_commit_seconds: Histogram,
    mail_sent: IntCounterVec,
    mail_failed: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    pub webhook_queue_depth: IntGauge,
    pub webhook_oldest_pending: prometheus::Gauge,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let http_requests = counter_vec(
            &r,
            "latchkey_http_requests_total",
            "HTTP requests by route pattern, method and status.",
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "latchkey_http_request_duration_seconds",
                "HTTP request latency by route pattern and method.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route", "method"],
        )?;
        r.register(Box::new(http_duration.clone()))?;
        let logins = counter_vec(
            &r,
            "latchkey_logins_total",
            "Login attempts by outcome (success, failure, throttled, rejected).",
            &["outcome"],
        )?;
        let refreshes = counter_vec(
            &r,
            "latchkey_refreshes_total",
            "Refresh-token grants by outcome (rotated, replayed within the reuse interval, reuse_detected, rejected).",
            &["outcome"],
        )?;
        let reuse_detected = IntCounter::new(
            "latchkey_refresh_reuse_detected_total",
            "Rotated refresh tokens presented again: each revoked its whole session.",
        )?;
        r.register(Box::new(reuse_detected.clone()))?;
        let revocations = counter_vec(
            &r,
            "latchkey_session_revocations_total",
            "Sessions revoked, by reason.",
            &["reason"],
        )?;
        let active_sessions = IntGauge::new(
            "latchkey_active_sessions",
            "Sessions neither revoked nor expired.",
        )?;
        r.register(Box::new(active_sessions.clone()))?;
        let signing_key_age = prometheus::Gauge::new(
            "latchkey_signing_key_age_seconds",
            "Age of the key that signs access tokens now (since it started signing).",
        )?;
        r.register(Box::new(signing_key_age.clone()))?;
        let argon2_queue_depth = IntGauge::new(
            "latchkey_argon2_queue_depth",
            "Password hashes waiting for an argon2 thread.",
        )?;
        r.register(Box::new(argon2_queue_depth.clone()))?;
        let writer_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "latchkey_store_batch_size",
                "Writes committed per transaction by the store's writer (group commit).",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        r.register(Box::new(writer_batch_size.clone()))?;
        let writer_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "latchkey_store_commit_seconds",
                "Time from BEGIN to durable COMMIT of one write batch.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )?;
        r.register(Box::new(writer_commit_seconds.clone()))?;
        let mail_sent = counter_vec(
            &r,
            "latchkey_mail_sent_total",
            "Mail handed to the SMTP server (or the log transport), by kind.",
            &["kind"],
        )?;
        let mail_failed = counter_vec(
            &r,
            "latchkey_mail_failed_total",
            "Mail given up on, by kind and reason (queue_full, rejected, gave_up).",
            &["kind", "reason"],
        )?;
        let webhook_deliveries = counter_vec(
            &r,
            "latchkey_webhook_deliveries_total",
            "Webhook delivery attempts by endpoint and outcome (delivered, retried, failed, disabled).",
            &["endpoint", "outcome"],
        )?;
        let webhook_queue_depth = IntGauge::new(
            "latchkey_webhook_queue_depth",
            "Webhook deliveries pending (all endpoints, all instances).",
        )?;
        r.register(Box::new(webhook_queue_depth.clone()))?;
        let webhook_oldest_pending = prometheus::Gauge::new(
            "latchkey_webhook_oldest_pending_seconds",
            "Age of the oldest pending webhook delivery (0 when none).",
        )?;
        r.register(Box::new(webhook_oldest_pending.clone()))?;
        Ok(Self {
            registry: r,
            http_requests,
            http_duration,
            logins,
            refreshes,
            reuse_detected,
            revocations,
            active_sessions,
            signing_key_age,
            argon2_queue_depth,
            active_sessions_counted_at: std::sync::atomic::AtomicI64::new(i64::MIN),
            writer_batch_size,
            writer_commit_seconds,
            mail_sent,
            mail_failed,
            webhook_deliveries,
            webhook_queue_depth,
            webhook_oldest_pending,
        })
    }

    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(elapsed.as_secs_f64());
    }

    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    pub fn refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
        if outcome == "reuse_detected" {
            self.reuse_detected.inc();
        }
    }

    pub fn revoked(&self, reason: &str, sessions: usize) {
        if sessions > 0 {
            self.revocations
                .with_label_values(&[reason])
                .inc_by(sessions as u64);
        }
    }

    pub fn mail_sent(&self, kind: &str) {
        self.mail_sent.with_label_values(&[kind]).inc();
    }

    pub fn mail_failed(&self, kind: &str, reason: &str) {
        self.mail_failed.with_label_values(&[kind, reason]).inc();
    }

    pub fn webhook_attempt(&self, endpoint: &str, outcome: &str) {
        self.webhook_deliveries
            .with_label_values(&[endpoint, outcome])
            .inc();
    }

    pub fn render(&self) -> anyhow::Result<String> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }
}

/// The store reports what it committed: write batches, and every session revocation
/// by reason (whichever route, command or rule revoked it).
impl crate::store::StoreObserver for Metrics {
    fn batch_committed(&self, writes: usize, took: Duration) {
        self.writer_batch_size.observe(writes as f64);
        self.writer_commit_seconds.observe(took.as_secs_f64());
    }

    fn sessions_revoked(&self, reason: crate::domain::RevocationReason, n: usize) {
        self.revoked(reason.as_str(), n);
    }
}

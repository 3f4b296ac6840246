//! Outgoing mail (docs/contract.md "Email and account recovery"): a bounded queue that a
//! request only ever `try_send`s into, and one task that delivers over SMTP (`lettre`,
//! rustls with ring: implicit TLS for `smtps://`, STARTTLS with `?tls=required`), retrying
//! with exponential backoff. A full queue or an SMTP outage never slows or fails a
//! request: the message is logged (without its body: it carries a token) and counted
//! (`latchkey_mail_failed_total`).
//!
//! `mail.transport = "log"` writes each message, link included, to the log instead:
//! development only, announced by a warning at start.

mod templates;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;

pub use templates::{Rendered, Templates};

use crate::config::{MailSettings, MailTransport};
use crate::metrics::Metrics;

/// What a mail is for (the `kind` label of the mail metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    Reset,
    Verify,
    /// To an address another account has verified, given again at signup or
    /// `/me/email`: a notice instead of a link.
    AddressInUse,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Reset => "password_reset",
            MailKind::Verify => "email_verification",
            MailKind::AddressInUse => "email_in_use",
        }
    }
}

/// One message waiting to be sent.
#[derive(Debug)]
pub struct Outgoing {
    pub kind: MailKind,
    pub to: String,
    pub content: Rendered,
}

/// How long a handed-off mail waits before it is queued: this many milliseconds plus
/// a random number below the second.
const HAND_OFF_PAUSE_MS: (u64, u64) = (100, 900);

/// The longest wait between two tries of one message.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

enum Sender {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Log,
    /// SMTP with no `mail.smtp_url`: nothing can be sent.
    Disabled,
}

pub struct Mailer {
    settings: MailSettings,
    from: Mailbox,
    templates: Templates,
    metrics: Arc<Metrics>,
    queue: mpsc::Sender<Outgoing>,
    /// Taken by [`Mailer::spawn_worker`].
    pending: Mutex<Option<mpsc::Receiver<Outgoing>>>,
}

impl Mailer {
    pub fn new(settings: &MailSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .context("mail.from is not a mailbox")?;
        let templates = Templates::load(settings.templates_dir.as_deref())?;
        let (queue, rx) = mpsc::channel(settings.queue_capacity.max(1));
        Ok(Self {
            settings: settings.clone(),
            from,
            templates,
            metrics,
            queue,
            pending: Mutex::new(Some(rx)),
        })
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    /// Whether mail can leave at all (SMTP configured, or the log transport).
    pub fn enabled(&self) -> bool {
        self.settings.transport == MailTransport::Log || self.settings.smtp_url.is_some()
    }

    /// Renders a mail and queues it on a task of its own, after the request has moved
    /// on. With no recipient (`to` `None`) the mail is rendered all the same and
    /// dropped: `/password/forgot` hands off the same work whether or not there is
    /// anyone to mail, so its answer takes the same time (OWASP Forgot Password cheat
    /// sheet, "uniform time").
    pub fn hand_off(
        self: &Arc<Self>,
        kind: MailKind,
        to: Option<String>,
        username: Option<String>,
        link: String,
        minutes: u64,
    ) {
        let me = self.clone();
        // Delivery takes the machine's time (the SMTP exchange, the server's own work):
        // started at once, it would slow the very answer it belongs to. After a random
        // pause it falls on some later request, whatever that one asked.
        let mut b = [0u8; 2];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        let (least, spread) = HAND_OFF_PAUSE_MS;
        let pause = Duration::from_millis(least + u64::from(u16::from_le_bytes(b)) % spread);
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let content = me
                .templates
                .render(kind, username.as_deref(), &link, minutes);
            if let Some(to) = to {
                me.enqueue(kind, to, content);
            }
        });
    }

    /// Queues a message without waiting; when the queue is full it is dropped, logged
    /// and counted.
    pub fn enqueue(&self, kind: MailKind, to: String, content: Rendered) {
        if !self.enabled() {
            tracing::warn!(
                kind = kind.as_str(),
                "no mail transport is configured (mail.smtp_url): the mail was not sent"
            );
            self.metrics.mail_failed(kind.as_str(), "not_configured");
            return;
        }
        if self.queue.try_send(Outgoing { kind, to, content }).is_err() {
            tracing::error!(
                kind = kind.as_str(),
                capacity = self.settings.queue_capacity,
                "the mail queue is full: the mail was dropped"
            );
            self.metrics.mail_failed(kind.as_str(), "queue_full");
        }
    }

    /// Starts the delivery task (once; later calls do nothing). Needs a Tokio runtime.
    /// Starts the delivery worker. `development` (listening on loopback only): a missing
    /// SMTP configuration is expected there, so it is said at INFO, not WARN (a first start
    /// with no configuration should not look broken).
    pub fn spawn_worker(self: &Arc<Self>, development: bool) -> anyhow::Result<()> {
        let Some(rx) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        let sender = match (self.settings.transport, &self.settings.smtp_url) {
            (MailTransport::Log, _) => {
                tracing::warn!(
                    "mail.transport = \"log\": password-reset and verification mails, \
                     WITH THEIR LINKS, are written to the log instead of being sent. \
                     Development only: never use this in production"
                );
                Sender::Log
            }
            (MailTransport::Smtp, Some(url)) => Sender::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("mail.smtp_url")?
                    .timeout(Some(self.settings.timeout.0))
                    .build(),
            ),
            (MailTransport::Smtp, None) => {
                let message = "mail.smtp_url is not set: email verification and password-reset \
                     mails cannot be sent (POST /password/forgot still answers 202)";
                if development {
                    tracing::info!("{message}");
                } else {
                    tracing::warn!("{message}");
                }
                Sender::Disabled
            }
        };
        let me = self.clone();
        tokio::spawn(async move { me.deliver_all(rx, sender).await });
        Ok(())
    }

    fn build(&self, m: &Outgoing) -> anyhow::Result<Message> {
        let to: Mailbox = m.to.parse().context("the recipient is not a mailbox")?;
        let domain = self.from.email.domain().to_owned();
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.content.subject.clone())
            .date_now()
            .message_id(Some(format!("<{}@{domain}>", uuid::Uuid::new_v4())))
            .multipart(MultiPart::alternative_plain_html(
                m.content.text.clone(),
                m.content.html.clone(),
            ))?)
    }

    async fn deliver_all(self: Arc<Self>, mut rx: mpsc::Receiver<Outgoing>, sender: Sender) {
        while let Some(m) = rx.recv().await {
            let kind = m.kind.as_str();
            let message = match self.build(&m) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::error!(kind, error = format!("{e:#}"), "cannot build the mail");
                    self.metrics.mail_failed(kind, "rejected");
                    continue;
                }
            };
            match &sender {
                Sender::Disabled => self.metrics.mail_failed(kind, "not_configured"),
                Sender::Log => {
                    tracing::warn!(
                        kind,
                        message = %String::from_utf8_lossy(&message.formatted()),
                        "mail (log transport, development only)"
                    );
                    self.metrics.mail_sent(kind);
                }
                Sender::Smtp(smtp) => self.send_with_retries(smtp, &message, kind).await,
            }
        }
    }

    /// Tries up to `mail.max_attempts` times, waiting `retry_backoff`, then twice that,
    /// and so on (at most five minutes). A permanent refusal (5xx) is not retried.
    async fn send_with_retries(
        &self,
        smtp: &AsyncSmtpTransport<Tokio1Executor>,
        message: &Message,
        kind: &'static str,
    ) {
        let id = message
            .headers()
            .get_raw("Message-ID")
            .unwrap_or_default()
            .to_owned();
        let mut wait = self.settings.retry_backoff.0;
        for attempt in 1..=self.settings.max_attempts {
            match smtp.send(message.clone()).await {
                Ok(_) => {
                    tracing::info!(kind, message_id = %id, attempt, "mail sent");
                    self.metrics.mail_sent(kind);
                    return;
                }
                Err(e) if e.is_permanent() => {
                    tracing::error!(kind, message_id = %id, error = %e, "the SMTP server refused the mail");
                    self.metrics.mail_failed(kind, "rejected");
                    return;
                }
                Err(e) if attempt < self.settings.max_attempts => {
                    tracing::warn!(
                        kind, message_id = %id, attempt, error = %e,
                        retry_in_ms = wait.as_millis() as u64,
                        "mail not sent yet; will retry"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(kind, message_id = %id, attempt, error = %e, "mail not sent: giving up");
                    self.metrics.mail_failed(kind, "gave_up");
                }
            }
        }
    }
}

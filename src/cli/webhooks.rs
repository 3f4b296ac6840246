//! `latchkey webhooks list|test ID` (docs/webhooks-guide.md "Operating").

use super::WebhooksCommand;
use crate::clock::{rfc3339, Clock, SystemClock};
use crate::config::Settings;
use crate::domain::webhooks::new_message_id;
use crate::service::webhooks;
use crate::store::Store;
use crate::webhooks::{Answer, Webhooks};

pub(super) async fn run(command: WebhooksCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::List => list(settings).await,
        WebhooksCommand::Test { id } => test(settings, &id).await,
    }
}

/// The configured endpoints, with what the store knows of them (a server keeps the
/// stored list in step with the configuration when it starts).
async fn list(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let stored = webhooks::endpoints(&store).await?;
    println!(
        "{:<20} {:<9} {:>8} {:>8} {:>10}  URL",
        "ID", "STATE", "PENDING", "FAILED", "DELIVERED"
    );
    for e in &settings.webhooks.endpoints {
        let health = stored.iter().find(|h| h.endpoint.id == e.id);
        let state = match health.map(|h| h.endpoint.disabled_at) {
            None => "not yet".to_owned(),
            Some(None) => "enabled".to_owned(),
            Some(Some(_)) => "disabled".to_owned(),
        };
        let (p, f, d) = health.map_or((0, 0, 0), |h| (h.pending, h.failed, h.delivered));
        println!("{:<20} {state:<9} {p:>8} {f:>8} {d:>10}  {}", e.id, e.url);
        if let Some(at) = health.and_then(|h| h.endpoint.disabled_at) {
            println!("  disabled at {} after a 410", rfc3339(at));
        }
    }
    Ok(())
}

/// One signed `webhook_test` POST, sent now, bypassing the outbox (nothing is stored).
async fn test(settings: &Settings, id: &str) -> anyhow::Result<()> {
    let endpoint = settings
        .webhooks
        .endpoint(id)
        .ok_or_else(|| anyhow::anyhow!("no webhook endpoint {id:?} in the configuration"))?;
    let hooks = Webhooks::new(&settings.webhooks)?;
    let now = SystemClock.now_millis();
    let message = new_message_id();
    let body = serde_json::json!({
        "type": "webhook_test",
        "timestamp": rfc3339(now),
        "data": { "endpoint": id },
    })
    .to_string();
    match hooks.post(endpoint, &message, now, &body).await {
        Answer::Status(code) if (200..300).contains(&code) => {
            println!("{id}: {code} ({message})");
            Ok(())
        }
        Answer::Status(code) => anyhow::bail!("{id} answered {code} ({message})"),
        Answer::NoAnswer(why) => anyhow::bail!("{id}: {why} ({message})"),
        Answer::Unconfigured => anyhow::bail!("no webhook endpoint {id:?}"),
    }
}

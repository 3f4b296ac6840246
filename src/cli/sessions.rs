//! `latchkey sessions list|revoke --user NAME` (docs/contract.md "Command line").

use super::users::user_named;
use super::SessionsCommand;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::RevocationReason;
use crate::domain::Username;
use crate::store::Store;

pub(super) async fn run(command: SessionsCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List { user } => list(settings, user).await,
        SessionsCommand::Revoke { user } => revoke(settings, user).await,
    }
}

/// A user's active sessions, one line each.
async fn list(settings: &Settings, user: String) -> anyhow::Result<()> {
    let clock = SystemClock;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let key = Username::lookup_key(&user);
    let list = store
        .read(async move |tx| {
            let u = user_named(tx, &key).await?;
            tx.active_sessions_of_user(&u.id, now).await
        })
        .await?;
    println!(
        "{:<36}  {:<12} {:<20} {:<20} {:<15} USER AGENT",
        "SESSION", "CLIENT", "CREATED", "LAST ACTIVE", "IP"
    );
    for s in list {
        println!(
            "{:<36}  {:<12} {:<20} {:<20} {:<15} {}",
            s.id,
            s.client_id,
            crate::clock::rfc3339(s.created_at),
            crate::clock::rfc3339(s.last_active_at),
            s.ip.unwrap_or_default(),
            s.user_agent.unwrap_or_default()
        );
    }
    Ok(())
}

/// Ends every session of a user (reason `admin`); safe while the server runs.
async fn revoke(settings: &Settings, user: String) -> anyhow::Result<()> {
    let clock = SystemClock;
    let key = Username::lookup_key(&user);
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let n = store
        .write(async move |tx| {
            let u = user_named(tx, &key).await?;
            let reason = RevocationReason::Admin;
            let ctx = crate::domain::model::ClientContext::operator();
            crate::domain::revocation::revoke_all_of_user(tx, now, &u.id, None, reason, &ctx).await
        })
        .await?;
    println!("revoked {n} session(s)");
    Ok(())
}

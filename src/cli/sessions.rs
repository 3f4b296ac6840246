//! `latchkey sessions list|revoke --user NAME` (docs/contract.md "Command line").

use super::SessionsCommand;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::model::ClientContext;
use crate::service::{accounts, sessions};
use crate::store::Store;

pub(super) async fn run(command: SessionsCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List { user } => list(settings, user).await,
        SessionsCommand::Revoke { user } => revoke(settings, user).await,
    }
}

/// A user's active sessions, one line each.
async fn list(settings: &Settings, user: String) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &user).await?;
    let list = sessions::active_sessions(&store, SystemClock.now_millis(), &u.id).await?;
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
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &user).await?;
    let now = SystemClock.now_millis();
    let n = sessions::revoke_all_of_user(&store, now, u.id, ClientContext::operator()).await?;
    println!("revoked {n} session(s)");
    Ok(())
}

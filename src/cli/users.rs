//! `latchkey users add|list|disable|delete|reset-mfa|reset-password` (docs/contract.md "Command line").

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};

use super::UsersCommand;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::model::ClientContext;
use crate::domain::recovery::StartedBy;
use crate::domain::{Password, Username};
use crate::service::{accounts, mfa, recovery};
use crate::store::Store;

pub(super) async fn run(command: UsersCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add { username, roles } => add(settings, username, roles).await,
        UsersCommand::List => list(settings).await,
        UsersCommand::Disable { username } => disable(settings, username).await,
        UsersCommand::Delete { username } => delete(settings, username).await,
        UsersCommand::ResetPassword { username } => reset_password(settings, username).await,
        UsersCommand::ResetMfa { username } => reset_mfa(settings, username).await,
    }
}

/// Creates a user with the full password policy; prints the new id.
async fn add(settings: &Settings, username: String, roles: Vec<String>) -> anyhow::Result<()> {
    let username = Username::parse(&username).map_err(anyhow::Error::msg)?;
    let password = Password::parse(read_password()?).map_err(anyhow::Error::msg)?;
    let hash = crate::passwords::hash_blocking(password.expose())?;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let user = accounts::create_user(&store, now(), username, hash, roles).await?;
    println!("{}", user.id);
    Ok(())
}

async fn list(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let users = accounts::all_users(&store).await?;
    println!(
        "{:<36}  {:<24} {:<8} {:<20} ROLES",
        "ID", "USERNAME", "STATE", "CREATED"
    );
    for u in users {
        println!(
            "{:<36}  {:<24} {:<8} {:<20} {}",
            u.id,
            u.username,
            if u.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            },
            crate::clock::rfc3339(u.created_at),
            u.roles.join(",")
        );
    }
    Ok(())
}

/// Disables the user and ends all their sessions.
async fn disable(settings: &Settings, username: String) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &username).await?;
    accounts::disable(&store, now(), u.id, ClientContext::operator()).await?;
    println!("disabled {username}");
    Ok(())
}

/// Erases the user with their sessions, tokens and events.
async fn delete(settings: &Settings, username: String) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &username).await?;
    if !accounts::erase(&store, now(), &u.id).await? {
        bail!("no such user");
    }
    println!("deleted {username}");
    Ok(())
}

/// Issues a reset token for the user and prints the one-time link (docs/contract.md
/// "Email and account recovery"); no verified address is needed, since support staff
/// hand the link over themselves.
async fn reset_password(settings: &Settings, username: String) -> anyhow::Result<()> {
    Username::parse(&username).map_err(anyhow::Error::msg)?;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &username).await?;
    let ttl = settings.mail.reset_ttl.as_millis_i64();
    let rng = ring::rand::SystemRandom::new();
    let started = recovery::start_reset(&store, &rng, now(), ttl, u.id, StartedBy::Cli).await?;
    println!(
        "{}",
        crate::config::MailSettings::link(
            settings.mail.reset_url.as_deref(),
            &settings.issuer,
            "reset-password",
            started.secret.expose(),
        )
    );
    eprintln!(
        "one-time link for {username}, valid for {}; give it to the user only",
        humantime::format_duration(settings.mail.reset_ttl.0)
    );
    Ok(())
}

/// Removes a locked-out user's second factor, its recovery codes, pending logins and
/// passkeys (docs/contract.md "Second factor", "Passkeys"); recorded as `mfa_disabled`
/// and `passkey_removed` by an administrator.
/// Every session of theirs ends (reason `mfa_reset`, ASVS v5 7.4.3: the CLI has no
/// current session to keep); their next login needs only the password.
async fn reset_mfa(settings: &Settings, username: String) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let u = accounts::user_named(&store, &username).await?;
    match mfa::reset_factor(&store, now(), &u.id).await? {
        Some(ended) => println!(
            "removed the second factor and passkeys of {username} and ended {ended} session{}",
            if ended == 1 { "" } else { "s" }
        ),
        None => println!("{username} had no second factor"),
    }
    Ok(())
}

fn now() -> crate::clock::Millis {
    SystemClock.now_millis()
}

/// One line from standard input, or a hidden prompt on a terminal.
/// The new password: typed twice at a terminal (a typo would otherwise lock the account
/// out on its first use), or one line of standard input for scripts. Empty input is
/// refused as empty, not as "too short".
fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ").context("cannot read the password")?;
        if !first.is_empty() {
            let again = rpassword::prompt_password("password again: ")
                .context("cannot read the password")?;
            if again != first {
                bail!("the two passwords differ; nothing was changed");
            }
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        bail!("no password was given (type it at the prompt, or pipe it on standard input)");
    }
    Ok(password)
}

//! `latchkey users add|list|disable|delete|reset-mfa|reset-password` (docs/contract.md "Command line").

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context};

use super::UsersCommand;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::model::User;
use crate::domain::repository::Tx;
use crate::domain::{Password, Username};
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
    let clock = SystemClock;
    let username = Username::parse(&username).map_err(anyhow::Error::msg)?;
    let password = Password::parse(read_password()?).map_err(anyhow::Error::msg)?;
    let hash = crate::passwords::hash_blocking(password.expose())?;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let outcome = store
        .write(async move |tx| accounts::create_user(tx, now, &username, hash, roles).await)
        .await?;
    match outcome {
        SignupOutcome::Created(u) => {
            println!("{}", u.id);
            Ok(())
        }
        SignupOutcome::Taken => bail!("that username is taken"),
        SignupOutcome::Confusable => bail!("that username looks like an existing one"),
    }
}

async fn list(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::from_settings(&settings.store, 1, None)?;
    let users = store.read(async |tx| tx.all_users().await).await?;
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
    let clock = SystemClock;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let key = Username::lookup_key(&username);
    store
        .write(async move |tx| {
            let u = user_named(tx, &key).await?;
            let ctx = crate::domain::model::ClientContext::operator();
            accounts::disable_user(tx, now, &u.id, &ctx).await
        })
        .await?;
    println!("disabled {username}");
    Ok(())
}

/// Erases the user with their sessions, tokens and events.
async fn delete(settings: &Settings, username: String) -> anyhow::Result<()> {
    let clock = SystemClock;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let key = Username::lookup_key(&username);
    store
        .write(async move |tx| {
            let u = user_named(tx, &key).await?;
            accounts::delete_user(tx, now, &u.id).await
        })
        .await?;
    println!("deleted {username}");
    Ok(())
}

/// Issues a reset token for the user and prints the one-time link (docs/contract.md
/// "Email and account recovery"); no verified address is needed, since support staff
/// hand the link over themselves.
async fn reset_password(settings: &Settings, username: String) -> anyhow::Result<()> {
    use crate::domain::email::AccountSecret;
    use crate::domain::recovery::{self, AdminReset, StartedBy};
    let clock = SystemClock;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let key = Username::parse(&username)
        .map_err(anyhow::Error::msg)?
        .key();
    let secret = AccountSecret::generate(&ring::rand::SystemRandom::new())?;
    let ttl = settings.mail.reset_ttl.as_millis_i64();
    let s = secret.clone();
    let outcome = store
        .write(async move |tx| {
            let u = user_named(tx, &key).await?;
            recovery::start_reset_for(tx, now, &u.id, &s, ttl, StartedBy::Cli).await
        })
        .await?;
    match outcome {
        AdminReset::Started(_) => {
            println!(
                "{}",
                crate::config::MailSettings::link(
                    settings.mail.reset_url.as_deref(),
                    &settings.issuer,
                    "reset-password",
                    secret.expose(),
                )
            );
            eprintln!(
                "one-time link for {username}, valid for {}; give it to the user only",
                humantime::format_duration(settings.mail.reset_ttl.0)
            );
            Ok(())
        }
        AdminReset::NoSuchUser | AdminReset::NoVerifiedEmail => bail!("no such user"),
    }
}

/// Removes a locked-out user's second factor, its recovery codes and pending logins
/// (docs/contract.md "Second factor"); recorded as `mfa_disabled` by an administrator.
/// Every session of theirs ends (reason `mfa_reset`, ASVS v5 7.4.3: the CLI has no
/// current session to keep); their next login needs only the password.
async fn reset_mfa(settings: &Settings, username: String) -> anyhow::Result<()> {
    let clock = SystemClock;
    let store = Store::from_settings(&settings.store, 1, None)?;
    let now = clock.now_millis();
    let key = Username::lookup_key(&username);
    let removed = store
        .write(async move |tx| {
            let u = user_named(tx, &key).await?;
            crate::domain::mfa::reset(tx, now, &u.id).await
        })
        .await?;
    match removed {
        Some(ended) => println!(
            "removed the second factor of {username} and ended {ended} session{}",
            if ended == 1 { "" } else { "s" }
        ),
        None => println!("{username} had no second factor"),
    }
    Ok(())
}

/// The user whose case-insensitive name key is `key`, or a "no such user" error.
pub(super) async fn user_named(tx: &mut dyn Tx, key: &str) -> anyhow::Result<User> {
    tx.user_by_username_key(key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no such user"))
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

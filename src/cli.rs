//! The command line: `latchkey [--config FILE] <command>` (clap; `--config` is global).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::{Algorithm, Settings};
use crate::domain::accounts::{self, SignupOutcome};
use crate::domain::{Password, Username};
use crate::keys;
use crate::store::queries;
use crate::store::Store;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "Token and session service")]
pub struct Cli {
    /// Configuration file (default: latchkey.toml if present)
    #[arg(long, global = true, env = "LATCHKEY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service (the default)
    Serve,
    /// Validate the configuration, keys and database, then exit
    CheckConfig,
    /// Manage users
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage sessions
    #[command(subcommand)]
    Sessions(SessionsCommand),
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users
    List,
    /// Disable a user and end all their sessions
    Disable { username: String },
    /// Delete a user with their sessions, tokens and events (erasure)
    Delete { username: String },
    /// Create a user; the password is read from standard input (or a prompt), never argv
    Add {
        username: String,
        /// A role to grant (repeatable), e.g. --role admin
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List keys with their state
    List,
    /// Generate a key that signs immediately (first key, or emergency replacement)
    Generate {
        #[arg(long, value_parser = parse_alg, default_value = "ES256")]
        alg: Algorithm,
    },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// List a user's active sessions
    List {
        /// Username
        #[arg(long)]
        user: String,
    },
    /// Revoke every session of a user
    Revoke {
        /// Username
        #[arg(long)]
        user: String,
    },
}

fn parse_alg(s: &str) -> Result<Algorithm, String> {
    match s {
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        "RS256" => Ok(Algorithm::RS256),
        _ => Err("one of ES256, EdDSA, RS256".into()),
    }
}

/// Runs the command line; exit code 2 for configuration and startup problems, with one
/// clear line and no backtrace.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("latchkey: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("latchkey: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock = SystemClock;
    match command {
        Command::Serve => {
            let app = crate::Application::build(settings).await?;
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::CheckConfig => {
            crate::AppState::new(settings, Arc::new(clock))?;
            println!("configuration ok");
            Ok(())
        }
        Command::Users(UsersCommand::Add { username, roles }) => {
            let username = Username::parse(&username).map_err(anyhow::Error::msg)?;
            let password = Password::parse(read_password()?).map_err(anyhow::Error::msg)?;
            let hash = crate::passwords::hash_blocking(password.expose())?;
            let store = Store::open(&settings.store.path, 1)?;
            let now = clock.now_millis();
            let outcome = store
                .write(move |conn| accounts::create_user(conn, now, &username, hash, roles))
                .await?;
            match outcome {
                SignupOutcome::Created(u) => {
                    println!("{}", u.id);
                    Ok(())
                }
                SignupOutcome::Taken => bail!("that username is taken"),
            }
        }
        Command::Users(UsersCommand::List) => {
            let store = Store::open(&settings.store.path, 1)?;
            let users = store.read(queries::all_users).await?;
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
        Command::Users(UsersCommand::Disable { username }) => {
            let store = Store::open(&settings.store.path, 1)?;
            let now = clock.now_millis();
            let key = Username::parse(&username)
                .map_err(anyhow::Error::msg)?
                .key();
            store
                .write(move |conn| {
                    let u = user_named(conn, &key)?;
                    accounts::disable_user(conn, now, &u.id, &Default::default())
                })
                .await?;
            println!("disabled {username}");
            Ok(())
        }
        Command::Users(UsersCommand::Delete { username }) => {
            let store = Store::open(&settings.store.path, 1)?;
            let now = clock.now_millis();
            let key = Username::parse(&username)
                .map_err(anyhow::Error::msg)?
                .key();
            store
                .write(move |conn| {
                    let u = user_named(conn, &key)?;
                    accounts::delete_user(conn, now, &u.id)
                })
                .await?;
            println!("deleted {username}");
            Ok(())
        }
        Command::Sessions(SessionsCommand::List { user }) => {
            let store = Store::open(&settings.store.path, 1)?;
            let now = clock.now_millis();
            let key = Username::parse(&user).map_err(anyhow::Error::msg)?.key();
            let list = store
                .read(move |conn| {
                    let u = user_named(conn, &key)?;
                    queries::active_sessions_of_user(conn, &u.id, now)
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
        Command::Keys(KeysCommand::List) => {
            let keys = keys::Keys::load_or_generate(
                &settings.keys.dir,
                settings.keys.algorithm,
                settings.retired_key_grace(),
                clock.now_millis(),
            )?;
            let set = keys.current();
            println!(
                "{:<45} {:<6} {:<8} {:<25} SIGNS FROM",
                "KID", "ALG", "STATE", "CREATED"
            );
            for (e, state) in &set.entries {
                println!(
                    "{:<45} {:<6} {:<8} {:<25} {}",
                    e.kid,
                    e.alg.as_str(),
                    state.as_str(),
                    e.created_at.to_rfc3339(),
                    e.signs_from.to_rfc3339()
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Generate { alg }) => {
            let now = crate::clock::to_datetime(clock.now_millis());
            let mut manifest = keys::read_manifest(&settings.keys.dir)?;
            let entry = keys::generate_key(&settings.keys.dir, alg, now, now)?;
            println!("{}", entry.kid);
            manifest.keys.push(entry);
            keys::write_manifest(&settings.keys.dir, &manifest)?;
            Ok(())
        }
        Command::Sessions(SessionsCommand::Revoke { user }) => {
            let username = Username::parse(&user).map_err(anyhow::Error::msg)?;
            let store = Store::open(&settings.store.path, 1)?;
            let now = clock.now_millis();
            let n = store
                .write(move |conn| {
                    let u = user_named(conn, &username.key())?;
                    crate::domain::sessions::revoke_all_of_user(
                        conn,
                        now,
                        &u.id,
                        None,
                        "admin",
                        &Default::default(),
                    )
                })
                .await?;
            println!("revoked {n} session(s)");
            Ok(())
        }
    }
}

/// The user whose case-insensitive name key is `key`, or a "no such user" error.
fn user_named(conn: &rusqlite::Connection, key: &str) -> anyhow::Result<queries::UserRow> {
    queries::user_by_username_key(conn, key)?.ok_or_else(|| anyhow::anyhow!("no such user"))
}

/// One line from standard input, or a hidden prompt on a terminal.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("password: ").context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

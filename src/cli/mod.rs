//! The command line: `latchkey [--config FILE] <command>` (clap; `--config` is global),
//! as docs/contract.md "Command line" describes it. This module holds the clap
//! definitions and dispatches; each command group has its own file.

mod check_config;
mod keys;
mod serve;
mod sessions;
mod store;
mod users;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::domain::Algorithm;

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
    /// Move the store
    #[command(subcommand)]
    Store(StoreCommand),
    /// Webhook endpoints ([[webhooks.endpoints]])
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Subcommand)]
pub enum WebhooksCommand {
    /// List the endpoints with their deliveries counted by status
    List,
    /// Send one signed `webhook_test` delivery to endpoint ID now (directly, not
    /// through the outbox) and print its answer; fails unless it is 2xx
    Test { id: String },
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy the SQLite store (users, sessions, refresh tokens, events, second factors)
    /// and the keys folder into an empty PostgreSQL database; the keys are sealed under
    /// keys.kek_file. Refuses a database that is not empty
    Copy {
        /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// List users
    List,
    /// Disable a user and end all their sessions
    Disable { username: String },
    /// Delete a user with their sessions, tokens and events (erasure)
    Delete { username: String },
    /// Start a password reset for support staff: prints a one-time reset link
    /// (mail.reset_url, valid for mail.reset_ttl) and records the request as an event
    ResetPassword { username: String },
    /// Remove a locked-out user's second factor (TOTP and recovery codes); recorded as
    /// an event. Their next login needs only the password
    ResetMfa { username: String },
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
    /// List keys: kid, algorithm, state (staged/active/retired/expired), dates; `*` marks
    /// the key that signs now
    List,
    /// Generate a key that signs immediately (the newest active key signs)
    Generate {
        /// ES256, EdDSA or RS256 (default: keys.algorithm)
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Algorithm>,
    },
    /// Stage a new key: published in the JWKS now, signing after keys.publish_ahead; the
    /// keys signing now retire at that moment
    Rotate {
        /// ES256, EdDSA or RS256 (default: keys.algorithm)
        #[arg(long, value_parser = parse_alg)]
        alg: Option<Algorithm>,
        /// Sign with the new key at once (compromised key): verifiers with a cached JWKS
        /// must refetch it on the unknown kid
        #[arg(long)]
        now: bool,
    },
    /// Stop a key signing at once; it stays published until every token it signed has
    /// expired and every cached JWKS has been refetched
    Retire {
        /// Key ids are base64url thumbprints and may start with `-`
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Revoke a compromised key: removed from the JWKS and its tokens refused by every
    /// running instance within keys.reload_interval (SIGHUP: at once)
    Revoke {
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Write a new key-encryption key (32 random bytes, mode 0600) to FILE, for
    /// keys.kek_file. With a database that keeps the keys (PostgreSQL) every key there
    /// is sealed under it; it never enters the database. Refuses an existing FILE
    InitKek {
        /// The file to create (it must not exist)
        file: PathBuf,
    },
    /// Add a PKCS#8 PEM private key (e.g. from `openssl genpkey`) as a rotation would
    Import {
        /// The PEM file
        file: PathBuf,
        /// The key's algorithm: ES256, EdDSA or RS256
        #[arg(long, value_parser = parse_alg)]
        alg: Algorithm,
        /// Sign with it at once instead of after keys.publish_ahead
        #[arg(long)]
        now: bool,
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

/// Runs `f` on a blocking thread and waits for it.
async fn blocking(f: impl FnOnce() -> anyhow::Result<()> + Send + 'static) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(f).await?
}

/// Hands the command to its group's module.
async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve::run(settings).await,
        // Both read key storage, which may block (a database): not on the runtime.
        Command::CheckConfig => blocking(move || check_config::run(settings)).await,
        Command::Users(command) => users::run(command, &settings).await,
        Command::Keys(command) => blocking(move || keys::run(command, &settings)).await,
        Command::Sessions(command) => sessions::run(command, &settings).await,
        Command::Webhooks(command) => webhooks::run(command, &settings).await,
        Command::Store(command) => blocking(move || store::run(command, &settings)).await,
    }
}

//! The command line: `latchkey [--config FILE] <command>` (clap; `--config` is global).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::Algorithm;
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
    /// Measure argon2id hashes per second on all cores, as the login pool runs them
    /// (the ceiling for logins per second; used by bench/run)
    #[command(hide = true)]
    BenchArgon2 {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Measure the store's in-process rotation limit: WALKERS families rotated back to
    /// back through the writer (group commit, synchronous=FULL), no HTTP, in a temporary
    /// database (the ceiling for refreshes per second; used by bench/run)
    #[command(hide = true)]
    BenchStore {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        walkers: usize,
    },
    /// Fill the configured database with live sessions and their tokens, to measure
    /// refresh at scale (bench/scale). Their users' password is "scale passphrase".
    #[command(hide = true)]
    BenchFill {
        #[arg(long)]
        sessions: u64,
        #[arg(long, default_value_t = 10)]
        tokens_per_session: u64,
        #[arg(long, default_value_t = 10)]
        sessions_per_user: u64,
        /// Skip the security events the service would have recorded for each rotation
        #[arg(long)]
        no_events: bool,
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
    Retire { kid: String },
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

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let clock = SystemClock;
    match command {
        Command::Serve => {
            let app = crate::Application::build(settings).await?;
            app.run_until_signalled().await?;
            Ok(())
        }
        Command::CheckConfig => {
            if let Some(tls) = &settings.server.tls {
                crate::startup::load_tls(tls)?;
            }
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
        Command::Keys(cmd) => keys_command(cmd, &settings, clock.now_millis()),
        Command::BenchArgon2 { seconds } => {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
            let started = std::time::Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while std::time::Instant::now() < deadline {
                            if crate::passwords::hash_blocking("bench passphrase for latchkey")
                                .is_ok()
                            {
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
            println!(
                "{:.1} argon2id hashes/s on {threads} threads",
                total as f64 / started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::BenchStore { seconds, walkers } => {
            let rate =
                crate::bench::store_limit(walkers, std::time::Duration::from_secs(seconds)).await?;
            println!("{rate:.0} rotations/s with {walkers} walkers");
            Ok(())
        }
        Command::BenchFill {
            sessions,
            tokens_per_session,
            sessions_per_user,
            no_events,
        } => {
            let hash = crate::passwords::hash_blocking("scale passphrase")?;
            let spec = crate::bench::FillSpec {
                sessions,
                tokens_per_session,
                sessions_per_user,
                events: !no_events,
            };
            let f = crate::bench::fill(&settings.store.path, spec, &hash)?;
            println!(
                "filled {} users, {} sessions, {} tokens, {} events in {:.1} s",
                f.users,
                f.sessions,
                f.tokens,
                f.events,
                f.elapsed.as_secs_f64()
            );
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

fn keys_command(
    cmd: KeysCommand,
    settings: &Settings,
    now: crate::clock::Millis,
) -> anyhow::Result<()> {
    let dir = &settings.keys.dir;
    let now_dt = crate::clock::to_datetime(now);
    let grace = chrono::Duration::from_std(settings.retired_key_grace())?;
    let publish_ahead = chrono::Duration::from_std(settings.publish_ahead().0)?;
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match cmd {
        KeysCommand::List => {
            let keys = keys::Keys::load_or_generate(
                dir,
                settings.keys.algorithm,
                settings.retired_key_grace(),
                now,
            )?;
            let set = keys.current(now);
            println!(
                "  {:<43} {:<6} {:<8} {:<20} {:<20} {:<20} LEAVES JWKS",
                "KID", "ALG", "STATE", "CREATED", "SIGNS FROM", "RETIRES"
            );
            for (e, state) in &set.entries {
                let signing = if e.kid == set.signing.kid { "*" } else { " " };
                println!(
                    "{signing} {:<43} {:<6} {:<8} {:<20} {:<20} {:<20} {}",
                    e.kid,
                    e.alg.as_str(),
                    state.as_str(),
                    at(e.created_at),
                    at(e.signs_from),
                    e.retired_at.map(at).unwrap_or_else(|| "-".into()),
                    e.unpublished_at(grace)
                        .map(at)
                        .unwrap_or_else(|| "-".into()),
                );
            }
            Ok(())
        }
        KeysCommand::Generate { alg } => {
            let entry = keys::generate(dir, alg.unwrap_or(settings.keys.algorithm), now_dt)?;
            println!("{}", entry.kid);
            Ok(())
        }
        KeysCommand::Rotate { alg, now: at_once } => {
            let ahead = if at_once {
                chrono::Duration::zero()
            } else {
                publish_ahead
            };
            let alg = alg.unwrap_or(settings.keys.algorithm);
            let (entry, retiring) = keys::rotate(dir, alg, None, now_dt, ahead)?;
            report_rotation(&entry, &retiring, grace);
            Ok(())
        }
        KeysCommand::Import {
            file,
            alg,
            now: at_once,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let der = keys::pkcs8_from_pem(&text)?;
            let ahead = if at_once {
                chrono::Duration::zero()
            } else {
                publish_ahead
            };
            let (entry, retiring) = keys::rotate(dir, alg, Some(der), now_dt, ahead)?;
            report_rotation(&entry, &retiring, grace);
            Ok(())
        }
        KeysCommand::Retire { kid } => {
            match keys::retire(dir, &kid, now_dt, grace)? {
                keys::Retired::Now(until) => {
                    println!(
                        "{kid} no longer signs; it stays in the JWKS until {}",
                        at(until)
                    )
                }
                keys::Retired::Already(since) => {
                    println!("{kid} was already retired at {}", at(since))
                }
            }
            Ok(())
        }
    }
}

fn report_rotation(entry: &keys::KeyEntry, retiring: &[String], grace: chrono::Duration) {
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    println!("{}", entry.kid);
    eprintln!(
        "published now; signs from {}; {} retire(s) then and leave the JWKS at {}",
        at(entry.signs_from),
        if retiring.is_empty() {
            "no keys".to_owned()
        } else {
            retiring.join(", ")
        },
        at(entry.signs_from + grace)
    );
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

//! `latchkey-bench`: the in-process measurements and the scale generator that
//! `bench/run` and `bench/scale` call. A separate binary, outside the product: it uses
//! only latchkey's public library interface (see `bench/support.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod support;

#[derive(Parser)]
#[command(name = "latchkey-bench", about = "latchkey's benchmark helpers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure argon2id hashes per second on all cores, as the login pool runs them
    /// (the ceiling for logins per second)
    Argon2 {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Measure the store's in-process rotation limit: WALKERS families rotated back to
    /// back through the writer (group commit, synchronous=FULL), no HTTP, in a temporary
    /// database (the ceiling for refreshes per second)
    Store {
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        walkers: usize,
    },
    /// Fill a database with live sessions and their tokens, to measure refresh at scale.
    /// Their users' password is "scale passphrase".
    Fill {
        /// The SQLite file to fill (created if missing)
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        sessions: u64,
        #[arg(long, default_value_t = 10)]
        tokens_per_session: u64,
        #[arg(long, default_value_t = 10)]
        sessions_per_user: u64,
        /// Skip the login events the service would have recorded
        #[arg(long)]
        no_events: bool,
        /// Write the shape of a database from before the located token format (schema
        /// version 5): a hashed token row and a refresh event per generation
        #[arg(long)]
        legacy_tokens: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Argon2 { seconds } => {
            let (rate, threads) = argon2_rate(Duration::from_secs(seconds));
            println!("{rate:.1} argon2id hashes/s on {threads} threads");
        }
        Command::Store { seconds, walkers } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let rate =
                runtime.block_on(support::store_limit(walkers, Duration::from_secs(seconds)))?;
            println!("{rate:.0} rotations/s with {walkers} walkers");
        }
        Command::Fill {
            db,
            sessions,
            tokens_per_session,
            sessions_per_user,
            no_events,
            legacy_tokens,
        } => {
            let hash = latchkey::passwords::hash_blocking("scale passphrase")?;
            let spec = support::FillSpec {
                sessions,
                tokens_per_session,
                sessions_per_user,
                events: !no_events,
                legacy_tokens,
            };
            let f = support::fill(&db, spec, &hash)?;
            println!(
                "filled {} users, {} sessions, {} tokens, {} events in {:.1} s",
                f.users,
                f.sessions,
                f.tokens,
                f.events,
                f.elapsed.as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Hashes per second with one thread per core, and the thread count.
fn argon2_rate(duration: Duration) -> (f64, usize) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    if latchkey::passwords::hash_blocking("bench passphrase for latchkey").is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
    (total as f64 / started.elapsed().as_secs_f64(), threads)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use latchkey::clock::{Clock, SystemClock};
    use latchkey::keys::Sealer;
    use latchkey::store::Store;

    use super::support::*;

    /// The filled database as the service would see it, through the store.
    async fn live_sessions_and_heads(store: &Store) -> (usize, i64) {
        let now = SystemClock.now_millis();
        store
            .read(async move |tx| {
                let mut live = 0;
                let mut max_head = 0;
                for u in tx.all_users().await? {
                    for s in tx.active_sessions_of_user(&u.id, now).await? {
                        live += 1;
                        max_head = max_head.max(s.head_generation);
                        assert!(s.head_issued_at <= now, "a head issued in the future");
                    }
                }
                Ok((live, max_head))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn fill_writes_live_families_the_service_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scale.db");
        let spec = FillSpec {
            sessions: 120,
            tokens_per_session: 5,
            sessions_per_user: 10,
            events: true,
            legacy_tokens: true,
        };
        let filled = fill(&path, spec, "$argon2id$v=19$m=19456,t=2,p=1$x$y").unwrap();
        assert_eq!(
            (filled.users, filled.sessions, filled.tokens, filled.events),
            (12, 120, 600, 600)
        );
        let store = Store::open(&path, 1).unwrap();
        assert_eq!(live_sessions_and_heads(&store).await, (120, 4));
    }

    #[tokio::test]
    async fn fill_issues_every_head_in_the_past_however_many_generations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.db");
        let spec = FillSpec {
            sessions: 3,
            tokens_per_session: 500,
            sessions_per_user: 3,
            events: true,
            legacy_tokens: false,
        };
        let filled = fill(&path, spec, "h").unwrap();
        // The located format stores no token rows and records logins only.
        assert_eq!((filled.tokens, filled.events), (0, 3));
        let store = Store::open(&path, 1).unwrap();
        assert_eq!(live_sessions_and_heads(&store).await, (3, 499));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_process_limit_rotates_every_family_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db"), 1).unwrap();
        let sealer = Arc::new(Sealer::load_or_generate(dir.path()).unwrap());
        let heads = families(&store, sealer.clone(), 4).await.unwrap();
        let rate = rotations_per_second(&store, sealer, heads, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(rate > 0.0);
        let (live, _) = live_sessions_and_heads(&store).await;
        assert_eq!(live, 4);
        let min_head = store
            .read(async |tx| {
                let mut min = i64::MAX;
                for u in tx.all_users().await? {
                    for s in tx
                        .active_sessions_of_user(&u.id, SystemClock.now_millis())
                        .await?
                    {
                        min = min.min(s.head_generation);
                    }
                }
                Ok(min)
            })
            .await
            .unwrap();
        assert!(min_head >= 1, "every walker rotated its own family");
    }

    use std::time::Duration;
}

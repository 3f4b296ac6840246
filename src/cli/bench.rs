//! The hidden `bench-*` commands that `bench/run` and `bench/scale` call (not part of
//! docs/contract.md "Command line"). The measurements themselves live in `crate::bench`.

use crate::config::Settings;

/// `bench-argon2`: argon2id hashes per second on all cores, as the login pool runs them.
pub(super) fn argon2(seconds: u64) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut n = 0u64;
                while std::time::Instant::now() < deadline {
                    if crate::passwords::hash_blocking("bench passphrase for latchkey").is_ok() {
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

/// `bench-store`: the store's in-process rotation limit.
pub(super) async fn store(seconds: u64, walkers: usize) -> anyhow::Result<()> {
    let rate = crate::bench::store_limit(walkers, std::time::Duration::from_secs(seconds)).await?;
    println!("{rate:.0} rotations/s with {walkers} walkers");
    Ok(())
}

/// `bench-fill`: live sessions and their tokens in the configured database.
pub(super) fn fill(settings: &Settings, spec: crate::bench::FillSpec) -> anyhow::Result<()> {
    let hash = crate::passwords::hash_blocking("scale passphrase")?;
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

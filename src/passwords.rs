//! Password hashing with argon2id (OWASP Password Storage: m=19456 KiB, t=2, p=1) on a
//! bounded pool of dedicated threads sized to the cores, so a login flood queues logins
//! instead of starving refreshes or the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    Output, ParamsString, PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::domain::Password;
use crate::pool::{PoolError, WorkerPool};

/// OWASP Password Storage Cheat Sheet, argon2id minimum configuration.
const M_COST_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Each argon2 thread's working memory (19 MiB), allocated once and reused for every
/// hash, so a login flood does not leave the allocator holding a fresh 19 MiB per hash
/// per thread that ever hashed (it kept RSS in the hundreds of MiB).
pub struct Memory(Vec<Block>);

impl Memory {
    pub fn new() -> Self {
        Self(vec![Block::default(); M_COST_KIB as usize])
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

/// How much the argon2 threads yield to the rest of the server (Linux nice, 0–19).
const ARGON2_NICENESS: libc::c_int = 10;

/// Runs on each argon2 thread: the pool has one thread per core, so a login flood
/// would otherwise take every core from refreshes and token checks, which cost
/// microseconds each. At nice 10 the scheduler gives the HTTP workers and the writer
/// about ten times the argon2 threads' share of a busy core; an idle machine still
/// runs argon2 at full speed. Without the right to renice, nothing changes.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and a thread
    // id changes only this thread's nice value (Linux treats thread ids as processes).
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, ARGON2_NICENESS) != 0 {
            tracing::debug!("could not lower the argon2 threads' priority");
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    pool: WorkerPool<Memory>,
    /// Verified against when the user does not exist, so timing does not reveal it.
    dummy_hash: std::sync::Arc<String>,
    /// Accounts with a check queued or running (see [`PasswordHasher::slot`]).
    checking: Arc<Mutex<HashSet<String>>>,
}

/// An account's one place in the argon2 queue; freed when dropped.
pub struct CheckSlot {
    account: String,
    checking: Arc<Mutex<HashSet<String>>>,
}

impl Drop for CheckSlot {
    fn drop(&mut self) {
        self.checking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.account);
    }
}

impl PasswordHasher {
    pub fn start(threads: usize, queue: usize) -> anyhow::Result<Self> {
        // The dummy hash first: its own 19 MiB are returned to the system before the
        // pool's buffers exist, so peak memory is the pool's, not the pool's plus one.
        let dummy = hash_blocking("latchkey dummy password for unknown users")?;
        let memories = (0..threads.max(1)).map(|_| Memory::new()).collect();
        let pool = WorkerPool::start_with("argon2", memories, queue, lower_priority)?;
        Ok(Self {
            pool,
            dummy_hash: std::sync::Arc::new(dummy),
            checking: Arc::default(),
        })
    }

    /// Fair sharing of the queue: at most one password check per account (by name key)
    /// is queued or running at a time. `None` while another one is; the caller answers
    /// 429 at once instead of queueing, so a flood of guesses against one account, or
    /// through one access token, takes one place in the queue however large it is.
    pub fn slot(&self, account: &str) -> Option<CheckSlot> {
        let mut checking = self.checking.lock().unwrap_or_else(|p| p.into_inner());
        checking.insert(account.to_owned()).then(|| CheckSlot {
            account: account.to_owned(),
            checking: self.checking.clone(),
        })
    }

    pub fn queue_depth(&self) -> usize {
        self.pool.queue_depth()
    }

    /// A PHC string `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` with a random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.pool
            .run(move |memory| hash_with(memory, password.expose()))
            .await?
            .map_err(HashError::Failed)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no
    /// user, so both paths cost one argon2 run. Comparison is constant-time (argon2 crate).
    /// An account without a password (made through an identity provider) stores an empty
    /// hash and is checked like a missing user: always wrong, in the same time.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let stored = stored.filter(|h| !h.is_empty());
        let exists = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let ok = self
            .pool
            .run(move |memory| verify_with(memory, password.expose(), &phc))
            .await?;
        Ok(ok && exists)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("hashing failed: {0}")]
    Failed(anyhow::Error),
}

/// Hashes into the thread's preallocated memory; the PHC string is the same as
/// [`hash_blocking`]'s.
fn hash_with(memory: &mut Memory, password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let hasher = argon2();
    hasher
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut memory.0)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(hasher.params())
            .map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("argon2 output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Verifies against a PHC string. Hashes with our parameters run in the thread's
/// memory; anything else (a future parameter change) falls back to the crate's own
/// verifier. The final comparison is `Output`'s constant-time equality.
fn verify_with(memory: &mut Memory, password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ours = Params::try_from(&parsed)
        .is_ok_and(|p| p.m_cost() == M_COST_KIB && p.t_cost() == T_COST && p.p_cost() == P_COST)
        && parsed.algorithm == argon2::ARGON2ID_IDENT
        && parsed.version == Some(Version::V0x13.into());
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    if !ours || expected.len() > 64 {
        return argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = [0u8; 64];
    let out = &mut out[..expected.len()];
    let hasher = match Params::new(M_COST_KIB, T_COST, P_COST, Some(expected.len())) {
        Ok(params) => Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        Err(_) => return false,
    };
    if hasher
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut memory.0)
        .is_err()
    {
        return false;
    }
    Output::new(out).is_ok_and(|computed| computed == expected)
}

pub fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owasp_argon2id_parameters_and_unique_salts() {
        let a = hash_blocking("correct horse").unwrap();
        let b = hash_blocking("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salts must differ");
    }

    #[test]
    fn the_reused_memory_path_is_interchangeable_with_the_crates_own() {
        let mut memory = Memory::new();
        let ours = hash_with(&mut memory, "correct horse battery").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        let theirs = hash_blocking("correct horse battery").unwrap();
        assert!(verify_with(&mut memory, "correct horse battery", &theirs));
        assert!(!verify_with(&mut memory, "correct horse batterY", &theirs));
        assert!(verify_with(&mut memory, "correct horse battery", &ours));
        assert!(!verify_with(
            &mut memory,
            "correct horse battery",
            "not a phc string"
        ));
        // Another cost (an older hash) still verifies, through the crate's own path.
        let weaker = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"old password!", &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string();
        assert!(verify_with(&mut memory, "old password!", &weaker));
        assert!(!verify_with(&mut memory, "old password?", &weaker));
    }

    #[test]
    fn one_check_slot_per_account_at_a_time() {
        let h = PasswordHasher::start(1, 4).unwrap();
        let first = h.slot("alice").expect("free");
        assert!(
            h.slot("alice").is_none(),
            "alice already has a check queued"
        );
        assert!(h.slot("bob").is_some(), "other accounts are not held up");
        drop(first);
        assert!(h.slot("alice").is_some(), "freed when the check ends");
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = PasswordHasher::start(1, 4).unwrap();
        let pw =
            Password::parse_for_login("latchkey dummy password for unknown users".into()).unwrap();
        assert!(!h.verify(pw, None).await.unwrap());
    }
}

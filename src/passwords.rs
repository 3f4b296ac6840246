//! Password hashing with argon2id (OWASP Password Storage: m=19456 KiB, t=2, p=1) on a
//! bounded pool of dedicated threads sized to the cores, so a login flood queues logins
//! instead of starving refreshes or the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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

#[derive(Clone)]
pub struct PasswordHasher {
    pool: WorkerPool<()>,
    /// Verified against when the user does not exist, so timing does not reveal it.
    dummy_hash: std::sync::Arc<String>,
}

impl PasswordHasher {
    pub fn start(threads: usize, queue: usize) -> anyhow::Result<Self> {
        let pool = WorkerPool::start("argon2", vec![(); threads.max(1)], queue)?;
        let dummy = hash_blocking("latchkey dummy password for unknown users")?;
        Ok(Self {
            pool,
            dummy_hash: std::sync::Arc::new(dummy),
        })
    }

    pub fn queue_depth(&self) -> usize {
        self.pool.queue_depth()
    }

    /// A PHC string `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>` with a random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.pool
            .run(move |_| hash_blocking(password.expose()))
            .await?
            .map_err(HashError::Failed)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no
    /// user, so both paths cost one argon2 run. Comparison is constant-time (argon2 crate).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let exists = stored.is_some();
        let phc = stored.unwrap_or_else(|| self.dummy_hash.as_ref().clone());
        let ok = self
            .pool
            .run(move |_| {
                PasswordHash::new(&phc)
                    .map(|parsed| {
                        argon2()
                            .verify_password(password.expose().as_bytes(), &parsed)
                            .is_ok()
                    })
                    .unwrap_or(false)
            })
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

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let h = PasswordHasher::start(1, 4).unwrap();
        let pw =
            Password::parse_for_login("latchkey dummy password for unknown users".into()).unwrap();
        assert!(!h.verify(pw, None).await.unwrap());
    }
}

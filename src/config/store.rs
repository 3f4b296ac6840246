//! `[store]`: where sessions, users and events live. The SQLite file (`store.path`) is
//! the zero-configuration default; `store.url` selects a PostgreSQL database shared by
//! any number of instances (docs/contract.md "Scale-out on PostgreSQL").

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};
use crate::secret::Secret;

const DEFAULT_PATH: &str = "./data/latchkey.db";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// The SQLite file (default `./data/latchkey.db`). Unset unless configured, so that
    /// setting it beside `url` can be refused.
    pub path: Option<PathBuf>,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]`. A secret: it may carry
    /// a password, so it never Debug-prints or serializes back out.
    pub url: Option<Secret<String>>,
    /// SQLite: read-only connections serving reads beside the single writer.
    pub readers: usize,
    /// PostgreSQL: the most connections this instance holds open.
    pub max_connections: usize,
    /// How long a store job may wait for the database, counted from its request's
    /// arrival; a job not started by then is dropped and answered 503
    /// (docs/contract.md "Refresh rotation"). On PostgreSQL also the lock and statement
    /// timeout.
    pub deadline: HumanDuration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            readers: 4,
            max_connections: 16,
            deadline: HumanDuration(crate::store::DEFAULT_DEADLINE),
        }
    }
}

impl StoreSettings {
    /// The SQLite file this configuration names (or the default one).
    pub fn sqlite_path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(DEFAULT_PATH))
    }

    /// The PostgreSQL URL, if one is configured.
    pub fn postgres_url(&self) -> Option<&str> {
        self.url.as_ref().map(|u| u.expose().as_str())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.deadline.0 < std::time::Duration::from_millis(100) {
            return Err(ConfigError("store.deadline must be at least 100ms".into()));
        }
        if let Some(url) = self.postgres_url() {
            if self.path.is_some() {
                return Err(ConfigError(
                    "store.path and store.url are both set: choose the SQLite file or the \
                     PostgreSQL database, not both"
                        .into(),
                ));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError(
                    "store.url must be a postgres:// URL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB)"
                        .into(),
                ));
            }
            if url.parse::<tokio_postgres::Config>().is_err() {
                // The parser's message may quote the URL (and its password): say only where.
                return Err(ConfigError(
                    "store.url is not a valid PostgreSQL URL".into(),
                ));
            }
            if self.max_connections == 0 {
                return Err(ConfigError(
                    "store.max_connections must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }
}

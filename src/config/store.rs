//! `[store]`: the SQLite database.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub path: PathBuf,
    /// Read-only connections serving reads beside the single writer.
    pub readers: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./data/latchkey.db"),
            readers: 4,
        }
    }
}

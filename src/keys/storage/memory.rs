//! [`MemoryBlobs`]: a [`BlobStore`] held in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use super::BlobStore;

/// A [`BlobStore`] in one process's memory: `store copy` seals the keys folder into it
/// before writing the rows into the database, and the keys tests use it as their
/// database.
#[derive(Default)]
pub struct MemoryBlobs {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    lock: Mutex<()>,
}

impl MemoryBlobs {
    /// Every blob, by name (what `store copy` writes into the database).
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<_> = self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort();
        all
    }
}

impl BlobStore for MemoryBlobs {
    fn get(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned())
    }

    fn put(&self, name: &str, sealed: &[u8]) -> anyhow::Result<()> {
        self.blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), sealed.to_vec());
        Ok(())
    }

    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }
}

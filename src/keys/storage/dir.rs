//! [`DirStorage`]: the keys folder, one file per name.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{check_name, KeyStorage, DEVICE_KEY_FILE, SEAL_KEY_FILE};
use crate::keys::atomic_file::write_atomically;

/// The keys folder: one file per name in `dir`.
pub struct DirStorage {
    dir: PathBuf,
}

impl DirStorage {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Files whose mode [`DirStorage::loose_permissions`] checks: private key material.
fn is_private(name: &str) -> bool {
    name.ends_with(".pem") || name == SEAL_KEY_FILE || name == DEVICE_KEY_FILE
}

impl KeyStorage for DirStorage {
    fn describe(&self) -> String {
        format!("keys folder {}", self.dir.display())
    }

    fn locate(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        check_name(name)?;
        let path = self.dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn write(&self, name: &str, bytes: &[u8], private: bool) -> anyhow::Result<()> {
        check_name(name)?;
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_atomically(
            &self.dir.join(name),
            bytes,
            if private { 0o600 } else { 0o644 },
        )
    }

    /// An exclusive `flock` on `dir/.lock`, released when the file closes.
    fn with_lock(&self, f: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let lock_path = self.dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        f()
        // The lock is released when `lock` drops.
    }

    fn loose_permissions(&self) -> Vec<(String, u32)> {
        let mut loose = Vec::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let Ok(entries) = fs::read_dir(&self.dir) else {
                return loose;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !is_private(&name.to_string_lossy()) {
                    continue;
                }
                if let Ok(meta) = entry.metadata() {
                    let mode = meta.permissions().mode() & 0o777;
                    if meta.is_file() && mode & 0o077 != 0 {
                        loose.push((entry.path().display().to_string(), mode));
                    }
                }
            }
            loose.sort();
        }
        loose
    }
}

#[cfg(test)]
mod tests {
    use super::super::locked;
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_folder_keeps_its_file_names_modes_and_lock_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let storage = DirStorage::new(&dir);
        assert_eq!(storage.describe(), format!("keys folder {}", dir.display()));
        locked(&storage, || {
            storage.write("manifest.json", b"{}", false)?;
            storage.write("k.pem", b"pem", true)
        })
        .unwrap();
        let mode = |n: &str| fs::metadata(dir.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("manifest.json"), 0o644);
        assert_eq!(mode("k.pem"), 0o600);
        assert!(dir.join(".lock").exists());
        assert_eq!(fs::read(dir.join("k.pem")).unwrap(), b"pem");
        assert!(storage.loose_permissions().is_empty());
        fs::set_permissions(dir.join("k.pem"), fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            storage.loose_permissions(),
            vec![(dir.join("k.pem").display().to_string(), 0o640)]
        );
    }
}

//! Crash-safe writes for every file in `keys.dir` (manifest, key files, the seal key):
//! a temporary file, synced, then renamed over the target, so a reader never sees half
//! a file. And the 32-byte secret files (`refresh-seal.key`, `device-token.key`).

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to `path` through a `.tmp` sibling and a rename; `mode` applies on Unix.
pub(super) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The 32 random bytes in `dir/name`, made (mode 0600, from the OS CSPRNG) on first use.
pub(super) fn secret_file(dir: &Path, name: &str) -> anyhow::Result<[u8; 32]> {
    use ring::rand::{SecureRandom, SystemRandom};
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let mut b = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut b)
                .map_err(|_| anyhow::anyhow!("CSPRNG failed"))?;
            write_atomically(&path, &b, 0o600)?;
            b
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))
}

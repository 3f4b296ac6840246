//! The key-encryption key (KEK): 32 raw random bytes in `keys.kek_file`, under which
//! `SealedStorage` seals every key it keeps in the database. It is read from its file on
//! each start and by each `latchkey keys` command and is never written anywhere else: a
//! dump of the database without the file yields no key.
//!
//! The file is refused, as ssh refuses a private key file, if group or others may read or
//! write it. `latchkey keys init-kek FILE` makes one (mode 0600, never over an existing
//! file: replacing a KEK would lock every key in the database away).

use std::fmt;
use std::fs;
use std::io::{Read, Write};

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use ring::aead;
use ring::rand::{SecureRandom, SystemRandom};

use crate::secret::Secret;

/// The KEK's length: an AES-256 key.
pub const KEK_LEN: usize = 32;

/// The key-encryption key and the file it came from (for messages). `Debug` never shows
/// the key.
pub struct Kek {
    bytes: Secret<[u8; KEK_LEN]>,
    path: PathBuf,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("path", &self.path)
            .field("key", &self.bytes)
            .finish()
    }
}

impl Kek {
    /// Reads `path` (`keys.kek_file`): exactly 32 bytes, not readable or writable by
    /// group or others.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let mut file = fs::File::open(path)
            .with_context(|| format!("keys.kek_file {shown}: cannot open it"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("keys.kek_file {shown}: cannot read it"))?;
        if !meta.is_file() {
            bail!("keys.kek_file {shown} is not a file");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "keys.kek_file {shown} is accessible by group or others (mode {mode:04o}); \
                     a key-encryption key must be private to latchkey's user: chmod 600 {shown}"
                );
            }
        }
        let mut bytes = Vec::with_capacity(KEK_LEN + 1);
        (&mut file)
            .take(KEK_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("keys.kek_file {shown}: cannot read it"))?;
        let bytes: [u8; KEK_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            anyhow!(
                "keys.kek_file {shown} must hold exactly {KEK_LEN} raw bytes ({}); \
                 `latchkey keys init-kek FILE` writes one",
                if b.len() > KEK_LEN {
                    "it holds more".to_owned()
                } else {
                    format!("it holds {}", b.len())
                }
            )
        })?;
        Ok(Self::from_bytes(bytes, path.to_owned()))
    }

    pub(super) fn from_bytes(bytes: [u8; KEK_LEN], path: PathBuf) -> Self {
        Self {
            bytes: Secret::new(bytes),
            path,
        }
    }

    #[cfg(test)]
    pub(super) fn random_for_tests() -> Self {
        let mut bytes = [0u8; KEK_LEN];
        SystemRandom::new().fill(&mut bytes).unwrap();
        Self::from_bytes(bytes, PathBuf::from("test.kek"))
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn aead_key(&self) -> aead::LessSafeKey {
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, self.bytes.expose())
            .expect("32 bytes are an AES-256 key");
        aead::LessSafeKey::new(unbound)
    }
}

/// `latchkey keys init-kek FILE`: writes 32 bytes from the OS CSPRNG to a new file, mode
/// 0600 from its creation (never briefly wider), synced. Refuses an existing file.
pub fn init_kek_file(path: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; KEK_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow!("CSPRNG failed"))?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; latchkey never overwrites a key-encryption key (the keys \
             sealed under it could no longer be opened)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    let written = file.write_all(&bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let kek = Kek::from_bytes([0xAB; KEK_LEN], PathBuf::from("k"));
        let shown = format!("{kek:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "));
    }

    #[cfg(unix)]
    #[test]
    fn a_kek_file_is_32_private_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("kek");
        init_kek_file(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap().len(), KEK_LEN);
        Kek::load(&path).unwrap();
        let err = init_kek_file(&path).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Kek::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("mode 0640") && err.contains("chmod 600"),
            "{err}"
        );

        let short = tmp.path().join("short");
        fs::write(&short, [1u8; 31]).unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Kek::load(&short).unwrap_err().to_string();
        assert!(err.contains("exactly 32 raw bytes (it holds 31)"), "{err}");
        let long = tmp.path().join("long");
        fs::write(&long, [1u8; 44]).unwrap();
        fs::set_permissions(&long, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Kek::load(&long).unwrap_err().to_string();
        assert!(err.contains("it holds more"), "{err}");

        let err = Kek::load(&tmp.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("keys.kek_file"), "{err:#}");
    }
}

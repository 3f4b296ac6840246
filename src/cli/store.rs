//! `latchkey store copy --to URL` (docs/contract.md "Scale-out on PostgreSQL"): the way
//! from one instance on SQLite to many on PostgreSQL.

use std::sync::Arc;

use anyhow::Context;

use super::StoreCommand;
use crate::config::Settings;
use crate::keys::{self, Kek, KeyStorage, MemoryBlobs, SealedStorage};

pub fn run(command: StoreCommand, settings: &Settings) -> anyhow::Result<()> {
    match command {
        StoreCommand::Copy { to } => copy(settings, &to),
    }
}

fn copy(settings: &Settings, to: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.store.url.is_none(),
        "store copy reads the SQLite store (store.path): unset store.url for this command"
    );
    anyhow::ensure!(
        to.starts_with("postgres://") || to.starts_with("postgresql://"),
        "--to must be a postgres:// URL"
    );
    let kek_file = settings.keys.kek_file.as_deref().context(
        "keys.kek_file is not set: the keys are sealed under it in the database \
         (latchkey keys init-kek FILE writes one)",
    )?;
    let kek = Kek::load(kek_file)?;
    let source = settings.store.sqlite_path();

    // The keys folder's values, sealed under the KEK exactly as the database keeps them.
    let folder = keys::folder_storage(settings);
    let sealed = Arc::new(MemoryBlobs::default());
    let into: &dyn KeyStorage = &SealedStorage::new(kek, sealed.clone());
    let names = keys::copy_all(folder.as_ref(), into)
        .with_context(|| format!("cannot read the keys in {}", folder.describe()))?;
    anyhow::ensure!(
        names.iter().any(|n| n.ends_with(".pem")),
        "no signing key in {}: nothing issued by this store could be verified after the copy",
        folder.describe()
    );

    eprintln!("copying {} into the PostgreSQL database", source.display());
    crate::store::copy::sqlite_to_postgres(source, to, sealed.entries(), &mut |table, n| {
        eprintln!("  {table}: {n} rows");
    })?;
    eprintln!(
        "done: point store.url at the database (and keys.kek_file at the same KEK) on every \
         instance; every token issued before works after"
    );
    Ok(())
}

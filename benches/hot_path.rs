//! In-process limits of the hot path (`cargo bench --bench hot_path`), the ceilings the
//! service figures in BENCHMARKS.md are compared against:
//! - signing one access token, per algorithm (cached ring key pair and header);
//! - one durable rotation: one refresh in its own write batch (one transaction, one
//!   fsync with synchronous=FULL);
//! - a batch of 64 rotations sent together, which the writer commits as one batch.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
#[path = "../bench/support.rs"]
mod support;

use latchkey::domain::Algorithm;
use latchkey::domain::RefreshToken;
use latchkey::keys::{generate_der, Sealer, SigningKey};
use latchkey::store::Store;
use ring::rand::SystemRandom;

fn signing(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let claims = serde_json::json!({
        "iss": "https://auth.example.com", "sub": "5f0c2b8e-6f1d-4b39-9a55-2d1f1c9f4e11",
        "aud": "latchkey", "client_id": "default", "iat": 1_800_000_000, "exp": 1_800_000_900,
        "jti": "0b6f5a9e-1c7d-4c43-8d0e-9f1b2a3c4d5e", "sid": "d4c3b2a1-0f9e-4d8c-b7a6-958473625140",
        "scope": "", "roles": []
    });
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let key = SigningKey::from_pkcs8(None, alg, &generate_der(alg).unwrap()).unwrap();
        c.bench_function(&format!("sign {}", alg.as_str()), |b| {
            b.iter(|| key.sign_jwt(&claims, &rng).unwrap())
        });
    }
}

struct Families {
    store: Store,
    sealer: Arc<Sealer>,
    heads: Vec<RefreshToken>,
    _dir: tempfile::TempDir,
}

fn families(n: usize, rt: &tokio::runtime::Runtime) -> Families {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("bench.db"), 2).unwrap();
    let sealer = Arc::new(Sealer::load_or_generate(dir.path()).unwrap());
    let heads = rt
        .block_on(support::families(&store, sealer.clone(), n))
        .unwrap();
    Families {
        store,
        sealer,
        heads,
        _dir: dir,
    }
}

async fn rotate(store: &Store, sealer: Arc<Sealer>, head: RefreshToken) -> RefreshToken {
    support::rotate(store, sealer, head).await.unwrap()
}

fn rotations(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut one = families(1, &rt);
    c.bench_function("one durable rotation (own batch)", |b| {
        b.iter(|| {
            let head = one.heads.pop().unwrap();
            let next = rt.block_on(rotate(&one.store, one.sealer.clone(), head));
            one.heads.push(next);
        })
    });
    let mut many = families(64, &rt);
    c.bench_function("64 rotations sent together (group commit)", |b| {
        b.iter(|| {
            let heads = std::mem::take(&mut many.heads);
            let (store, sealer) = (many.store.clone(), many.sealer.clone());
            many.heads = rt.block_on(async move {
                let tasks: Vec<_> = heads
                    .into_iter()
                    .map(|h| {
                        let (store, sealer) = (store.clone(), sealer.clone());
                        tokio::spawn(async move { rotate(&store, sealer, h).await })
                    })
                    .collect();
                let mut next = Vec::new();
                for t in tasks {
                    next.push(t.await.unwrap());
                }
                next
            });
        })
    });
}

criterion_group!(benches, signing, rotations);
criterion_main!(benches);

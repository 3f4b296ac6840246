//! The issuer's keys (RFC 7517): fetched at start, refetched when `Cache-Control:
//! max-age` runs out and on an unknown `kid` (one fetch at a time, at most one per
//! `min_refetch_interval`). A failed fetch keeps the keys already held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::lock;

pub struct Key {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

pub struct KeyCache {
    http: reqwest::Client,
    uri: String,
    min_refetch: Duration,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    max_age: Mutex<Duration>,
    /// When the last fetch started: the single flight and the rate limit.
    last_fetch: tokio::sync::Mutex<Instant>,
}

impl KeyCache {
    pub async fn fetch(
        http: reqwest::Client,
        uri: String,
        min_refetch: Duration,
    ) -> Result<Self, String> {
        let (keys, max_age) = load(&http, &uri).await?;
        Ok(Self {
            http,
            uri,
            min_refetch,
            keys: RwLock::new(Arc::new(keys)),
            max_age: Mutex::new(max_age),
            last_fetch: tokio::sync::Mutex::new(Instant::now()),
        })
    }

    fn get(&self, kid: &str) -> Option<Arc<Key>> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned()
    }

    /// The key named `kid`, refetching the set once if it is unknown and the last
    /// fetch is older than the minimum interval.
    pub async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        if let Some(k) = self.get(kid) {
            return Some(k);
        }
        let mut last = self.last_fetch.lock().await;
        // Another caller may have fetched while this one waited.
        if let Some(k) = self.get(kid) {
            return Some(k);
        }
        if last.elapsed() < self.min_refetch {
            return None;
        }
        *last = Instant::now();
        self.reload().await;
        self.get(kid)
    }

    async fn reload(&self) -> bool {
        match load(&self.http, &self.uri).await {
            Ok((keys, max_age)) => {
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                *lock(&self.max_age) = max_age;
                true
            }
            Err(_) => false,
        }
    }
}

/// Refetches the set when its `max-age` has passed (at least every hour, at most every
/// ten seconds), so rotated and revoked keys are seen without an unknown `kid`.
pub fn spawn_refresher(cache: Arc<KeyCache>) {
    let weak = Arc::downgrade(&cache);
    drop(cache);
    tokio::spawn(async move {
        loop {
            let wait = match weak.upgrade() {
                Some(c) => {
                    (*lock(&c.max_age)).clamp(Duration::from_secs(10), Duration::from_secs(3600))
                }
                None => return,
            };
            tokio::time::sleep(wait).await;
            let Some(c) = weak.upgrade() else { return };
            let mut last = c.last_fetch.lock().await;
            *last = Instant::now();
            c.reload().await;
        }
    });
}

async fn load(
    http: &reqwest::Client,
    uri: &str,
) -> Result<(HashMap<String, Arc<Key>>, Duration), String> {
    let res = http
        .get(uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let max_age = res
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age)
        .unwrap_or(Duration::from_secs(300));
    let set: JwkSet = res.json().await.map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    for jwk in set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        // The key's own `alg` fixes the algorithm; keys without one are not used.
        let alg = match jwk.common.key_algorithm {
            Some(KeyAlgorithm::ES256) => Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
            Some(KeyAlgorithm::RS256) => Algorithm::RS256,
            _ => continue,
        };
        if let Ok(decoding) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, Arc::new(Key { alg, decoding }));
        }
    }
    Ok((keys, max_age))
}

/// `max-age=N` from a Cache-Control value.
pub fn max_age(v: &str) -> Option<Duration> {
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

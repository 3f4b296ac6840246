//! The application state every request handler and use-case may use: built once at
//! start, shared by reference. Its own module so that `service` and `routes` depend on
//! it without depending on the wiring in `startup` (which depends on them).

use std::sync::Arc;

use anyhow::Context;
use ring::rand::SystemRandom;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::domain::throttle::{LoginThrottle, ThrottleConfig};
use crate::feed::RevocationFeed;
use crate::keys::{DeviceKey, KeyStorage, Keys, Sealer};
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;
use crate::ratelimit::RateLimits;
use crate::store::Store;
use crate::tokens::TokenService;
use crate::webhooks::Webhooks;

/// Everything a request handler may use. Built once, shared by reference.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub keys: Arc<Keys>,
    /// Where the keys live: the keys folder, or sealed in the database
    /// (`keys::storage_for`). Its calls may block: run them on a blocking thread.
    pub key_storage: Arc<dyn KeyStorage>,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub sealer: Arc<Sealer>,
    /// Signs and checks device tokens (login throttling's trusted clients).
    pub devices: Arc<DeviceKey>,
    pub clock: SharedClock,
    pub rng: Arc<SystemRandom>,
    pub throttle: LoginThrottle,
    pub limits: RateLimits,
    /// Outgoing mail (account recovery): a bounded queue, delivered in the background.
    pub mailer: Arc<crate::mail::Mailer>,
    /// The revocation feed for offline verifiers (`/revocations`).
    pub feed: Arc<RevocationFeed>,
    /// The WebAuthn relying party (`[passkeys]`); `None` when passkeys are off.
    pub passkeys: Option<Arc<webauthn_rs::Webauthn>>,
    /// The webhook sender's shared half (`crate::webhooks`).
    pub webhooks: Arc<Webhooks>,
    /// Identity providers: discovery cache and the OpenID Connect exchanges.
    pub providers: Arc<crate::idp::Providers>,
}

impl AppState {
    /// Opens the store and loads the keys: it blocks (file and database reads), so
    /// async code runs it on a blocking thread (`Application::build` does).
    pub fn new(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
        let feed = Arc::new(RevocationFeed::new(settings.revocation_horizon()));
        let webhooks = Arc::new(Webhooks::new(&settings.webhooks)?);
        let store = Store::from_settings(
            &settings.store,
            settings.store.readers,
            Some(Arc::new(crate::store::Observers(vec![
                metrics.clone() as Arc<dyn crate::store::StoreObserver>,
                feed.clone() as Arc<dyn crate::store::StoreObserver>,
                webhooks.clone() as Arc<dyn crate::store::StoreObserver>,
            ]))),
        )?;
        let key_storage = crate::keys::storage_for(&settings, &store)?;
        let keys = Arc::new(
            Keys::open(
                key_storage.clone(),
                settings.keys.algorithm,
                settings.retired_key_grace(),
                clock.now_millis(),
            )
            .with_context(|| format!("cannot load signing keys from {}", key_storage.describe()))?,
        );
        let sealer = Arc::new(
            Sealer::from_storage(key_storage.as_ref())
                .context("cannot load the refresh seal key")?,
        );
        let devices = Arc::new(
            DeviceKey::from_storage(key_storage.as_ref())
                .context("cannot load the device token key")?,
        );
        let tokens = TokenService::new(
            settings.issuer.clone(),
            settings.issued_audiences(),
            i64::try_from(settings.access_token.leeway.as_secs()).unwrap_or(30),
            keys.clone(),
            clock.clone(),
        );
        let l = &settings.login;
        let throttle = LoginThrottle::new(ThrottleConfig {
            per_account_per_hour: l.max_failures_per_account_per_hour,
            per_ip_per_hour: l.max_failures_per_ip_per_hour,
            free_failures: l.failures_before_delay,
            base_delay: l.first_delay.0,
            max_delay: l.max_delay.0,
        });
        let limits = RateLimits::new(&settings.rate_limits, clock.clone());
        let mailer = Arc::new(crate::mail::Mailer::new(&settings.mail, metrics.clone())?);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hasher = PasswordHasher::start(cores, 256 * cores)?;
        let passkeys = relying_party(&settings)
            .context("cannot set up the passkeys relying party")?
            .map(Arc::new);
        let providers = Arc::new(crate::idp::Providers::new(&settings, clock.clone())?);
        Ok(Self {
            settings,
            metrics,
            store,
            keys,
            key_storage,
            tokens,
            hasher,
            sealer,
            devices,
            clock,
            rng: Arc::new(SystemRandom::new()),
            throttle,
            limits,
            mailer,
            feed,
            passkeys,
            webhooks,
            providers,
        })
    }

    pub fn now(&self) -> crate::clock::Millis {
        self.clock.now_millis()
    }
}

/// The WebAuthn relying party `[passkeys]` describes, or `None` when passkeys are off.
fn relying_party(settings: &Settings) -> anyhow::Result<Option<webauthn_rs::Webauthn>> {
    let Some(rp) = settings.relying_party()? else {
        return Ok(None);
    };
    let (first, rest) = rp
        .origins
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("passkeys.origins is empty"))?;
    let mut builder = webauthn_rs::WebauthnBuilder::new(&rp.rp_id, first)?.rp_name(&rp.rp_name);
    for origin in rest {
        builder = builder.append_allowed_origin(origin);
    }
    Ok(Some(builder.build()?))
}

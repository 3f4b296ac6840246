//! Wiring: opens the store, loads keys, starts pools, binds the listener.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context;
use ring::rand::SystemRandom;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::keys::{Keys, Sealer};
use crate::passwords::PasswordHasher;
use crate::routes;
use crate::store::Store;
use crate::tokens::TokenService;

/// Everything a request handler may use. Built once, shared by reference.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub sealer: Arc<Sealer>,
    pub clock: SharedClock,
    pub rng: Arc<SystemRandom>,
}

impl AppState {
    pub fn new(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let store = Store::open(&settings.store.path, settings.store.readers)?;
        let keys = Arc::new(
            Keys::load_or_generate(
                &settings.keys.dir,
                settings.keys.algorithm,
                settings.retired_key_grace(),
                clock.now_millis(),
            )
            .with_context(|| {
                format!(
                    "cannot load signing keys from {}",
                    settings.keys.dir.display()
                )
            })?,
        );
        let sealer = Arc::new(
            Sealer::load_or_generate(&settings.keys.dir)
                .context("cannot load the refresh seal key")?,
        );
        let audiences: HashSet<String> = settings
            .clients
            .iter()
            .map(|c| c.audience.clone())
            .collect();
        let tokens = TokenService::new(
            settings.issuer.clone(),
            audiences,
            i64::try_from(settings.access_token.leeway.as_secs()).unwrap_or(30),
            keys.clone(),
            clock.clone(),
        );
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hasher = PasswordHasher::start(cores, 256 * cores)?;
        Ok(Self {
            settings,
            store,
            keys,
            tokens,
            hasher,
            sealer,
            clock,
            rng: Arc::new(SystemRandom::new()),
        })
    }

    pub fn now(&self) -> crate::clock::Millis {
        self.clock.now_millis()
    }
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Binds `server.bind` (port 0 picks a free port, as the tests do).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let addr = settings.bind_addr()?;
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let state = web::Data::new(AppState::new(settings, clock)?);
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            let body_limit = app_state.settings.server.body_limit;
            App::new()
                .app_data(app_state.clone())
                .app_data(routes::extract::json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(routes::extract::query_config())
                .app_data(routes::extract::path_config())
                .wrap(routes::security_headers())
                .wrap(middleware::from_fn(routes::log_request))
                .configure(|cfg| routes::table().register(cfg))
                .default_service(web::to(routes::no_such_endpoint))
        })
        .workers(workers)
        .listen(listener)?
        .run();
        crate::housekeeping::spawn(state.clone());
        crate::housekeeping::spawn_key_reloader(state.clone());
        tracing::info!(%addr, port, "latchkey listening");
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

//! Wiring: opens the store, loads keys, starts pools, binds the listener.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context;
use ring::rand::SystemRandom;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Settings, TlsSettings};
use crate::domain::throttle::{LoginThrottle, ThrottleConfig};
use crate::feed::RevocationFeed;
use crate::keys::{Keys, Sealer};
use crate::metrics::Metrics;
use crate::passwords::PasswordHasher;
use crate::ratelimit::RateLimits;
use crate::routes;
use crate::store::Store;
use crate::tokens::TokenService;

/// Everything a request handler may use. Built once, shared by reference.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub keys: Arc<Keys>,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub sealer: Arc<Sealer>,
    pub clock: SharedClock,
    pub rng: Arc<SystemRandom>,
    pub throttle: LoginThrottle,
    pub limits: RateLimits,
    pub feed: Arc<RevocationFeed>,
}

impl AppState {
    pub fn new(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
        let feed = Arc::new(RevocationFeed::new(settings.revocation_horizon()));
        let store = Store::open_observed(
            &settings.store.path,
            settings.store.readers,
            Some(Arc::new(crate::store::Observers(vec![
                metrics.clone() as Arc<dyn crate::store::StoreObserver>,
                feed.clone() as Arc<dyn crate::store::StoreObserver>,
            ]))),
        )?;
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
        let l = &settings.login;
        let throttle = LoginThrottle::new(ThrottleConfig {
            per_account_per_hour: l.max_failures_per_account_per_hour,
            per_ip_per_hour: l.max_failures_per_ip_per_hour,
            free_failures: l.failures_before_delay,
            base_delay: l.first_delay.0,
            max_delay: l.max_delay.0,
        });
        let limits = RateLimits::new(&settings.rate_limits, clock.clone());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hasher = PasswordHasher::start(cores, 256 * cores)?;
        Ok(Self {
            settings,
            metrics,
            store,
            keys,
            tokens,
            hasher,
            sealer,
            clock,
            rng: Arc::new(SystemRandom::new()),
            throttle,
            limits,
            feed,
        })
    }

    pub fn now(&self) -> crate::clock::Millis {
        self.clock.now_millis()
    }
}

/// See [`Application::stop_handle`].
pub struct StopHandle {
    server: actix_web::dev::ServerHandle,
    feed: Arc<RevocationFeed>,
}

impl StopHandle {
    /// Ends the revocation streams, stops accepting connections and waits for the
    /// requests in flight.
    pub async fn stop(self) {
        self.feed.close();
        self.server.stop(true).await;
    }
}

pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    admin: Option<Server>,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Binds `server.bind` (port 0 picks a free port, as the tests do), and
    /// `server.metrics_bind` when set. Signals are not handled here (see
    /// [`Application::run_until_signalled`]), so tests can run many apps in one process.
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let addr = settings.bind_addr()?;
        let metrics_addr = settings.metrics_addr()?;
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let tls = settings.server.tls.as_ref().map(load_tls).transpose()?;
        warn_if_issuer_is_not_https(&settings, addr);
        let shutdown_timeout = settings.server.shutdown_timeout.as_secs();
        let client_timeout = settings.server.client_timeout.0;
        let state = web::Data::new(AppState::new(settings, clock)?);
        // The feed holds every revocation inside the horizon before the first request.
        state
            .feed
            .catch_up(&state.store, state.now())
            .await
            .context("cannot read the revocation log")?;
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let hsts = tls.is_some();
        let server = HttpServer::new(move || {
            let body_limit = app_state.settings.server.body_limit;
            App::new()
                .app_data(app_state.clone())
                .app_data(routes::extract::json_config(body_limit))
                .app_data(web::PayloadConfig::new(body_limit))
                .app_data(routes::extract::query_config())
                .app_data(routes::extract::path_config())
                .wrap(middleware::from_fn(routes::limit_headers))
                .wrap(routes::security_headers(hsts))
                .wrap(routes::cors(&app_state))
                .wrap(middleware::from_fn(routes::log_request))
                .configure(|cfg| routes::table().register(cfg))
                .default_service(web::to(routes::no_such_endpoint))
        })
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        .client_request_timeout(client_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .disable_signals();
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();

        let (admin, metrics_port) = match metrics_addr {
            Some(maddr) => {
                let l = TcpListener::bind(maddr)
                    .with_context(|| format!("cannot listen on {maddr} (server.metrics_bind)"))?;
                let mport = l.local_addr()?.port();
                let admin_state = state.clone();
                let admin = HttpServer::new(move || {
                    App::new()
                        .app_data(admin_state.clone())
                        .app_data(routes::metrics::AdminListener)
                        .wrap(routes::security_headers(false))
                        .configure(routes::metrics::admin_routes)
                        .default_service(web::to(routes::no_such_endpoint))
                })
                .workers(1)
                .shutdown_timeout(shutdown_timeout)
                .disable_signals()
                .listen(l)?
                .run();
                (Some(admin), Some(mport))
            }
            None => (None, None),
        };
        crate::housekeeping::spawn(state.clone());
        crate::housekeeping::spawn_key_reloader(state.clone());
        crate::feed::spawn_follower(state.feed.clone(), state.store.clone(), state.clock.clone());
        tracing::info!(%addr, port, tls = hsts, metrics_port, "latchkey listening");
        Ok(Self {
            port,
            metrics_port,
            server,
            admin,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin listener's port, when `server.metrics_bind` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Stops this server from elsewhere (tests, embedders), as a signal would.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            feed: self.state.feed.clone(),
        }
    }

    /// Serves until the server is stopped, then lets the writer commit what is queued.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let admin_handle = self.admin.as_ref().map(|a| a.handle());
        if let Some(admin) = self.admin {
            tokio::spawn(admin);
        }
        let result = self.server.await;
        if let Some(h) = admin_handle {
            h.stop(true).await;
        }
        if let Err(e) = self.state.store.flush().await {
            tracing::error!(error = %e, "could not flush the store at shutdown");
        }
        result
    }

    /// `latchkey serve`: on SIGTERM or SIGINT, stop accepting connections, let in-flight
    /// requests finish (up to `server.shutdown_timeout`), flush the writer, return.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let feed = self.state.feed.clone();
        tokio::spawn(async move {
            wait_for_termination().await;
            tracing::info!("shutting down: finishing in-flight requests");
            // Revocation streams never finish by themselves: end them, and their
            // clients reconnect (with Last-Event-ID) to another instance or to this one
            // once it is back.
            feed.close();
            handle.stop(true).await;
        });
        let result = self.run_until_stopped().await;
        tracing::info!("stopped");
        result
    }
}

#[cfg(unix)]
async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn wait_for_termination() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Reads `server.tls.cert` and `server.tls.key` into a rustls config (ring provider).
pub fn load_tls(tls: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "server.tls.cert {}: cannot read a PEM certificate chain: {e}",
                tls.cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "server.tls.cert {} holds no certificate",
            tls.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        anyhow::anyhow!(
            "server.tls.key {}: cannot read a PEM private key: {e}",
            tls.key.display()
        )
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls: the certificate and key do not form a usable pair")
}

/// RFC 8414 §2 (docs/contract.md "Standards checklist" #34): the issuer is https in production. Plain http is fine
/// on loopback (development) and is refused by nobody, so say so loudly.
fn warn_if_issuer_is_not_https(settings: &Settings, addr: std::net::SocketAddr) {
    if !settings.issuer.starts_with("https://") && !addr.ip().is_loopback() {
        tracing::warn!(
            issuer = %settings.issuer,
            bind = %addr,
            "the issuer is not an https URL but latchkey listens beyond loopback: \
             tokens and metadata will name an insecure issuer; set `issuer` to the public \
             https URL (TLS at a proxy or server.tls)"
        );
    }
}

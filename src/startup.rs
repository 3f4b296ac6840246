//! Wiring: builds the application state, binds the listeners, starts the background
//! tasks.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use anyhow::Context;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Settings, TlsSettings};
use crate::feed::RevocationFeed;
use crate::routes;
pub use crate::state::AppState;
use crate::webhooks::Webhooks;

/// See [`Application::stop_handle`].
pub struct StopHandle {
    server: actix_web::dev::ServerHandle,
    feed: Arc<RevocationFeed>,
    webhooks: Arc<Webhooks>,
}

impl StopHandle {
    /// Ends the revocation streams, stops accepting connections and waits for the
    /// requests in flight.
    pub async fn stop(self) {
        self.feed.close();
        self.webhooks.close();
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
        warn_if_metrics_are_public(&settings, addr);
        let shutdown_timeout = settings.server.shutdown_timeout.as_secs();
        let client_timeout = settings.server.client_timeout.0;
        // Opening the store and loading the keys block (files, or database round
        // trips for keys kept there): not on an async worker.
        let state = tokio::task::spawn_blocking(move || {
            let state = AppState::new(settings, clock)?;
            for (path, mode) in state.key_storage.loose_permissions() {
                tracing::warn!(
                    path = %path,
                    mode = format!("{mode:04o}"),
                    "a private key file is readable by group or others; chmod 600 it"
                );
            }
            anyhow::Ok(state)
        })
        .await
        .context("loading the application state failed")??;
        let state = web::Data::new(state);
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
                .wrap(middleware::from_fn(routes::body_deadline))
                .wrap(middleware::from_fn(routes::limit_headers))
                .wrap(routes::security_headers(hsts))
                .wrap(routes::cors(&app_state))
                .wrap(middleware::from_fn(routes::response_hygiene))
                .wrap(middleware::from_fn(routes::log_request))
                .configure(|cfg| routes::table().register(cfg))
                .default_service(web::to(routes::no_such_endpoint))
        })
        .workers(workers)
        .shutdown_timeout(shutdown_timeout)
        .client_request_timeout(client_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        // A client that closes its connection ends its response at once: a revocation
        // stream's slot is given back then, not at the stream's next write (a heartbeat,
        // up to 15 s later; docs/contract.md "Revocation feed"). HTTP/1.1 clients do not
        // half-close a connection and still wait for the answer.
        .h1_allow_half_closed(false)
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
        state.mailer.spawn_worker(addr.ip().is_loopback())?;
        crate::housekeeping::spawn(state.clone());
        crate::housekeeping::spawn_key_reloader(state.clone());
        crate::feed::spawn_follower(state.feed.clone(), state.store.clone(), state.clock.clone());
        // The configured endpoints replace the stored ones before the sender starts.
        let rows = state.webhooks.endpoint_rows();
        state
            .store
            .write(async move |tx| tx.sync_webhook_endpoints(&rows).await)
            .await
            .context("cannot store the webhook endpoints")?;
        // No endpoint, no sender: nothing polls the store for a feature not in use.
        if !state.settings.webhooks.endpoints.is_empty() {
            crate::webhooks::spawn_sender(
                state.webhooks.clone(),
                state.store.clone(),
                state.clock.clone(),
                state.metrics.clone(),
            );
        }
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
            webhooks: self.state.webhooks.clone(),
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
        let webhooks = self.state.webhooks.clone();
        tokio::spawn(async move {
            wait_for_termination().await;
            tracing::info!("shutting down: finishing in-flight requests");
            // Revocation streams never finish by themselves: end them, and their
            // clients reconnect (with Last-Event-ID) to another instance or to this one
            // once it is back.
            feed.close();
            webhooks.close();
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

/// `/metrics` on the main listener tells anyone who can reach it request counts, login
/// outcomes and session numbers: fine on loopback, worth a warning anywhere else.
fn warn_if_metrics_are_public(settings: &Settings, addr: std::net::SocketAddr) {
    if settings.server.metrics_bind.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            bind = %addr,
            "GET /metrics is served on the main listener: anyone who can reach it sees \
             request, login and session counts; set server.metrics_bind (e.g. \
             \"127.0.0.1:9090\") to serve /metrics, /healthz and /readyz on a separate \
             address, and block /metrics at the proxy"
        );
    }
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

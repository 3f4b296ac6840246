//! `[server]`: listening addresses, TLS, request limits and timeouts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, HumanDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub body_limit: usize,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Peers whose `X-Forwarded-For` is believed: addresses (`10.0.0.10`, `fd00::10`)
    /// or CIDR ranges (`10.0.0.0/8`).
    #[serde(deserialize_with = "addresses_or_ranges")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header the trusted proxies set. Only that one is read: a proxy that sets
    /// one passes the other through from the client untouched.
    pub forwarded_header: ForwardedHeader,
    /// Serve `/metrics` (and `/healthz`, `/readyz`) on this separate address instead of
    /// the main one, e.g. `127.0.0.1:9090` for a scraper on the host only.
    pub metrics_bind: Option<String>,
    /// Serve HTTPS directly (rustls) with this certificate chain and key (PEM).
    pub tls: Option<TlsSettings>,
    /// On SIGTERM/SIGINT: how long in-flight requests may take to finish.
    pub shutdown_timeout: HumanDuration,
    /// How long a client has to send a request's head, and then its body (slow clients
    /// get 408 and are disconnected).
    pub client_timeout: HumanDuration,
}

/// The header that carries the client's address through `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (the de facto standard; nginx, Caddy).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, …` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `trusted_proxies`: each entry a CIDR range, or a bare address taken as the range of
/// that one address (`/32`, `/128`), as docs/haproxy.cfg writes the balancer.
fn addresses_or_ranges<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_address_or_range(s).map_err(serde::de::Error::custom))
        .collect()
}

fn parse_address_or_range(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            body_limit: 16 * 1024,
            workers: 0,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            metrics_bind: None,
            tls: None,
            shutdown_timeout: HumanDuration::secs(30),
            client_timeout: HumanDuration::secs(5),
        }
    }
}

impl ServerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.bind_addr()?;
        self.metrics_addr()?;
        if self.client_timeout.0 < Duration::from_secs(1) {
            return Err(ConfigError(
                "server.client_timeout must be at least 1s (actix measures it with a clock refreshed every 500 ms)".into(),
            ));
        }
        if self.body_limit < 1024 {
            return Err(ConfigError(
                "server.body_limit must be at least 1024 bytes".into(),
            ));
        }
        Ok(())
    }

    /// `bind` as an address (behind [`super::Settings::bind_addr`]).
    pub(super) fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.bind.parse().map_err(|_| {
            ConfigError(format!(
                "server.bind {:?} is not an address like 127.0.0.1:8080",
                self.bind
            ))
        })
    }

    /// `metrics_bind` as an address (behind [`super::Settings::metrics_addr`]).
    pub(super) fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        self.metrics_bind
            .as_deref()
            .map(|b| {
                b.parse().map_err(|_| {
                    ConfigError(format!(
                        "server.metrics_bind {b:?} is not an address like 127.0.0.1:9090"
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_list: &str) -> Result<Vec<String>, String> {
        let text = format!("trusted_proxies = {toml_list}");
        figment::Figment::from(figment::providers::Serialized::defaults(
            ServerSettings::default(),
        ))
        .merge(<figment::providers::Toml as figment::providers::Format>::string(&text))
        .extract::<ServerSettings>()
        .map(|s| s.trusted_proxies.iter().map(|n| n.to_string()).collect())
        .map_err(|e| e.to_string())
    }

    #[test]
    fn trusted_proxies_are_bare_addresses_v4_and_v6_or_cidr_ranges() {
        assert_eq!(
            parse(r#"["10.0.0.10", "fd00::10", " 10.1.0.0/16", "2001:db8::/32"]"#).unwrap(),
            vec![
                "10.0.0.10/32",
                "fd00::10/128",
                "10.1.0.0/16",
                "2001:db8::/32"
            ]
        );
        for bad in [
            r#"["10.0.0.300"]"#,
            r#"["proxy.internal"]"#,
            r#"["10.0.0.0/33"]"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("trusted_proxies"), "{e}");
            assert!(e.contains("is not an IP address or CIDR range"), "{e}");
        }
    }
}

//! latchkey: a token and session service. Short-lived access JWTs verified offline via
//! JWKS; refresh tokens in rotating, reuse-detecting families stored in SQLite.

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod housekeeping;
pub mod html;
pub mod idp;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod passwords;
pub mod pool;
pub mod ratelimit;
pub mod routes;
pub mod secret;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use startup::{AppState, Application};

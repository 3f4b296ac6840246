//! All integration tests in one binary, so the crate links once. Every test drives the
//! real server over HTTP on a random port with its own temporary database.

mod db;
mod fake_idp;
mod helpers;
mod mail_sink;

mod abuse;
mod audiences;
mod browser;
mod cluster;
mod crash;
mod federation;
mod federation_attacks;
mod federation_oidc_provider;
mod forged;
mod hardening;
mod health;
mod ids;
mod interop;
mod js_client;
mod keys;
mod login;
mod login_hardening;
mod me;
mod mfa;
mod model;
mod openapi;
mod operations;
mod readme;
mod recovery;
mod refresh;
mod revocations;
mod revoke;
mod schemathesis;
mod sessions;
mod signup;
mod spa;
mod spa_mfa;
mod spa_recovery;
mod stall;
mod stepup;
mod store_conformance;
mod store_copy;
mod verifiers;
mod wellknown;

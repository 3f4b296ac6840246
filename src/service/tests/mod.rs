//! Use-case tests without HTTP: the whole state on a temporary SQLite store, with a
//! manual clock the tests move instead of sleeping.

mod login;
mod mfa;
mod recovery;
mod refresh;
mod revoke;

use std::sync::Arc;
use std::time::Duration;

use super::auth::Authenticated;
use super::issue::{Issued, Issuing};
use super::login::{Credentials, Origin};
use super::{accounts, Error};
use crate::clock::{Clock, ManualClock};
use crate::config::Settings;
use crate::domain::model::{ClientContext, User};
use crate::domain::Username;
use crate::state::AppState;

pub struct Fixture {
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// The default settings on a fresh store and keys folder, changed by `configure`.
    pub fn with(configure: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut settings = Settings::default();
        settings.store.path = Some(dir.path().join("latchkey.db"));
        settings.keys.dir = dir.path().join("keys");
        configure(&mut settings);
        let clock = Arc::new(ManualClock::starting_now());
        let state = AppState::new(settings, clock.clone()).expect("the state opens");
        Self {
            state,
            clock,
            _dir: dir,
        }
    }

    pub fn issuing(&self) -> Issuing<'_> {
        Issuing::of(&self.state)
    }

    pub fn now(&self) -> crate::clock::Millis {
        self.clock.now_millis()
    }

    pub fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A new account, as `latchkey users add` makes one.
    pub async fn user(&self, name: &str, password: &str) -> User {
        let hash = crate::passwords::hash_blocking(password).expect("a hash");
        let username = Username::parse(name).expect("a valid name");
        accounts::create_user(&self.state.store, self.now(), username, hash, Vec::new())
            .await
            .expect("the account is created")
    }

    pub async fn authenticate(&self, bearer: &str) -> Result<Authenticated, Error> {
        let s = &self.state;
        super::auth::authenticate(&s.tokens, &s.store, self.now(), bearer).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<Issued, Error> {
        self.login_with(name, password, None).await
    }

    pub async fn login_with(
        &self,
        name: &str,
        password: &str,
        device_token: Option<String>,
    ) -> Result<Issued, Error> {
        let credentials = Credentials {
            username: name.to_owned(),
            password: password.to_owned(),
            client_id: None,
            remember_me: None,
            scope: None,
            resource: Vec::new(),
            device_token,
            browser: false,
        };
        super::login::login(&self.issuing(), credentials, origin()).await
    }
}

/// A request from nowhere in particular (no address: only the account is throttled).
pub fn origin() -> Origin {
    Origin {
        ctx: ClientContext::default(),
        ip: None,
    }
}

//! [`SqliteTx`]: the domain's `Tx` port over one SQLite connection, inside the writer's
//! batch transaction (writes) or on a read-only connection (reads). Each method is one
//! of the per-table statements; SQLite answers synchronously, so every future here is
//! ready when first polled (see `run_now`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use rusqlite::Connection;

use super::{account_tokens, emails, events, mfa, revocations, sessions, tokens, users};
use crate::clock::Millis;
use crate::domain::model::{
    AccountToken, Event, EventQuery, MfaFactor, NewEvent, PendingLogin, Revocation, Session,
    StoredToken, TokenPurpose, User, UserEmail,
};
use crate::domain::repository::{Result, SweepStep, Tx};
use crate::domain::{RevocationReason, TokenHash};

pub struct SqliteTx<'c> {
    conn: &'c Connection,
    /// Sessions this job revoked, reported once its batch has committed.
    revoked: Vec<RevocationReason>,
    /// The job asked for a checkpoint after its commit (`scrub_after_commit`).
    scrub: bool,
    /// Entries this job appended to the revocation log (revocations and erasures).
    logged: usize,
}

impl<'c> SqliteTx<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            revoked: Vec::new(),
            scrub: false,
            logged: 0,
        }
    }

    /// What the writer acts on after the commit: revocations to report, how many
    /// entries the job appended to the revocation log, and whether to scrub the files.
    pub fn into_after_commit(self) -> (Vec<RevocationReason>, usize, bool) {
        (self.revoked, self.logged, self.scrub)
    }
}

/// Runs a store job's future to completion on this thread. Every `SqliteTx` method is
/// ready at once, so a job is too; one that waits on anything else is a bug, reported
/// as an error rather than blocking the writer.
pub fn run_now<T>(job: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut job = pin!(job);
    match job.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(anyhow::anyhow!(
            "a store job waited on something outside the store"
        )),
    }
}

#[async_trait(?Send)]
impl Tx for SqliteTx<'_> {
    async fn ping(&mut self) -> Result<()> {
        self.conn.query_row(
            "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)",
            [],
            |r| r.get::<_, i64>(0),
        )?;
        Ok(())
    }

    async fn user_by_id(&mut self, id: &str) -> Result<Option<User>> {
        users::by_id(self.conn, id)
    }
    async fn user_by_username_key(&mut self, key: &str) -> Result<Option<User>> {
        users::by_username_key(self.conn, key)
    }
    async fn all_users(&mut self) -> Result<Vec<User>> {
        users::all(self.conn)
    }
    async fn insert_user(&mut self, user: &User, username_key: &str, skeleton: &str) -> Result<()> {
        users::insert(self.conn, user, username_key, skeleton)
    }
    async fn username_skeleton_taken(&mut self, skeleton: &str) -> Result<bool> {
        users::skeleton_taken(self.conn, skeleton)
    }
    async fn scrub_after_commit(&mut self) -> Result<()> {
        self.scrub = true;
        Ok(())
    }
    async fn set_password_hash(&mut self, user_id: &str, hash: &str) -> Result<()> {
        users::set_password_hash(self.conn, user_id, hash)
    }
    async fn set_disabled(&mut self, user_id: &str, now: Millis) -> Result<bool> {
        users::set_disabled(self.conn, user_id, now)
    }
    async fn delete_user(&mut self, user_id: &str, now: Millis) -> Result<bool> {
        // Erasure deletes the session rows, not the access tokens already issued: the
        // live sessions enter the log first (docs/contract.md "Revocation feed").
        let logged = revocations::append_live_sessions_of_user(self.conn, user_id, now)?;
        let deleted = users::delete(self.conn, user_id)?;
        if deleted {
            self.logged += logged;
        }
        Ok(deleted)
    }

    async fn session_by_id(&mut self, id: &str) -> Result<Option<Session>> {
        sessions::by_id(self.conn, id)
    }
    async fn active_sessions_of_user(
        &mut self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<Session>> {
        sessions::active_of_user(self.conn, user_id, now)
    }
    async fn count_active_sessions(&mut self, now: Millis) -> Result<i64> {
        sessions::count_active(self.conn, now)
    }
    async fn insert_session(&mut self, session: &Session) -> Result<()> {
        sessions::insert(self.conn, session)
    }
    async fn touch_session(&mut self, session: &Session) -> Result<()> {
        sessions::touch(self.conn, session)
    }
    async fn advance_head(&mut self, session: &Session) -> Result<()> {
        sessions::advance_head(self.conn, session)
    }
    async fn revoke_session(
        &mut self,
        id: &str,
        now: Millis,
        reason: RevocationReason,
    ) -> Result<bool> {
        let revoked = sessions::revoke(self.conn, id, now, reason)?;
        if revoked {
            revocations::append(self.conn, id, now)?;
            self.revoked.push(reason);
            self.logged += 1;
        }
        Ok(revoked)
    }
    async fn wipe_sealed_heads_before(&mut self, cutoff: Millis) -> Result<usize> {
        sessions::wipe_sealed_before(self.conn, cutoff)
    }
    async fn sweep_sessions(
        &mut self,
        after: i64,
        limit: u32,
        now: Millis,
        ended_before: Millis,
    ) -> Result<SweepStep> {
        sessions::sweep(self.conn, after, limit, now, ended_before)
    }

    async fn revocations_after(
        &mut self,
        after: i64,
        since: Millis,
        limit: u32,
    ) -> Result<Vec<Revocation>> {
        revocations::after(self.conn, after, since, limit)
    }
    async fn prune_revocations(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        revocations::prune(self.conn, cutoff, limit)
    }

    async fn token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<StoredToken>> {
        tokens::by_hash(self.conn, hash)
    }
    async fn insert_token(&mut self, token: &StoredToken) -> Result<()> {
        tokens::insert(self.conn, token)
    }

    async fn insert_event(&mut self, at: Millis, event: &NewEvent) -> Result<()> {
        events::insert(self.conn, at, event)
    }
    async fn events(&mut self, query: &EventQuery) -> Result<Vec<Event>> {
        events::query(self.conn, query)
    }
    async fn has_logged_in_before(&mut self, user_id: &str) -> Result<bool> {
        events::has_logged_in_before(self.conn, user_id)
    }
    async fn seen_device(
        &mut self,
        user_id: &str,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> Result<bool> {
        events::seen_device(self.conn, user_id, since, network, ua_family)
    }
    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        events::delete_before(self.conn, cutoff, limit)
    }

    async fn email_of_user(&mut self, user_id: &str) -> Result<Option<UserEmail>> {
        emails::of_user(self.conn, user_id)
    }
    async fn user_by_verified_email(&mut self, email_key: &str) -> Result<Option<User>> {
        emails::verified_owner(self.conn, email_key)
    }
    async fn lock_email_claims(&mut self, email_key: &str) -> Result<Vec<UserEmail>> {
        // The single writer already runs write jobs one after the other.
        emails::claims(self.conn, email_key)
    }
    async fn drop_unverified_claims(&mut self, email_key: &str, owner: &str) -> Result<usize> {
        emails::drop_unverified_claims(self.conn, email_key, owner)
    }
    async fn set_email(&mut self, email: &UserEmail, email_key: &str) -> Result<()> {
        emails::set(self.conn, email, email_key)
    }
    async fn mark_email_verified(
        &mut self,
        user_id: &str,
        email_key: &str,
        now: Millis,
    ) -> Result<bool> {
        emails::mark_verified(self.conn, user_id, email_key, now)
    }
    async fn insert_account_token(&mut self, token: &AccountToken) -> Result<()> {
        account_tokens::insert(self.conn, token)
    }
    async fn account_token_by_hash(&mut self, hash: &TokenHash) -> Result<Option<AccountToken>> {
        account_tokens::by_hash(self.conn, hash)
    }
    async fn delete_account_tokens(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
    ) -> Result<usize> {
        account_tokens::delete_of_user(self.conn, user_id, purpose)
    }
    async fn count_account_tokens_since(
        &mut self,
        user_id: &str,
        purpose: TokenPurpose,
        since: Millis,
    ) -> Result<u32> {
        account_tokens::count_since(self.conn, user_id, purpose, since)
    }
    async fn delete_account_tokens_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        account_tokens::delete_expired_before(self.conn, cutoff)
    }

    // Second factor.
    async fn mfa_factor(&mut self, user_id: &str) -> Result<Option<MfaFactor>> {
        mfa::factor(self.conn, user_id)
    }
    async fn put_mfa_factor(&mut self, factor: &MfaFactor) -> Result<()> {
        mfa::put_factor(self.conn, factor)
    }
    async fn advance_mfa_step(&mut self, user_id: &str, step: i64) -> Result<bool> {
        mfa::advance_step(self.conn, user_id, step)
    }
    async fn delete_mfa_factor(&mut self, user_id: &str) -> Result<bool> {
        mfa::delete_factor(self.conn, user_id)
    }
    async fn replace_recovery_codes(&mut self, user_id: &str, hashes: &[TokenHash]) -> Result<()> {
        mfa::replace_recovery_codes(self.conn, user_id, hashes)
    }
    async fn consume_recovery_code(&mut self, user_id: &str, hash: &TokenHash) -> Result<bool> {
        mfa::consume_recovery_code(self.conn, user_id, hash)
    }
    async fn insert_mfa_login(&mut self, login: &PendingLogin) -> Result<()> {
        mfa::insert_login(self.conn, login)
    }
    async fn mfa_login_by_hash(&mut self, hash: &TokenHash) -> Result<Option<PendingLogin>> {
        mfa::login_by_hash(self.conn, hash)
    }
    async fn delete_mfa_login(&mut self, hash: &TokenHash) -> Result<bool> {
        mfa::delete_login(self.conn, hash)
    }
    async fn reserve_mfa_login_check(&mut self, hash: &TokenHash, max: u32) -> Result<Option<u32>> {
        mfa::reserve_login_check(self.conn, hash, max)
    }
    async fn mfa_code_failures_for_update(&mut self, user_id: &str) -> Result<Option<u32>> {
        mfa::code_failures(self.conn, user_id)
    }
    async fn add_mfa_code_failure(&mut self, user_id: &str) -> Result<()> {
        mfa::add_code_failure(self.conn, user_id)
    }
    async fn reset_mfa_code_failures(&mut self, user_id: &str) -> Result<()> {
        mfa::reset_code_failures(self.conn, user_id)
    }
    async fn delete_mfa_logins_expired_before(&mut self, cutoff: Millis) -> Result<usize> {
        mfa::delete_logins_expired_before(self.conn, cutoff)
    }
}

//! [`PgTx`]: the domain's `Tx` port over one pooled PostgreSQL connection. Each
//! aggregate's trait is implemented in the file of its tables (`users.rs`,
//! `sessions.rs`, …), paired with the SQLite backend's file of the same name: the same
//! statements, in PostgreSQL's dialect.
//!
//! A write job runs in one READ COMMITTED transaction. `BEGIN` is not sent on its own:
//! it goes out pipelined with the job's first statement (one round trip saved per
//! write). Races between instances are decided by the database, not by luck:
//! - a rotation's write is conditional on the head it read (`advance_head`: the
//!   generation before, not revoked); of two rotations of one head, on any instances,
//!   the second's update finds the head moved, so its job runs again, reads the new
//!   head and answers with the grace rule (docs/contract.md "Refresh rotation"). Its
//!   other writes are conditional too (`revoke_session`) or harmless to repeat
//!   (`touch_session`), so reading a session takes no lock (a row lock is one more WAL
//!   record per refresh);
//! - a write job that reads a user by id or name holds the row (`FOR SHARE`), so a
//!   password change or a disable cannot commit between a login's check and its new
//!   session (the user read along with a session is not locked: a refresh opens no
//!   session, and a revocation of its session waits for its update, then applies);
//! - a write job that lists a user's live sessions (login's session limit, sign-out
//!   everywhere) first locks the user's row, so two logins cannot both see room for one
//!   more session;
//! - appends to the revocation log take a transaction-scoped advisory lock, so log
//!   numbers are assigned in commit order and a feed reader that resumes after number
//!   N can never miss a smaller number committed later.

use async_trait::async_trait;
use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::domain::model::User;
use crate::domain::repository::{Result, Tx};
use crate::domain::TokenHash;
use crate::store::after_commit::Committed;

/// The advisory-lock key serializing appends to the revocation log ("lk" "rv").
const REVOCATION_LOG_LOCK: i64 = 0x6c6b_7276;

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

pub struct PgTx<'c> {
    pub(super) client: &'c ClientWrapper,
    /// A write job whose `BEGIN` has not gone out yet (it rides with the first statement).
    begin_pending: bool,
    /// A write job: sessions read are locked for the rest of it.
    pub(super) writing: bool,
    /// The user read with the last session (one round trip for both); handed out by
    /// `user_by_id` until the job changes a user.
    pub(super) user_read_with_session: Option<User>,
    /// What the store reports once the job's transaction has committed.
    pub(super) after: Committed,
}

impl<'c> PgTx<'c> {
    /// A write job's transaction (`BEGIN` sent with its first statement).
    pub fn write(client: &'c ClientWrapper) -> Self {
        Self::new(client, true)
    }

    /// A write job inside a transaction its batch has already begun (`group`).
    pub fn within(client: &'c ClientWrapper) -> Self {
        let mut tx = Self::new(client, true);
        tx.begin_pending = false;
        tx
    }

    /// A read job: statements run on their own, each seeing every committed write.
    pub fn read(client: &'c ClientWrapper) -> Self {
        Self::new(client, false)
    }

    fn new(client: &'c ClientWrapper, writing: bool) -> Self {
        Self {
            client,
            begin_pending: writing,
            writing,
            user_read_with_session: None,
            after: Committed::default(),
        }
    }

    /// Whether a transaction is open (a write job that ran at least one statement).
    pub fn in_transaction(&self) -> bool {
        self.writing && !self.begin_pending
    }

    pub(super) async fn rows(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        let st = self.client.prepare_cached(sql).await?;
        if self.begin_pending {
            self.begin_pending = false;
            let (begun, rows) = tokio::join!(
                self.client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                self.client.query(&st, params)
            );
            begun?;
            return Ok(rows?);
        }
        Ok(self.client.query(&st, params).await?)
    }

    pub(super) async fn opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.rows(sql, params).await?.into_iter().next())
    }

    pub(super) async fn one(&mut self, sql: &str, params: Params<'_>) -> Result<Row> {
        self.opt(sql, params)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a query that returns one row returned none"))
    }

    pub(super) async fn exec(&mut self, sql: &str, params: Params<'_>) -> Result<u64> {
        let st = self.client.prepare_cached(sql).await?;
        if self.begin_pending {
            self.begin_pending = false;
            let (begun, n) = tokio::join!(
                self.client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                self.client.execute(&st, params)
            );
            begun?;
            return Ok(n?);
        }
        Ok(self.client.execute(&st, params).await?)
    }

    pub(super) async fn lock_revocation_log(&mut self) -> Result<()> {
        self.exec("SELECT pg_advisory_xact_lock($1)", &[&REVOCATION_LOG_LOCK])
            .await?;
        Ok(())
    }
}

pub(super) fn hash_of(bytes: Vec<u8>) -> Result<TokenHash> {
    TokenHash::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("a stored hash is not 32 bytes"))
}

pub(super) fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[async_trait(?Send)]
impl Tx for PgTx<'_> {
    async fn ping(&mut self) -> Result<()> {
        // Touches the hottest table, so a lock on it (a stall) fails the probe too.
        self.one(
            "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1) s",
            &[],
        )
        .await?;
        Ok(())
    }
}

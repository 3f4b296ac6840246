//! The `events` table: security events, appended in time order.

use async_trait::async_trait;
use rusqlite::params;

use crate::clock::Millis;
use crate::domain::model::{Actor, Event, EventQuery, NewEvent};
use crate::domain::repository::EventRepo;
use crate::domain::{SessionId, UserId};
use crate::store::columns::shown_actor;

use super::SqliteTx;

#[async_trait(?Send)]
impl EventRepo for SqliteTx<'_> {
    async fn insert_event(&mut self, at: Millis, e: &NewEvent) -> anyhow::Result<()> {
        let conn = self.conn;
        let detail = e.detail.as_ref().map(|d| d.to_string());
        let actor = e.actor.clone().unwrap_or_default();
        conn.prepare_cached(
            "INSERT INTO events (at, kind, user_id, session_id, client_id, ip, user_agent, detail,
             actor_id, actor_ip, actor_user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            at,
            e.kind.as_str(),
            e.user_id.as_ref().map(UserId::as_str),
            e.session_id.as_ref().map(SessionId::as_str),
            e.client_id,
            e.ip,
            e.user_agent,
            detail,
            actor.user_id.as_ref().map(UserId::as_str),
            actor.ip,
            actor.user_agent
        ])?;
        self.queue_deliveries(conn.last_insert_rowid(), at, e)?;
        // Security events also go to the log at info (never a token or password: events
        // hold neither). The detail (scope, reason) is included; IP and user agent are not.
        tracing::info!(
            target: "latchkey::security",
            event = e.kind.as_str(),
            user_id = e.user_id.as_ref().map(UserId::as_str),
            session_id = e.session_id.as_ref().map(SessionId::as_str),
            client_id = e.client_id.as_deref(),
            detail = detail.as_deref(),
            "security event"
        );
        Ok(())
    }

    async fn events(&mut self, q: &EventQuery) -> anyhow::Result<Vec<Event>> {
        let conn = self.conn;
        // With a user, a plain `user_id = ?1` lets SQLite read just that user's events
        // (events_by_user); `?1 IS NULL OR user_id = ?1` made it walk the whole table newest
        // first until it had found `limit` of them.
        let user_filter = if q.user_id.is_some() {
            "user_id = ?1"
        } else {
            "?1 IS NULL"
        };
        let mut st = conn.prepare_cached(&format!(
            "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail,
             actor_id, actor_ip, actor_user_agent
         FROM events
         WHERE {user_filter} AND (?2 IS NULL OR kind = ?2)
           AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
           AND (?5 IS NULL OR id < ?5)
         ORDER BY id DESC LIMIT ?6"
        ))?;
        let rows = st
            .query_map(
                params![
                    q.user_id.as_ref().map(UserId::as_str),
                    q.kind,
                    q.since,
                    q.until,
                    q.before,
                    q.limit
                ],
                |r| {
                    let detail: Option<serde_json::Value> = r
                        .get::<_, Option<String>>(8)?
                        .and_then(|d| serde_json::from_str(&d).ok());
                    let actor = Actor {
                        user_id: r.get::<_, Option<String>>(9)?.map(UserId::from_stored),
                        ip: r.get(10)?,
                        user_agent: r.get(11)?,
                    };
                    let actor = shown_actor(actor, detail.as_ref());
                    Ok(Event {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        kind: r.get(2)?,
                        user_id: r.get::<_, Option<String>>(3)?.map(UserId::from_stored),
                        session_id: r.get::<_, Option<String>>(4)?.map(SessionId::from_stored),
                        client_id: r.get(5)?,
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                        detail,
                        actor,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Whether the user logged in from this network and browser family since `since`.
    async fn seen_device(
        &mut self,
        user_id: &UserId,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> anyhow::Result<bool> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events INDEXED BY events_logins_by_user
           WHERE user_id = ?1 AND kind = 'login_succeeded' AND at >= ?2
             AND json_extract(detail, '$.network') = ?3
             AND json_extract(detail, '$.ua_family') = ?4)",
        )?;
        Ok(
            st.query_row(params![user_id.as_str(), since, network, ua_family], |r| {
                r.get(0)
            })?,
        )
    }

    async fn has_logged_in_before(&mut self, user_id: &UserId) -> anyhow::Result<bool> {
        let conn = self.conn;
        let mut st = conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events INDEXED BY events_logins_by_user
           WHERE user_id = ?1 AND kind = 'login_succeeded')",
        )?;
        Ok(st.query_row([user_id.as_str()], |r| r.get(0))?)
    }

    /// Deletes events older than `cutoff` among the oldest `limit` (events are appended in
    /// time order, so the old ones are at the start); a short count means none are left.
    /// Reads at most `limit` rows, where `WHERE at < ? LIMIT` read the whole table whenever
    /// fewer than `limit` were old.
    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> anyhow::Result<usize> {
        let conn = self.conn;
        Ok(conn
            .prepare_cached(
                "DELETE FROM events WHERE id IN (
               SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT ?2) WHERE at < ?1)",
            )?
            .execute(params![cutoff, limit])?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use rusqlite::Connection;

    use super::*;
    use crate::store::sqlite::tx::run_now;

    /// SQLite VM steps `f` takes, in hundreds.
    fn vm_work(conn: &Connection, f: impl FnOnce()) -> u64 {
        let steps = Arc::new(AtomicU64::new(0));
        let counted = steps.clone();
        conn.progress_handler(
            100,
            Some(move || {
                counted.fetch_add(1, Ordering::Relaxed);
                false
            }),
        );
        f();
        conn.progress_handler(100, None::<fn() -> bool>);
        steps.load(Ordering::Relaxed)
    }

    #[test]
    fn a_users_login_lookups_and_event_list_read_that_users_rows_not_the_whole_table() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        // 20,000 logins and refreshes of other users, then alice's one login.
        for i in 0..20_000i64 {
            let kind = if i % 2 == 0 {
                "login_succeeded"
            } else {
                "token_refreshed"
            };
            tx.execute(
                "INSERT INTO events (at, kind, user_id, ip, detail)
                 VALUES (?1, ?2, ?3, '198.51.100.7', '{\"network\":\"198.51.100.0/24\"}')",
                params![i, kind, format!("user{}", i % 5_000)],
            )
            .unwrap();
        }
        tx.execute(
            "INSERT INTO events (at, kind, user_id, ip, detail) VALUES (30000, 'login_succeeded',
                 'alice', '203.0.113.9', '{\"network\":\"203.0.113.0/24\",\"ua_family\":\"Firefox\"}')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();

        let mut answers = Vec::new();
        let work = vm_work(&conn, || {
            let mut tx = SqliteTx::new(&conn);
            // The id the rows above hold.
            let alice = UserId::from_stored("alice".into());
            answers.push(run_now(tx.has_logged_in_before(&alice)).unwrap());
            let seen = tx.seen_device(&alice, 0, "203.0.113.0/24", "Firefox");
            answers.push(run_now(seen).unwrap());
            let q = EventQuery {
                user_id: Some(alice.clone()),
                limit: 50,
                ..Default::default()
            };
            answers.push(run_now(tx.events(&q)).unwrap().len() == 1);
        });
        assert_eq!(answers, [true, true, true]);
        // A scan of the 20,000 rows takes hundreds of these units; an index lookup a few.
        assert!(
            work < 20,
            "{work} hundred VM steps: a query scanned the events table"
        );
    }
}

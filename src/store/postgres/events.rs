//! The `events` table: security events, appended in time order.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{Actor, Event, EventQuery, NewEvent};
use crate::domain::repository::{EventRepo, Result};
use crate::domain::{SessionId, UserId};
use crate::store::columns::shown_actor;

use super::tx::count;
use super::webhooks::{delivery_params, INSERT_EVENT_AND_DELIVERIES};
use super::PgTx;

#[async_trait(?Send)]
impl EventRepo for PgTx<'_> {
    async fn insert_event(&mut self, at: Millis, e: &NewEvent) -> Result<()> {
        let actor = e.actor.clone().unwrap_or_default();
        let (message_id, prefix, suffix) = delivery_params(at, e);
        // The event and its webhook deliveries in one statement (one round trip).
        let queued = self
            .exec(
                INSERT_EVENT_AND_DELIVERIES,
                &[
                    &at,
                    &e.kind.as_str(),
                    &e.user_id.as_ref().map(UserId::as_str),
                    &e.session_id.as_ref().map(SessionId::as_str),
                    &e.client_id,
                    &e.ip,
                    &e.user_agent,
                    &e.detail,
                    &actor.user_id.as_ref().map(UserId::as_str),
                    &actor.ip,
                    &actor.user_agent,
                    &message_id,
                    &prefix,
                    &suffix,
                ],
            )
            .await?;
        self.after.deliveries += count(queued);
        tracing::info!(
            target: "latchkey::security",
            event = e.kind.as_str(),
            user_id = e.user_id.as_ref().map(UserId::as_str),
            session_id = e.session_id.as_ref().map(SessionId::as_str),
            client_id = e.client_id.as_deref(),
            detail = e.detail.as_ref().map(|d| d.to_string()).as_deref(),
            "security event"
        );
        Ok(())
    }

    async fn events(&mut self, q: &EventQuery) -> Result<Vec<Event>> {
        let rows = self
            .rows(
                "SELECT id, at, kind, user_id, session_id, client_id, ip, user_agent, detail,
                     actor_id, actor_ip, actor_user_agent
                 FROM events
                 WHERE ($1::TEXT IS NULL OR user_id = $1) AND ($2::TEXT IS NULL OR kind = $2)
                   AND ($3::BIGINT IS NULL OR at >= $3) AND ($4::BIGINT IS NULL OR at < $4)
                   AND ($5::BIGINT IS NULL OR id < $5)
                 ORDER BY id DESC LIMIT $6",
                &[
                    &q.user_id.as_ref().map(UserId::as_str),
                    &q.kind,
                    &q.since,
                    &q.until,
                    &q.before,
                    &i64::from(q.limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let detail: Option<serde_json::Value> = r.try_get(8)?;
                let actor = Actor {
                    user_id: r.try_get::<_, Option<String>>(9)?.map(UserId::from_stored),
                    ip: r.try_get(10)?,
                    user_agent: r.try_get(11)?,
                };
                let actor = shown_actor(actor, detail.as_ref());
                Ok(Event {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    user_id: r.try_get::<_, Option<String>>(3)?.map(UserId::from_stored),
                    session_id: r
                        .try_get::<_, Option<String>>(4)?
                        .map(SessionId::from_stored),
                    client_id: r.try_get(5)?,
                    ip: r.try_get(6)?,
                    user_agent: r.try_get(7)?,
                    detail,
                    actor,
                })
            })
            .collect()
    }

    async fn has_logged_in_before(&mut self, user_id: &UserId) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS (SELECT 1 FROM events
                   WHERE user_id = $1 AND kind = 'login_succeeded')",
                &[&user_id.as_str()],
            )
            .await?;
        Ok(r.try_get(0)?)
    }

    async fn seen_device(
        &mut self,
        user_id: &UserId,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> Result<bool> {
        let r = self
            .one(
                "SELECT EXISTS (SELECT 1 FROM events
                   WHERE user_id = $1 AND kind = 'login_succeeded' AND at >= $2
                     AND detail ->> 'network' = $3 AND detail ->> 'ua_family' = $4)",
                &[&user_id.as_str(), &since, &network, &ua_family],
            )
            .await?;
        Ok(r.try_get(0)?)
    }

    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM events WHERE id IN (
                   SELECT id FROM (SELECT id, at FROM events ORDER BY id LIMIT $2) oldest
                   WHERE at < $1)",
                &[&cutoff, &i64::from(limit)],
            )
            .await?,
        ))
    }
}

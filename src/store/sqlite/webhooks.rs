//! The webhook outbox: `webhook_endpoints` and `webhook_deliveries`. Claims need no
//! row locks here: every write goes through the one writer, so a claim's UPDATE is
//! whole before any other runs.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use crate::clock::Millis;
use crate::domain::model::NewEvent;
use crate::domain::repository::WebhookRepo;
use crate::domain::webhooks::{
    new_message_id, payload_around_id, Attempted, Delivery, EndpointHealth, EndpointRow,
};
use crate::domain::DeliveryStatus;

use super::SqliteTx;
use crate::store::columns::attempt_columns;

const COLUMNS: &str = "id, endpoint_id, payload, status, attempts, next_attempt_at, retry_since,
     last_status, last_error, created_at, delivered_at";

fn delivery(r: &Row) -> rusqlite::Result<Delivery> {
    let status: String = r.get(3)?;
    Ok(Delivery {
        id: r.get(0)?,
        endpoint_id: r.get(1)?,
        payload: r.get(2)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        retry_since: r.get(6)?,
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: r.get(9)?,
        delivered_at: r.get(10)?,
    })
}

impl SqliteTx<'_> {
    /// The event `event_id` just inserted: one pending delivery per enabled endpoint
    /// that subscribes to its kind, in the same transaction.
    pub(super) fn queue_deliveries(
        &mut self,
        event_id: i64,
        at: Millis,
        e: &NewEvent,
    ) -> anyhow::Result<()> {
        let (prefix, suffix) = payload_around_id(at, e);
        let n = self
            .conn
            .prepare_cached(
                "INSERT INTO webhook_deliveries
                     (id, endpoint_id, payload, status, next_attempt_at, retry_since, created_at)
                 SELECT ?1 || '_' || id, id, ?2, 'pending', ?3, ?3, ?3 FROM webhook_endpoints
                 WHERE disabled_at IS NULL
                   AND (events = '*' OR events LIKE '% ' || ?4 || ' %')",
            )?
            .execute(params![
                new_message_id(),
                format!("{prefix}{event_id}{suffix}"),
                at,
                e.kind.as_str()
            ])?;
        self.after.deliveries += n;
        Ok(())
    }
}

#[async_trait(?Send)]
impl WebhookRepo for SqliteTx<'_> {
    async fn sync_webhook_endpoints(&mut self, endpoints: &[EndpointRow]) -> anyhow::Result<()> {
        let conn = self.conn;
        let ids: Vec<&str> = endpoints.iter().map(|e| e.id.as_str()).collect();
        conn.execute(
            "DELETE FROM webhook_endpoints WHERE id NOT IN (SELECT value FROM json_each(?1))",
            [serde_json::to_string(&ids)?],
        )?;
        for e in endpoints {
            conn.prepare_cached(
                "INSERT INTO webhook_endpoints (id, url, events) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET events = excluded.events, url = excluded.url,
                     disabled_at = CASE WHEN url = excluded.url THEN disabled_at END",
            )?
            .execute(params![e.id, e.url, e.events])?;
        }
        Ok(())
    }

    async fn webhook_endpoints(&mut self) -> anyhow::Result<Vec<EndpointHealth>> {
        let mut st = self.conn.prepare_cached(
            "SELECT e.id, e.url, e.events, e.disabled_at,
                 (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                    AND status = 'pending'),
                 (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                    AND status = 'failed'),
                 (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                    AND status = 'delivered'),
                 (SELECT max(delivered_at) FROM webhook_deliveries WHERE endpoint_id = e.id)
             FROM webhook_endpoints e ORDER BY e.id",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(EndpointHealth {
                    endpoint: EndpointRow {
                        id: r.get(0)?,
                        url: r.get(1)?,
                        events: r.get(2)?,
                        disabled_at: r.get(3)?,
                    },
                    pending: r.get(4)?,
                    failed: r.get(5)?,
                    delivered: r.get(6)?,
                    last_delivered_at: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    async fn claim_deliveries(
        &mut self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut st = self.conn.prepare_cached(&format!(
            "UPDATE webhook_deliveries SET next_attempt_at = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM webhook_deliveries
                          WHERE status = 'pending' AND next_attempt_at <= ?1
                          ORDER BY next_attempt_at LIMIT ?3)
             RETURNING {COLUMNS}"
        ))?;
        let mut rows = st
            .query_map(params![now, lease_until, limit], delivery)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort_by_key(|d| d.created_at);
        Ok(rows)
    }

    async fn record_attempt(&mut self, id: &str, outcome: &Attempted) -> anyhow::Result<bool> {
        let (status, next_at, delivered_at, code, error) = attempt_columns(outcome);
        Ok(self
            .conn
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = ?2,
                     next_attempt_at = coalesce(?3, next_attempt_at),
                     delivered_at = ?4, last_status = ?5, last_error = ?6
                 WHERE id = ?1 AND status = 'pending'",
            )?
            .execute(params![id, status, next_at, delivered_at, code, error])?
            == 1)
    }

    async fn disable_webhook_endpoint(&mut self, id: &str, at: Millis) -> anyhow::Result<bool> {
        let conn = self.conn;
        let n = conn.execute(
            "UPDATE webhook_endpoints SET disabled_at = ?2 WHERE id = ?1 AND disabled_at IS NULL",
            params![id, at],
        )?;
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed',
                 last_error = coalesce(last_error, 'endpoint disabled')
             WHERE endpoint_id = ?1 AND status = 'pending'",
            [id],
        )?;
        Ok(n == 1)
    }

    async fn webhook_deliveries(
        &mut self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> anyhow::Result<Vec<Delivery>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM webhook_deliveries
             WHERE endpoint_id = ?1 AND (?2 IS NULL OR status = ?2)
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))?;
        let rows = st
            .query_map(
                params![endpoint_id, status.map(DeliveryStatus::as_str), limit],
                delivery,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    async fn webhook_delivery(&mut self, id: &str) -> anyhow::Result<Option<Delivery>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_deliveries WHERE id = ?1"
            ))?
            .query_row([id], delivery)
            .optional()?)
    }

    async fn retry_delivery(&mut self, id: &str, now: Millis) -> anyhow::Result<bool> {
        let conn = self.conn;
        let n = conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?2,
                 retry_since = ?2, delivered_at = NULL
             WHERE id = ?1",
            params![id, now],
        )?;
        conn.execute(
            "UPDATE webhook_endpoints SET disabled_at = NULL
             WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = ?1)",
            [id],
        )?;
        self.after.deliveries += n;
        Ok(n == 1)
    }

    async fn webhook_queue(&mut self) -> anyhow::Result<(i64, Option<Millis>)> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    async fn prune_delivered(&mut self, cutoff: Millis, limit: u32) -> anyhow::Result<usize> {
        Ok(self
            .conn
            .prepare_cached(
                "DELETE FROM webhook_deliveries WHERE id IN (
                   SELECT id FROM webhook_deliveries
                   WHERE status = 'delivered' AND delivered_at < ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff, limit])?)
    }
}

//! The webhook outbox: `webhook_endpoints` and `webhook_deliveries`. Several instances
//! claim from one table: `FOR UPDATE SKIP LOCKED` hands each due row to one of them,
//! and moving `next_attempt_at` to the lease's end keeps it theirs after the commit.

use async_trait::async_trait;
use tokio_postgres::Row;

use crate::clock::Millis;
use crate::domain::model::NewEvent;
use crate::domain::repository::{Result, WebhookRepo};
use crate::domain::webhooks::{
    new_message_id, payload_around_id, Attempted, Delivery, EndpointHealth, EndpointRow,
};
use crate::domain::DeliveryStatus;
use crate::store::columns::attempt_columns;

use super::tx::count;
use super::PgTx;

const COLUMNS: &str = "id, endpoint_id, payload, status, attempts, next_attempt_at, retry_since,
     last_status, last_error, created_at, delivered_at";

fn delivery(r: &Row) -> Result<Delivery> {
    let status: String = r.try_get(3)?;
    Ok(Delivery {
        id: r.try_get(0)?,
        endpoint_id: r.try_get(1)?,
        payload: r.try_get(2)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: r.try_get(4)?,
        next_attempt_at: r.try_get(5)?,
        retry_since: r.try_get(6)?,
        last_status: r.try_get(7)?,
        last_error: r.try_get(8)?,
        created_at: r.try_get(9)?,
        delivered_at: r.try_get(10)?,
    })
}

/// The statement that inserts an event and, in the same round trip, its deliveries:
/// one per enabled endpoint subscribed to its kind (`$12`..`$14`: message id, the
/// payload around the event id).
pub(super) const INSERT_EVENT_AND_DELIVERIES: &str = "
    WITH e AS (
        INSERT INTO events (at, kind, user_id, session_id, client_id, ip, user_agent, detail,
            actor_id, actor_ip, actor_user_agent)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        RETURNING id)
    INSERT INTO webhook_deliveries
        (id, endpoint_id, payload, status, next_attempt_at, retry_since, created_at)
    SELECT $12::TEXT || '_' || w.id, w.id, $13::TEXT || e.id::TEXT || $14::TEXT, 'pending',
        $1, $1, $1
    FROM e, webhook_endpoints w
    WHERE w.disabled_at IS NULL
      AND (w.events = '*' OR w.events LIKE '% ' || $2::TEXT || ' %')";

/// The parameters `INSERT_EVENT_AND_DELIVERIES` takes after the event's own.
pub(super) fn delivery_params(at: Millis, e: &NewEvent) -> (String, String, String) {
    let (prefix, suffix) = payload_around_id(at, e);
    (new_message_id(), prefix, suffix)
}

#[async_trait(?Send)]
impl WebhookRepo for PgTx<'_> {
    async fn sync_webhook_endpoints(&mut self, endpoints: &[EndpointRow]) -> Result<()> {
        let ids: Vec<&str> = endpoints.iter().map(|e| e.id.as_str()).collect();
        self.exec(
            "DELETE FROM webhook_endpoints WHERE NOT (id = ANY ($1))",
            &[&ids],
        )
        .await?;
        for e in endpoints {
            self.exec(
                "INSERT INTO webhook_endpoints (id, url, events) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET events = excluded.events, url = excluded.url,
                     disabled_at = CASE WHEN webhook_endpoints.url = excluded.url
                                   THEN webhook_endpoints.disabled_at END",
                &[&e.id, &e.url, &e.events],
            )
            .await?;
        }
        Ok(())
    }

    async fn webhook_endpoints(&mut self) -> Result<Vec<EndpointHealth>> {
        let rows = self
            .rows(
                "SELECT e.id, e.url, e.events, e.disabled_at,
                     (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                        AND status = 'pending'),
                     (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                        AND status = 'failed'),
                     (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = e.id
                        AND status = 'delivered'),
                     (SELECT max(delivered_at) FROM webhook_deliveries
                        WHERE endpoint_id = e.id)
                 FROM webhook_endpoints e ORDER BY e.id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EndpointHealth {
                    endpoint: EndpointRow {
                        id: r.try_get(0)?,
                        url: r.try_get(1)?,
                        events: r.try_get(2)?,
                        disabled_at: r.try_get(3)?,
                    },
                    pending: r.try_get(4)?,
                    failed: r.try_get(5)?,
                    delivered: r.try_get(6)?,
                    last_delivered_at: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn claim_deliveries(
        &mut self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = self
            .rows(
                &format!(
                    "UPDATE webhook_deliveries SET next_attempt_at = $2, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM webhook_deliveries
                                  WHERE status = 'pending' AND next_attempt_at <= $1
                                  ORDER BY next_attempt_at LIMIT $3
                                  FOR UPDATE SKIP LOCKED)
                     RETURNING {COLUMNS}"
                ),
                &[&now, &lease_until, &i64::from(limit)],
            )
            .await?;
        let mut claimed = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
        claimed.sort_by_key(|d| d.created_at);
        Ok(claimed)
    }

    async fn record_attempt(&mut self, id: &str, outcome: &Attempted) -> Result<bool> {
        let (status, next_at, delivered_at, code, error) = attempt_columns(outcome);
        Ok(self
            .exec(
                "UPDATE webhook_deliveries SET status = $2,
                     next_attempt_at = coalesce($3, next_attempt_at),
                     delivered_at = $4, last_status = $5, last_error = $6
                 WHERE id = $1 AND status = 'pending'",
                &[&id, &status, &next_at, &delivered_at, &code, &error],
            )
            .await?
            == 1)
    }

    async fn disable_webhook_endpoint(&mut self, id: &str, at: Millis) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE webhook_endpoints SET disabled_at = $2
                 WHERE id = $1 AND disabled_at IS NULL",
                &[&id, &at],
            )
            .await?;
        self.exec(
            "UPDATE webhook_deliveries SET status = 'failed',
                 last_error = coalesce(last_error, 'endpoint disabled')
             WHERE endpoint_id = $1 AND status = 'pending'",
            &[&id],
        )
        .await?;
        Ok(n == 1)
    }

    async fn webhook_deliveries(
        &mut self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let rows = self
            .rows(
                &format!(
                    "SELECT {COLUMNS} FROM webhook_deliveries
                     WHERE endpoint_id = $1 AND ($2::TEXT IS NULL OR status = $2)
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &[
                    &endpoint_id,
                    &status.map(DeliveryStatus::as_str),
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter().map(delivery).collect()
    }

    async fn webhook_delivery(&mut self, id: &str) -> Result<Option<Delivery>> {
        self.opt(
            &format!("SELECT {COLUMNS} FROM webhook_deliveries WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(delivery)
        .transpose()
    }

    async fn retry_delivery(&mut self, id: &str, now: Millis) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2,
                     retry_since = $2, delivered_at = NULL
                 WHERE id = $1",
                &[&id, &now],
            )
            .await?;
        self.exec(
            "UPDATE webhook_endpoints SET disabled_at = NULL
             WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1)",
            &[&id],
        )
        .await?;
        self.after.deliveries += count(n);
        Ok(n == 1)
    }

    async fn webhook_queue(&mut self) -> Result<(i64, Option<Millis>)> {
        let r = self
            .one(
                "SELECT count(*), min(created_at) FROM webhook_deliveries
                 WHERE status = 'pending'",
                &[],
            )
            .await?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    async fn prune_delivered(&mut self, cutoff: Millis, limit: u32) -> Result<usize> {
        Ok(count(
            self.exec(
                "DELETE FROM webhook_deliveries WHERE id IN (
                   SELECT id FROM webhook_deliveries
                   WHERE status = 'delivered' AND delivered_at < $1 LIMIT $2)",
                &[&cutoff, &i64::from(limit)],
            )
            .await?,
        ))
    }
}

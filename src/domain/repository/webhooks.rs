//! The webhook outbox (docs/webhooks-guide.md): endpoints as configured (and whether a
//! 410 disabled one), and one delivery row per event and subscribed endpoint, written
//! by `EventRepo::insert_event` in the event's own transaction.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::webhooks::{Attempted, Delivery, EndpointHealth, EndpointRow};
use crate::domain::DeliveryStatus;

use super::Result;

#[async_trait(?Send)]
pub trait WebhookRepo {
    /// Makes the stored endpoints the configured ones: new ones added, others removed
    /// (their undelivered rows stay, and fail at their next attempt), a changed URL
    /// enables a disabled endpoint again.
    async fn sync_webhook_endpoints(&mut self, endpoints: &[EndpointRow]) -> Result<()>;
    /// Every stored endpoint with its deliveries counted, by id.
    async fn webhook_endpoints(&mut self) -> Result<Vec<EndpointHealth>>;
    /// Up to `limit` pending deliveries due at `now`, oldest first, each leased until
    /// `lease_until` (its next attempt moved there, its attempts counted) so that no
    /// other worker takes it meanwhile and a crashed worker's claim comes due again.
    async fn claim_deliveries(
        &mut self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records an attempt's outcome; `false` if the delivery is gone or not pending.
    async fn record_attempt(&mut self, id: &str, outcome: &Attempted) -> Result<bool>;
    /// Disables the endpoint after a 410 and fails its pending deliveries; `false` if it
    /// was already disabled or is not stored.
    async fn disable_webhook_endpoint(&mut self, id: &str, at: Millis) -> Result<bool>;
    /// An endpoint's deliveries, newest first, optionally of one status.
    async fn webhook_deliveries(
        &mut self,
        endpoint_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    async fn webhook_delivery(&mut self, id: &str) -> Result<Option<Delivery>>;
    /// Makes a delivery pending and due at `now` with a fresh `max_age`, and enables its
    /// endpoint again; `false` if no such delivery.
    async fn retry_delivery(&mut self, id: &str, now: Millis) -> Result<bool>;
    /// Pending deliveries and the creation time of the oldest (metrics).
    async fn webhook_queue(&mut self) -> Result<(i64, Option<Millis>)>;
    /// Deletes up to `limit` delivered rows delivered before `cutoff`; a short count
    /// means none are left.
    async fn prune_delivered(&mut self, cutoff: Millis, limit: u32) -> Result<usize>;
}

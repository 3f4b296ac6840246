//! The operator's view of webhook deliveries (docs/webhooks-guide.md): endpoints and
//! their health, an endpoint's deliveries, and a manual retry.

use crate::clock::Millis;
use crate::domain::webhooks::{Delivery, EndpointHealth};
use crate::domain::DeliveryStatus;
use crate::store::Store;

use super::error::{Error, Result};

fn no_such_endpoint() -> Error {
    Error::NotFound("no such webhook endpoint".into())
}

/// Every configured endpoint with its deliveries counted.
#[tracing::instrument(skip_all)]
pub async fn endpoints(store: &Store) -> Result<Vec<EndpointHealth>> {
    Ok(store
        .read(async move |tx| tx.webhook_endpoints().await)
        .await?)
}

/// Up to `limit` of `endpoint_id`'s deliveries, newest first; `status` one of
/// `pending`, `failed`, `delivered` when given.
#[tracing::instrument(skip(store, status))]
pub async fn deliveries(
    store: &Store,
    endpoint_id: String,
    status: Option<&str>,
    limit: u32,
) -> Result<Vec<Delivery>> {
    let status = status
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                Error::InvalidRequest("status must be pending, failed or delivered".into())
            })
        })
        .transpose()?;
    let (known, list) = store
        .read(async move |tx| {
            let known = tx
                .webhook_endpoints()
                .await?
                .iter()
                .any(|e| e.endpoint.id == endpoint_id);
            let list = if known {
                tx.webhook_deliveries(&endpoint_id, status, limit).await?
            } else {
                Vec::new()
            };
            Ok((known, list))
        })
        .await?;
    if !known {
        return Err(no_such_endpoint());
    }
    Ok(list)
}

/// Makes a delivery pending and due now, with a fresh `webhooks.max_age`; its endpoint
/// is enabled again if a 410 had disabled it (the operator says the receiver is back).
#[tracing::instrument(skip(store, now))]
pub async fn retry(store: &Store, now: Millis, delivery_id: String) -> Result<()> {
    let found = store
        .write(async move |tx| tx.retry_delivery(&delivery_id, now).await)
        .await?;
    if !found {
        return Err(Error::NotFound("no such webhook delivery".into()));
    }
    Ok(())
}

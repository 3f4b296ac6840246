//! The webhook outbox: endpoints, a delivery per event and subscribed endpoint written
//! with the event (and never for one that rolled back), claims, attempts, retries.

use latchkey::domain::webhooks::{Attempted, EndpointRow};
use latchkey::domain::DeliveryStatus;

use super::*;

fn endpoint(id: &str, events: &str) -> EndpointRow {
    EndpointRow {
        id: id.into(),
        url: format!("https://{id}.example/hook"),
        events: events.into(),
        disabled_at: None,
    }
}

async fn with_endpoints(store: &Store) {
    write_job!(store, |tx| {
        tx.sync_webhook_endpoints(&[
            endpoint("all", "*"),
            endpoint("logins", " new_device_login login_failed "),
        ])
        .await?
    });
}

#[tokio::test]
async fn an_event_queues_one_delivery_per_subscribed_endpoint_in_its_own_transaction() {
    let (store, _dir) = store().await;
    two_users(&store).await;
    with_endpoints(&store).await;
    write_job!(store, |tx| {
        let e = NewEvent::new(EventKind::NewDeviceLogin).user(&uid("alice"));
        tx.insert_event(T0, &e).await?;
        tx.insert_event(T0 + 1, &NewEvent::new(EventKind::Logout))
            .await?
    });
    // A job that records an event and then fails leaves no delivery (and no event).
    let failed = store
        .write(async move |tx| -> anyhow::Result<()> {
            tx.insert_event(T0 + 2, &NewEvent::new(EventKind::LoginFailed))
                .await?;
            anyhow::bail!("the job fails after its event")
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Failed(_))));
    let (all, logins, health, queue) = write_job!(store, |tx| {
        (
            tx.webhook_deliveries("all", None, 10).await?,
            tx.webhook_deliveries("logins", Some(DeliveryStatus::Pending), 10)
                .await?,
            tx.webhook_endpoints().await?,
            tx.webhook_queue().await?,
        )
    });
    assert_eq!(all.len(), 2, "the `*` endpoint has both committed events");
    assert_eq!(logins.len(), 1, "the other only the kind it subscribes to");
    let body: serde_json::Value = serde_json::from_str(&logins[0].payload).unwrap();
    assert_eq!(body["type"], "new_device_login");
    assert_eq!(body["data"]["user_id"], uid("alice").as_str());
    assert!(body["data"]["id"].is_i64(), "the event's id");
    assert!(logins[0].id.starts_with("msg_") && logins[0].id.ends_with("_logins"));
    assert_ne!(all[0].id, all[1].id);
    assert_eq!(health.len(), 2);
    assert_eq!((health[0].pending, health[1].pending), (2, 1));
    assert_eq!(queue, (3, Some(T0)));
}

#[tokio::test]
async fn claimed_deliveries_are_leased_and_their_attempts_recorded() {
    let (store, _dir) = store().await;
    with_endpoints(&store).await;
    write_job!(store, |tx| {
        for i in 0..3 {
            tx.insert_event(T0 + i, &NewEvent::new(EventKind::LoginFailed))
                .await?;
        }
    });
    let (first, second) = write_job!(store, |tx| {
        (
            tx.claim_deliveries(T0 + 10, T0 + 1_000, 4).await?,
            tx.claim_deliveries(T0 + 10, T0 + 1_000, 4).await?,
        )
    });
    assert_eq!(first.len(), 4, "a batch is bounded");
    assert_eq!(second.len(), 2, "a leased row is not claimed again");
    assert!(first
        .iter()
        .all(|d| d.attempts == 1 && d.next_attempt_at == T0 + 1_000));
    // The lease ends: a crashed sender's claim comes due again.
    let again = write_job!(store, |tx| tx
        .claim_deliveries(T0 + 1_000, T0 + 2_000, 10)
        .await?);
    assert_eq!(again.len(), 6);
    assert!(again.iter().all(|d| d.attempts == 2));

    let (a, b, c) = (
        again[0].id.clone(),
        again[1].id.clone(),
        again[2].id.clone(),
    );
    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    let (ok, twice, gone) = write_job!(store, |tx| {
        let (a, b, c) = (a2.clone(), b2.clone(), c2.clone());
        let ok = tx
            .record_attempt(
                &a,
                &Attempted::Delivered {
                    at: T0 + 1_500,
                    status: 204,
                },
            )
            .await?;
        let twice = tx
            .record_attempt(
                &a,
                &Attempted::Delivered {
                    at: T0 + 1_600,
                    status: 200,
                },
            )
            .await?;
        tx.record_attempt(
            &b,
            &Attempted::Retry {
                next_at: T0 + 5_000,
                status: Some(503),
                error: "503".into(),
            },
        )
        .await?;
        tx.record_attempt(
            &c,
            &Attempted::Failed {
                at: T0 + 1_500,
                status: None,
                error: "timeout".into(),
            },
        )
        .await?;
        (
            ok,
            twice,
            tx.record_attempt(
                "msg_none",
                &Attempted::Failed {
                    at: T0,
                    status: None,
                    error: "x".into(),
                },
            )
            .await?,
        )
    });
    assert!(
        ok && !twice && !gone,
        "an attempt is recorded on a pending row only"
    );
    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    let (da, db, dc) = write_job!(store, |tx| {
        let (a, b, c) = (a2.clone(), b2.clone(), c2.clone());
        (
            tx.webhook_delivery(&a).await?.unwrap(),
            tx.webhook_delivery(&b).await?.unwrap(),
            tx.webhook_delivery(&c).await?.unwrap(),
        )
    });
    assert_eq!(
        (da.status, da.delivered_at, da.last_status),
        (DeliveryStatus::Delivered, Some(T0 + 1_500), Some(204))
    );
    assert_eq!(
        (db.status, db.next_attempt_at, db.last_status),
        (DeliveryStatus::Pending, T0 + 5_000, Some(503))
    );
    assert_eq!(
        (dc.status, dc.last_error.as_deref()),
        (DeliveryStatus::Failed, Some("timeout"))
    );

    // A manual retry makes a failed delivery pending and due now, with a fresh max_age.
    let c2 = c.clone();
    let retried = write_job!(store, |tx| tx.retry_delivery(&c, T0 + 9_000).await?);
    assert!(retried);
    let dc = write_job!(store, |tx| tx.webhook_delivery(&c2).await?.unwrap());
    assert_eq!(
        (dc.status, dc.next_attempt_at, dc.retry_since),
        (DeliveryStatus::Pending, T0 + 9_000, T0 + 9_000)
    );

    // Delivered rows are pruned after their retention, a bounded batch at a time.
    let (kept, pruned) = write_job!(store, |tx| (
        tx.prune_delivered(T0 + 1_500, 10).await?,
        tx.prune_delivered(T0 + 1_501, 10).await?,
    ));
    assert_eq!((kept, pruned), (0, 1));
}

#[tokio::test]
async fn a_disabled_endpoint_fails_its_pending_rows_gets_no_more_and_a_new_url_enables_it() {
    let (store, _dir) = store().await;
    with_endpoints(&store).await;
    write_job!(store, |tx| tx
        .insert_event(T0, &NewEvent::new(EventKind::LoginFailed))
        .await?);
    let (first, again) = write_job!(store, |tx| (
        tx.disable_webhook_endpoint("logins", T0 + 1).await?,
        tx.disable_webhook_endpoint("logins", T0 + 2).await?,
    ));
    assert!(first && !again);
    write_job!(store, |tx| tx
        .insert_event(T0 + 3, &NewEvent::new(EventKind::LoginFailed))
        .await?);
    let rows = write_job!(store, |tx| tx
        .webhook_deliveries("logins", None, 10)
        .await?);
    assert_eq!(rows.len(), 1, "nothing queued for a disabled endpoint");
    assert_eq!(rows[0].status, DeliveryStatus::Failed);
    // Same URL: still disabled; a new URL: enabled; a removed endpoint: gone.
    write_job!(store, |tx| tx
        .sync_webhook_endpoints(&[endpoint("logins", "*")])
        .await?);
    let health = write_job!(store, |tx| tx.webhook_endpoints().await?);
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].endpoint.disabled_at, Some(T0 + 1));
    let mut moved = endpoint("logins", "*");
    moved.url = "https://elsewhere.example/hook".into();
    write_job!(store, |tx| tx.sync_webhook_endpoints(&[moved]).await?);
    let health = write_job!(store, |tx| tx.webhook_endpoints().await?);
    assert_eq!(health[0].endpoint.disabled_at, None);
}

//! Reading security events: a user's own, and the operator's filtered view.

use super::Error;
use crate::domain::model::{Event, EventQuery};
use crate::store::Store;

/// Events matching `query`, newest first.
#[tracing::instrument(skip_all)]
pub async fn list(store: &Store, query: EventQuery) -> Result<Vec<Event>, Error> {
    Ok(store.read(async move |tx| tx.events(&query).await).await?)
}

/// `before` is an event id (ids start at 1).
pub fn page_before(before: Option<i64>) -> Result<Option<i64>, Error> {
    match before {
        Some(b) if b < 1 => Err(Error::InvalidRequest(
            "before must be an event id (1 or more)".into(),
        )),
        b => Ok(b),
    }
}

pub fn page_limit(limit: Option<u32>) -> Result<u32, Error> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(Error::InvalidRequest(
            "limit must be between 1 and 200".into(),
        )),
    }
}

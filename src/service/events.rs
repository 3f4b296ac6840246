//! Reading security events: a user's own, and the operator's filtered view.

use crate::domain::model::{Event, EventQuery};
use crate::error::ApiError;
use crate::state::AppState;

/// Events matching `query`, newest first.
pub async fn list(state: &AppState, query: EventQuery) -> Result<Vec<Event>, ApiError> {
    Ok(state
        .store
        .read(async move |tx| tx.events(&query).await)
        .await?)
}

/// `before` is an event id (ids start at 1).
pub fn page_before(before: Option<i64>) -> Result<Option<i64>, ApiError> {
    match before {
        Some(b) if b < 1 => Err(ApiError::InvalidRequest(
            "before must be an event id (1 or more)".into(),
        )),
        b => Ok(b),
    }
}

pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=200 => Ok(n),
        _ => Err(ApiError::InvalidRequest(
            "limit must be between 1 and 200".into(),
        )),
    }
}

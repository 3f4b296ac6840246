//! Security events: the audit trail, and what login's new-device check reads.

use async_trait::async_trait;

use crate::clock::Millis;
use crate::domain::model::{Event, EventQuery, NewEvent};
use crate::domain::UserId;

use super::Result;

#[async_trait(?Send)]
pub trait EventRepo {
    async fn insert_event(&mut self, at: Millis, event: &NewEvent) -> Result<()>;
    async fn events(&mut self, query: &EventQuery) -> Result<Vec<Event>>;
    async fn has_logged_in_before(&mut self, user_id: &UserId) -> Result<bool>;
    /// Whether the user logged in from this network and browser family since `since`.
    async fn seen_device(
        &mut self,
        user_id: &UserId,
        since: Millis,
        network: &str,
        ua_family: &str,
    ) -> Result<bool>;
    /// Deletes events older than `cutoff` among the oldest `limit`; a short count means
    /// none are left.
    async fn delete_events_before(&mut self, cutoff: Millis, limit: u32) -> Result<usize>;
}

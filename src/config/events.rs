//! `[events]`: security-event retention, and whether every refresh is an event
//! (docs/contract.md "Security events").

use serde::{Deserialize, Serialize};

use super::HumanDuration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Security events older than this are deleted by housekeeping.
    pub retention: HumanDuration,
    /// Also record every refresh as a `token_refreshed` event. Off by default: the
    /// session row already records each refresh (last active time, address, user
    /// agent), and an event per refresh is the largest cost of a rotation.
    pub record_refreshes: bool,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: HumanDuration::secs(90 * 86_400),
            record_refreshes: false,
        }
    }
}

//! `[events]`: security-event retention.

use serde::{Deserialize, Serialize};

use super::HumanDuration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Security events older than this are deleted by housekeeping.
    pub retention: HumanDuration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention: HumanDuration::secs(90 * 86_400),
        }
    }
}

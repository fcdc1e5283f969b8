//! `[retention]`: how long finished jobs and unused uploads are kept.

use serde::{Deserialize, Serialize};

/// What the daily sweep (and `reelbox gc`) removes. Days may be fractional; 0 keeps forever.
/// Artifacts a profile or a queued or running job uses are never removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a finished (succeeded, failed, canceled) job is kept after it ended, with its
    /// artifacts and events.
    pub finished_job_days: f64,
    /// Days an uploaded artifact (portrait, voice sample, ComfyUI input) that nothing refers
    /// to is kept after its last upload (its key sending the same bytes again counts).
    pub unused_upload_days: f64,
}

impl RetentionConfig {
    /// True when either kind of removal is turned on.
    pub fn enabled(&self) -> bool {
        self.finished_job_days > 0.0 || self.unused_upload_days > 0.0
    }

    /// Refuses days that are negative or not a number, naming the key.
    pub fn check(&self) -> Result<(), BadRetention> {
        for (key, days) in
            [("finished_job_days", self.finished_job_days), ("unused_upload_days", self.unused_upload_days)]
        {
            if !days.is_finite() || days < 0.0 {
                return Err(BadRetention { key, days });
            }
        }
        Ok(())
    }
}

/// A `[retention]` key whose days are negative or not a number.
#[derive(Debug, thiserror::Error)]
#[error("retention.{key} = {days} must be a number of days ≥ 0 (0 keeps forever)")]
pub struct BadRetention {
    /// The key under `[retention]`.
    pub key: &'static str,
    /// The value it was given.
    pub days: f64,
}

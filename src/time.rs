//! Time as reelbox records it: Unix milliseconds, and UTC days for quotas and retention.
//!
//! A leaf module (it uses nothing else in the crate) so that every folder can speak of
//! time without importing another domain: `gpu` and `store` both use it, neither the other.

/// Unix time in milliseconds.
pub type Millis = i64;

/// Milliseconds in a day.
pub const DAY_MS: Millis = 86_400_000;

/// Current time in Unix milliseconds.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// The UTC day number of a timestamp (days since the Unix epoch).
pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }
}

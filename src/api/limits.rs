//! Limits enforced at the HTTP edge: a per-caller token bucket and a cap on concurrent
//! event streams. What a submission may ask for (`[limits]`, GPU quota) is the jobs
//! service's (`crate::jobs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::ApiError;
use crate::config::LimitsConfig;

/// Whom a limit is counted against. A trait rather than `auth::Caller` itself, so this
/// module does not import `auth` back (auth holds the limiters); `api` implements it.
pub trait Metered {
    /// The owner the counts are kept under.
    fn owner(&self) -> &str;
    /// How refusals name the caller.
    fn label(&self) -> &str;
    /// The keyless local admin, whom the request rate does not limit.
    fn is_local(&self) -> bool;
}

/// A token bucket: `tokens` left as of `at`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub tokens: f64,
    pub at: Instant,
}

/// Whole seconds for `Retry-After`, rounded up: clients (the OpenAI SDKs) wait exactly this
/// long before retrying, and a rounded-down wait is refused again.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Takes one token from a bucket refilled at `rate`/s up to `burst`; on refusal says
/// how long until a token is there.
pub fn take(bucket: &mut Bucket, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.at = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

/// Per-caller token buckets.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Charges one request to `caller`; 429 with `Retry-After` when its bucket is empty.
    pub fn check(&self, caller: &impl Metered, limits: &LimitsConfig) -> Result<(), ApiError> {
        if limits.requests_per_second <= 0.0 || caller.is_local() {
            return Ok(());
        }
        let rate = limits.requests_per_second;
        let burst = f64::from(limits.request_burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            // Full buckets carry no information; dropping them bounds the map.
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(caller.owner().to_string()).or_insert(Bucket { tokens: burst, at: now });
        take(bucket, now, rate, burst).map_err(|wait| ApiError {
            retry_after: Some(retry_after_secs(wait)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{} sent more than limits.requests_per_second = {rate} (burst {burst}); retry in {:.1} s",
                    caller.label(),
                    wait.as_secs_f64()
                ),
            )
        })
    }
}

/// Counts open event streams, in total and per caller.
#[derive(Default)]
pub struct StreamSlots {
    open: Mutex<(usize, HashMap<String, usize>)>,
}

/// An open stream's slot; freed on drop.
pub struct StreamPermit {
    slots: Arc<StreamSlots>,
    owner: String,
}

impl StreamSlots {
    /// Takes a slot for one SSE or WebSocket stream of `caller`, or 429 naming the cap.
    pub fn acquire(self: &Arc<Self>, caller: &impl Metered, limits: &LimitsConfig) -> Result<StreamPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.1.get(caller.owner()).copied().unwrap_or(0);
        let refuse = |msg: String| ApiError {
            retry_after: Some(5),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", msg)
        };
        if open.0 >= limits.max_streams {
            return Err(refuse(format!(
                "{} event streams are open; limits.max_streams is {}",
                open.0, limits.max_streams
            )));
        }
        if mine >= limits.max_streams_per_key {
            return Err(refuse(format!(
                "{} has {mine} event streams open; limits.max_streams_per_key is {}",
                caller.label(),
                limits.max_streams_per_key
            )));
        }
        open.0 += 1;
        *open.1.entry(caller.owner().to_string()).or_default() += 1;
        Ok(StreamPermit { slots: self.clone(), owner: caller.owner().to_string() })
    }

    /// Streams open now.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_the_wait_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(4990)), 5);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
    }

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket { tokens: 3.0, at: t0 };
        for _ in 0..3 {
            assert!(take(&mut b, t0, 2.0, 3.0).is_ok());
        }
        let wait = take(&mut b, t0, 2.0, 3.0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(take(&mut b, t0 + Duration::from_millis(500), 2.0, 3.0).is_ok());
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(take(&mut b, later, 2.0, 3.0).is_ok());
        }
        assert!(take(&mut b, later, 2.0, 3.0).is_err());
    }
}

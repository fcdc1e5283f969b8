//! Limits enforced at the edge: request parameters against `[limits]`, a per-caller
//! token bucket, and a cap on concurrent event streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;

use super::ApiError;
use super::auth::Caller;
use crate::config::LimitsConfig;
use crate::store::GpuQuota;
use crate::store::quota::{DAY_MS, day_of};
use crate::store::records::{Job, now_ms};

/// Kinds whose `steps` are not diffusion steps (testcard's are progress ticks).
const STEPS_ARE_NOT_DIFFUSION: &[&str] = &["testcard"];

/// Which limit a parameter name falls under, whatever kind or API layer sent it.
enum Limited {
    Text,
    ImageSide,
    Steps,
    Frames,
    AudioSeconds,
}

fn limited(name: &str) -> Option<Limited> {
    Some(match name {
        "prompt" | "negative_prompt" | "script" | "text" | "input" | "prompt_prefix" => Limited::Text,
        "width" | "height" => Limited::ImageSide,
        "steps" | "num_inference_steps" => Limited::Steps,
        "frames" | "num_frames" => Limited::Frames,
        "duration_s" | "seconds" | "audio_seconds" => Limited::AudioSeconds,
        _ => return None,
    })
}

/// Checks job parameters (at any depth, e.g. `scenes[2].prompt`) against `[limits]`;
/// the error names the field and the config key.
pub fn check_params(kind: &str, params: &Value, limits: &LimitsConfig) -> Result<(), ApiError> {
    walk(kind, params, String::new(), limits)
}

fn walk(kind: &str, v: &Value, path: String, limits: &LimitsConfig) -> Result<(), ApiError> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if let Some(which) = limited(k) {
                    check_one(kind, &which, child, &here, limits)?;
                }
                walk(kind, child, here, limits)?;
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(kind, child, format!("{path}[{i}]"), limits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_one(kind: &str, which: &Limited, v: &Value, field: &str, l: &LimitsConfig) -> Result<(), ApiError> {
    let number = || v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
    let (got, limit, key, unit) = match which {
        Limited::Text => {
            let Some(s) = v.as_str() else { return Ok(()) };
            (s.chars().count() as f64, l.max_prompt_chars as f64, "max_prompt_chars", "characters")
        }
        Limited::ImageSide => (number().unwrap_or(0.0), f64::from(l.max_image_side), "max_image_side", "pixels"),
        Limited::Steps if STEPS_ARE_NOT_DIFFUSION.contains(&kind) => return Ok(()),
        Limited::Steps => (number().unwrap_or(0.0), f64::from(l.max_steps), "max_steps", "steps"),
        Limited::Frames => (number().unwrap_or(0.0), f64::from(l.max_frames), "max_frames", "frames"),
        Limited::AudioSeconds => (number().unwrap_or(0.0), l.max_audio_seconds, "max_audio_seconds", "seconds"),
    };
    if got > limit {
        return Err(ApiError {
            code: "limit_exceeded",
            ..ApiError::field(field, format!("is {got} {unit}; this server allows at most {limit} (limits.{key})"))
        });
    }
    Ok(())
}

/// Refuses a submission early when the caller's key has used or reserved all its
/// GPU-seconds for today; the binding check is [`gpu_reservation`]'s, in the enqueue.
pub fn check_gpu_quota(state: &super::AppState, caller: &Caller) -> Result<(), ApiError> {
    let Some(limit) = caller.gpu_seconds_per_day else { return Ok(()) };
    let used_ms = state.store.gpu_ms_used(&caller.owner, day_of(now_ms()))?;
    let reserved_ms = state.store.gpu_ms_reserved(&caller.owner)?;
    if used_ms.saturating_add(reserved_ms) < limit.saturating_mul(1000) {
        return Ok(());
    }
    Err(gpu_quota_error(caller, used_ms, reserved_ms, 0, limit.saturating_mul(1000)))
}

/// The GPU time a job reserves against its owner's `gpu_seconds_per_day`, when it has
/// one. Only boxes with GPUs reserve: GPU time is charged only for runs on a GPU, so on a
/// CPU-only box the quota has nothing to hold back. Any job may land on a GPU when there
/// is one (jobs needing no VRAM take a free GPU first), so every kind reserves there.
pub fn gpu_reservation(state: &super::AppState, caller: &Caller, job: &Job) -> Option<GpuQuota> {
    let limit = caller.gpu_seconds_per_day?;
    if state.scheduler.gpus().is_empty() {
        return None;
    }
    let kind = state.scheduler.kind(&job.kind)?;
    let params: Value = serde_json::from_str(&job.params).unwrap_or_default();
    Some(GpuQuota {
        limit_ms: limit.saturating_mul(1000),
        estimate_ms: crate::kinds::estimate_gpu_ms(kind.as_ref(), &params),
    })
}

/// 429 naming `gpu_seconds_per_day`, the caller, use against the limit and the reset time.
pub fn gpu_quota_error(caller: &Caller, used_ms: u64, reserved_ms: u64, estimate_ms: u64, limit_ms: u64) -> ApiError {
    let now = now_ms();
    let reset = (day_of(now) + 1) * DAY_MS;
    let reset_at = chrono::DateTime::from_timestamp_millis(reset).map(|t| t.to_rfc3339()).unwrap_or_default();
    let until_reset = u64::try_from((reset - now) / 1000).unwrap_or(1).max(1);
    // Reservations free up as the caller's jobs end; only today's use waits for midnight.
    let retry_after =
        if used_ms.saturating_add(estimate_ms.max(1)) <= limit_ms { until_reset.min(5) } else { until_reset };
    let secs = |ms: u64| ms.div_ceil(1000);
    let mut msg = format!(
        "quota gpu_seconds_per_day: {} used {} of {} GPU-seconds today",
        caller.label,
        used_ms / 1000,
        limit_ms / 1000
    );
    if reserved_ms > 0 {
        msg.push_str(&format!(", {} more reserved by unfinished jobs", secs(reserved_ms)));
    }
    if estimate_ms > 0 {
        msg.push_str(&format!(", and this job is estimated at {} s", secs(estimate_ms)));
    }
    msg.push_str(&format!("; resets at {reset_at}"));
    ApiError { retry_after: Some(retry_after), ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", msg) }
}

/// A token bucket: `tokens` left as of `at`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    pub tokens: f64,
    pub at: Instant,
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
    pub fn check(&self, caller: &Caller, limits: &LimitsConfig) -> Result<(), ApiError> {
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
        let bucket = buckets.entry(caller.owner.clone()).or_insert(Bucket { tokens: burst, at: now });
        take(bucket, now, rate, burst).map_err(|wait| ApiError {
            retry_after: Some(wait.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "{} sent more than limits.requests_per_second = {rate} (burst {burst}); retry in {:.1} s",
                    caller.label,
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
    pub fn acquire(self: &Arc<Self>, caller: &Caller, limits: &LimitsConfig) -> Result<StreamPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.1.get(&caller.owner).copied().unwrap_or(0);
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
                caller.label, limits.max_streams_per_key
            )));
        }
        open.0 += 1;
        *open.1.entry(caller.owner.clone()).or_default() += 1;
        Ok(StreamPermit { slots: self.clone(), owner: caller.owner.clone() })
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
    use serde_json::json;

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

    #[test]
    fn limits_name_the_field_and_the_config_key() {
        let l = LimitsConfig { max_prompt_chars: 5, max_steps: 50, ..LimitsConfig::default() };
        let err = check_params("image", &json!({"prompt": "a cat!"}), &l).expect_err("too long");
        assert_eq!(err.field.as_deref(), Some("prompt"));
        assert!(err.message.contains("limits.max_prompt_chars"), "{}", err.message);
        let err =
            check_params("render", &json!({"scenes": [{"prompt": "ok"}, {"steps": "51"}]}), &l).expect_err("steps");
        assert_eq!(err.field.as_deref(), Some("scenes[1].steps"));
        assert!(check_params("testcard", &json!({"steps": 1000}), &l).is_ok(), "testcard steps are ticks");
        let err = check_params("image", &json!({"width": 4096}), &l).expect_err("wide");
        assert!(err.message.contains("limits.max_image_side"));
        let err = check_params("video", &json!({"frames": 1_000_000}), &l).expect_err("frames");
        assert!(err.message.contains("limits.max_frames"));
        let err = check_params("speech", &json!({"duration_s": 1e9}), &l).expect_err("long");
        assert!(err.message.contains("limits.max_audio_seconds"));
        assert!(check_params("image", &json!({"prompt": "cat", "width": 512, "steps": 20}), &l).is_ok());
    }
}

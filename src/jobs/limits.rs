//! Submission limits: request parameters against `[limits]` and the daily GPU-time quota.

use serde_json::Value;

use super::{Error, GpuQuotaRefusal, Service, Submitter};
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
pub fn check_params(kind: &str, params: &Value, limits: &LimitsConfig) -> Result<(), Error> {
    walk(kind, params, String::new(), limits)
}

fn walk(kind: &str, v: &Value, path: String, limits: &LimitsConfig) -> Result<(), Error> {
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

fn check_one(kind: &str, which: &Limited, v: &Value, field: &str, l: &LimitsConfig) -> Result<(), Error> {
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
        return Err(Error::LimitExceeded {
            field: field.to_string(),
            message: format!("is {got} {unit}; this server allows at most {limit} (limits.{key})"),
        });
    }
    Ok(())
}

impl Service {
    /// Refuses a submission early when the submitter's key has used or reserved all its
    /// GPU-seconds for today; the binding check is [`Service::gpu_reservation`]'s, in the enqueue.
    pub(super) fn check_gpu_quota(&self, who: &Submitter) -> Result<(), Error> {
        let Some(limit) = who.gpu_seconds_per_day else { return Ok(()) };
        let used_ms = self.store().gpu_ms_used(&who.owner, day_of(now_ms()))?;
        let reserved_ms = self.store().gpu_ms_reserved(&who.owner)?;
        if used_ms.saturating_add(reserved_ms) < limit.saturating_mul(1000) {
            return Ok(());
        }
        Err(gpu_quota_refusal(who, used_ms, reserved_ms, 0, limit.saturating_mul(1000)).into())
    }

    /// The GPU time a job reserves against its owner's `gpu_seconds_per_day`, when it has
    /// one. Only boxes with GPUs reserve: GPU time is charged only for runs on a GPU, so on
    /// a CPU-only box the quota has nothing to hold back. Any job may land on a GPU when
    /// there is one (jobs needing no VRAM take a free GPU first), so every kind reserves there.
    pub(super) fn gpu_reservation(&self, who: &Submitter, job: &Job) -> Option<GpuQuota> {
        let limit = who.gpu_seconds_per_day?;
        if self.scheduler.gpus().is_empty() {
            return None;
        }
        let kind = self.scheduler.kind(&job.kind)?;
        let params: Value = serde_json::from_str(&job.params).unwrap_or_default();
        Some(GpuQuota {
            limit_ms: limit.saturating_mul(1000),
            estimate_ms: crate::kinds::estimate_gpu_ms(kind.as_ref(), &params),
        })
    }
}

/// The refusal naming `gpu_seconds_per_day`, the submitter, use against the limit and the
/// reset time.
pub(super) fn gpu_quota_refusal(
    who: &Submitter,
    used_ms: u64,
    reserved_ms: u64,
    estimate_ms: u64,
    limit_ms: u64,
) -> GpuQuotaRefusal {
    let now = now_ms();
    let reset = (day_of(now) + 1) * DAY_MS;
    let reset_at = chrono::DateTime::from_timestamp_millis(reset).map(|t| t.to_rfc3339()).unwrap_or_default();
    // Rounded up: a client that waits the whole seconds said must find the quota reset.
    let until_reset = u64::try_from(reset - now).map_or(1, |ms| ms.div_ceil(1000)).max(1);
    // Reservations free up as the submitter's jobs end; only today's use waits for midnight.
    let retry_after_s =
        if used_ms.saturating_add(estimate_ms.max(1)) <= limit_ms { until_reset.min(5) } else { until_reset };
    let secs = |ms: u64| ms.div_ceil(1000);
    let mut message = format!(
        "quota gpu_seconds_per_day: {} used {} of {} GPU-seconds today",
        who.label,
        used_ms / 1000,
        limit_ms / 1000
    );
    if reserved_ms > 0 {
        message.push_str(&format!(", {} more reserved by unfinished jobs", secs(reserved_ms)));
    }
    if estimate_ms > 0 {
        message.push_str(&format!(", and this job is estimated at {} s", secs(estimate_ms)));
    }
    message.push_str(&format!("; resets at {reset_at}"));
    GpuQuotaRefusal { message, retry_after_s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_and_message(e: Error) -> (String, String) {
        match e {
            Error::LimitExceeded { field, message } => (field, message),
            other => panic!("not a limit: {other}"),
        }
    }

    #[test]
    fn limits_name_the_field_and_the_config_key() {
        let l = LimitsConfig { max_prompt_chars: 5, max_steps: 50, ..LimitsConfig::default() };
        let (field, msg) =
            field_and_message(check_params("image", &json!({"prompt": "a cat!"}), &l).expect_err("long"));
        assert_eq!(field, "prompt");
        assert!(msg.contains("limits.max_prompt_chars"), "{msg}");
        let err =
            check_params("render", &json!({"scenes": [{"prompt": "ok"}, {"steps": "51"}]}), &l).expect_err("steps");
        assert_eq!(field_and_message(err).0, "scenes[1].steps");
        assert!(check_params("testcard", &json!({"steps": 1000}), &l).is_ok(), "testcard steps are ticks");
        let err = check_params("image", &json!({"width": 4096}), &l).expect_err("wide");
        assert!(field_and_message(err).1.contains("limits.max_image_side"));
        let err = check_params("video", &json!({"frames": 1_000_000}), &l).expect_err("frames");
        assert!(field_and_message(err).1.contains("limits.max_frames"));
        let err = check_params("speech", &json!({"duration_s": 1e9}), &l).expect_err("long");
        assert!(field_and_message(err).1.contains("limits.max_audio_seconds"));
        assert!(check_params("image", &json!({"prompt": "cat", "width": 512, "steps": 20}), &l).is_ok());
    }
}

//! Where wall time goes: inside model runs and waiting on ffmpeg. Totals feed `/metrics`;
//! while recording is on, every span is kept too, so `reelbox bench render` can split a
//! render's wall time per stage and count overlapping spans (two jobs, an encoder draining
//! while a model runs) once.
//!
//! Time waiting on ffmpeg is time our thread is blocked on it (writing frames into a full
//! pipe, reading decoded frames, waiting for it to exit, ffprobe), not the encoder's whole
//! lifetime: an encoder running beside our own frame work would otherwise hide that work.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What a span of time was spent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Inside an ONNX Runtime `run` call.
    Model,
    /// Blocked on an ffmpeg or ffprobe process.
    Ffmpeg,
}

/// One recorded span, in microseconds since the Unix epoch (comparable with job records).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub what: Busy,
    pub start_us: i64,
    pub end_us: i64,
}

static TOTAL_NS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static RECORDING: AtomicBool = AtomicBool::new(false);
static SPANS: Mutex<Vec<Span>> = Mutex::new(Vec::new());

fn unix_us(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Runs `f`, counting its wall time as `what`.
pub fn timed<R>(what: Busy, f: impl FnOnce() -> R) -> R {
    let (wall, t0) = (SystemTime::now(), Instant::now());
    let out = f();
    let took = t0.elapsed();
    TOTAL_NS[what as usize].fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    if RECORDING.load(Ordering::Relaxed) {
        let start_us = unix_us(wall);
        let span = Span { what, start_us, end_us: start_us + took.as_micros() as i64 };
        SPANS.lock().unwrap_or_else(|p| p.into_inner()).push(span);
    }
    out
}

/// Seconds counted as `what` since the process started.
pub fn total_seconds(what: Busy) -> f64 {
    TOTAL_NS[what as usize].load(Ordering::Relaxed) as f64 / 1e9
}

/// Starts keeping spans (dropping any kept before) or stops.
pub fn record(on: bool) {
    SPANS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    RECORDING.store(on, Ordering::Relaxed);
}

/// The spans kept so far.
pub fn spans() -> Vec<Span> {
    SPANS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Seconds of `[from_us, to_us)` covered by spans of `what` (any kind when `None`), with
/// overlapping spans counted once.
pub fn covered(spans: &[Span], what: Option<Busy>, from_us: i64, to_us: i64) -> f64 {
    let mut parts: Vec<(i64, i64)> = spans
        .iter()
        .filter(|s| what.is_none_or(|w| s.what == w))
        .map(|s| (s.start_us.max(from_us), s.end_us.min(to_us)))
        .filter(|(a, b)| a < b)
        .collect();
    parts.sort_unstable();
    let (mut total, mut reach) = (0i64, i64::MIN);
    for (a, b) in parts {
        let a = a.max(reach);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(what: Busy, a: i64, b: i64) -> Span {
        Span { what, start_us: a, end_us: b }
    }

    #[test]
    fn overlapping_spans_count_once_and_are_clipped_to_the_window() {
        let s = [span(Busy::Model, 0, 2_000_000), span(Busy::Ffmpeg, 1_000_000, 3_000_000)];
        assert_eq!(covered(&s, None, 0, 10_000_000), 3.0);
        assert_eq!(covered(&s, Some(Busy::Model), 0, 10_000_000), 2.0);
        assert_eq!(covered(&s, Some(Busy::Ffmpeg), 2_500_000, 10_000_000), 0.5);
        assert_eq!(covered(&s, None, 5_000_000, 6_000_000), 0.0);
    }

    #[test]
    fn spans_inside_a_longer_one_add_nothing() {
        let s = [span(Busy::Model, 0, 4_000_000), span(Busy::Model, 1_000_000, 2_000_000)];
        assert_eq!(covered(&s, None, 0, 4_000_000), 4.0);
    }
}

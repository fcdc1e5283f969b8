//! Pure text formatting of figures for the dashboard.

use crate::api::views::JobView;
use crate::store::records::{JobStatus, StageStatus};
use crate::time::Millis;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// `950ms`, `3.2s`, `4m05s`, `1h02m`, `3d04h`.
pub fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Memory in MiB as `512M`, `8.0G`, `80G`.
pub fn mib(m: u64) -> String {
    if m < 1024 {
        format!("{m}M")
    } else if m < 100 * 1024 {
        format!("{:.1}G", m as f64 / 1024.0)
    } else {
        format!("{}G", m / 1024)
    }
}

/// Energy as `3.2mWh`, `0.45Wh`, `12.3Wh`, `1.20kWh`.
pub fn energy(wh: f64) -> String {
    if wh < 0.1 {
        format!("{:.1}mWh", wh * 1000.0)
    } else if wh < 100.0 {
        format!("{wh:.2}Wh")
    } else if wh < 1000.0 {
        format!("{wh:.0}Wh")
    } else {
        format!("{:.2}kWh", wh / 1000.0)
    }
}

/// A cost with its currency: `0.0012 EUR`.
pub fn cost(amount: f64, currency: &str) -> String {
    let digits = if amount >= 1.0 { 2 } else { 4 };
    let value = if amount > 0.0 && amount < 0.0001 { "<0.0001".to_string() } else { format!("{amount:.digits$}") };
    if currency.is_empty() { value } else { format!("{value} {currency}") }
}

/// Milliseconds of an RFC 3339 time.
pub fn parse_time(t: Option<&str>) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(t?).ok().map(|d| d.timestamp_millis())
}

/// Time left of running job `job` at `now`, ms; `None` while there is no pace to go by.
/// The web studio's rule (`timeLeft` in `assets/web/watch.js`), so both say the same: at
/// the running stage's own pace where it has one (the share of the job it has covered,
/// its weight × step / total, took the time since the stage started), since a short first
/// stage, the earlier tries of a resumed job or a wait between them say nothing of the
/// stage running now; the stages after it go by their weights at that pace. Without one
/// (no step reported yet, a stage that weighs nothing, a daemon that sends no weights),
/// the whole job's pace since its first start, once it is past 2 %.
pub fn eta_ms(job: &JobView, now: Millis) -> Option<i64> {
    let p = &job.progress;
    let f = p.fraction;
    if job.state != JobStatus::Running || !(0.0..1.0).contains(&f) {
        return None;
    }
    let stage = job.stages.iter().find(|s| p.stage.as_ref() == Some(&s.name) && s.state == StageStatus::Running);
    let stage_pace = stage.and_then(|s| {
        let started = parse_time(s.started_at.as_deref())?;
        (s.weight > 0.0 && p.total > 0 && p.step > 0)
            .then(|| (now - started, s.weight * p.step as f64 / p.total as f64))
    });
    let job_pace = || parse_time(job.started_at.as_deref()).filter(|_| f > 0.02).map(|started| (now - started, f));
    let (spent, covered) = stage_pace.or_else(job_pace)?;
    Some((spent.max(0) as f64 / covered * (1.0 - f)).round() as i64)
}

/// A bar of `width` cells, `fraction` filled, with eighth-block resolution.
pub fn bar(fraction: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let f = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
    let eighths = (f * width as f64 * 8.0).round() as usize;
    let mut s = String::with_capacity(width * 3);
    for i in 0..width {
        let filled = eighths.saturating_sub(i * 8).min(8);
        s.push(if filled == 8 {
            '█'
        } else if filled == 0 {
            '·'
        } else {
            PARTS[filled]
        });
    }
    s
}

/// A sparkline of the last `width` values scaled to `max` (values above clip).
pub fn spark(values: &[f64], width: usize, max: f64) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let start = values.len().saturating_sub(width);
    let mut s: String = " ".repeat(width.saturating_sub(values.len() - start));
    for v in &values[start..] {
        let f = if max > 0.0 && v.is_finite() { (v / max).clamp(0.0, 1.0) } else { 0.0 };
        s.push(LEVELS[((f * 7.0).round() as usize).min(7)]);
    }
    s
}

/// Cuts `s` to `width` display columns (a CJK character takes two), marking the cut with
/// `…`. Counted in characters, a Japanese reason "fitted" at twice its room and the
/// terminal cut it silently, its `…` lost.
pub fn fit(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// The short form of a job id, one rule for the dashboard, the CLI and the API's names.
pub use crate::jobs::short_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_readable_units() {
        assert_eq!(duration(950), "950ms");
        assert_eq!(duration(3_249), "3.2s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(duration(-5), "0ms");
    }

    /// A running job of `stages` (name, state, weight, started `s` seconds before 0) that
    /// first started `started` seconds before 0, at `stage` `step`/`total`, `fraction` done.
    fn running(started: i64, stages: &[(&str, &str, f64, i64)], at: (&str, u64, u64), fraction: f64) -> JobView {
        let time = |s: i64| crate::api::views::time(-s * 1000);
        let stages: Vec<_> = stages
            .iter()
            .map(|&(name, state, weight, s)| {
                serde_json::json!({"name": name, "state": state, "weight": weight, "artifacts": [],
                    "started_at": (state != "pending").then(|| time(s)), "finished_at": null, "device": null,
                    "error": null, "energy_wh": null})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": "J", "kind": "render", "owner": "local", "state": "running", "priority": 0,
            "progress": {"fraction": fraction, "stage": at.0, "step": at.1, "total": at.2, "message": null},
            "stages": stages, "attempts": 1, "error": null, "params": {}, "device": "cpu",
            "created_at": time(started), "enqueued_at": time(started), "started_at": time(started),
            "finished_at": null, "energy_wh": null,
        }))
        .expect("job view")
    }

    /// A render whose keyframes took 90 s on a slow box (planned at 4 % of it) is at motion
    /// 50/100, 10 s into it: motion's pace says 10 s more and mux (weighing half of what
    /// motion does) 10 s, not the 2m30s the whole job's pace since its start said.
    #[test]
    fn time_left_goes_at_the_running_stages_pace() {
        let stages = [
            ("plan", "done", 0.01, 100),
            ("keyframes", "done", 0.04, 99),
            ("narration", "done", 0.05, 12),
            ("motion", "running", 0.6, 10),
            ("mux", "pending", 0.3, 0),
        ];
        let render = running(100, &stages, ("motion", 50, 100), 0.4);
        assert_eq!(eta_ms(&render, 0), Some(20_000));

        // A 60-step testcard (1 s a step) resumed after its first try ran 10 minutes ago:
        // its card, started again 10 s ago, is at step 10. Counted from the first start it
        // had 1h51m left; at the card's pace 110 s (50 s of card, and its summary stage,
        // which weighs half of this kind's job, at that pace too).
        let testcard = [("card", "running", 0.5, 10), ("summary", "pending", 0.5, 0)];
        let resumed = running(610, &testcard, ("card", 10, 60), 0.5 * 10.0 / 60.0);
        assert_eq!(eta_ms(&resumed, 0), Some(110_000));
    }

    /// Without a stage pace the whole job's since its first start, once past 2 %; nothing
    /// before that, nor once it is all done, nor for a job not running.
    #[test]
    fn time_left_without_a_stage_pace_goes_by_the_whole_job() {
        let unweighed = [("card", "running", 0.0, 10), ("summary", "pending", 0.0, 0)];
        assert_eq!(eta_ms(&running(10, &unweighed, ("card", 10, 60), 0.25), 0), Some(30_000));
        assert_eq!(eta_ms(&running(10, &unweighed, ("card", 1, 60), 0.02), 0), None);
        let no_step = [("card", "running", 0.5, 10), ("summary", "pending", 0.5, 0)];
        assert_eq!(eta_ms(&running(10, &no_step, ("card", 0, 0), 0.25), 0), Some(30_000));
        assert_eq!(eta_ms(&running(10, &no_step, ("card", 60, 60), 1.0), 0), None);
        let queued = JobView { state: JobStatus::Queued, ..running(10, &no_step, ("card", 10, 60), 0.25) };
        assert_eq!(eta_ms(&queued, 0), None);
    }

    #[test]
    fn bars_and_sparks_have_the_asked_width() {
        assert_eq!(bar(0.5, 4), "██··");
        assert_eq!(bar(0.25, 2), "▌·");
        assert_eq!(bar(0.0625, 2), "▏·");
        assert_eq!(bar(f64::NAN, 3), "···");
        assert_eq!(spark(&[0.0, 50.0, 100.0], 5, 100.0), "  ▁▅█");
        assert_eq!(spark(&[100.0; 9], 3, 100.0), "███");
    }

    #[test]
    fn units_for_memory_and_energy() {
        assert_eq!(mib(512), "512M");
        assert_eq!(mib(8192), "8.0G");
        assert_eq!(mib(81920 * 2), "160G");
        assert_eq!(energy(0.0032), "3.2mWh");
        assert_eq!(energy(12.345), "12.35Wh");
        assert_eq!(energy(1500.0), "1.50kWh");
        assert_eq!(cost(0.00123, "EUR"), "0.0012 EUR");
        assert_eq!(cost(0.000003, ""), "<0.0001");
        assert_eq!(fit("abcdef", 4), "abc…");
        // Wide characters take two columns: the cut is by columns, the `…` always shown.
        assert_eq!(fit("モデルが見つかりません", 10), "モデルが…");
        assert_eq!(fit("モデルが見つかりません", 9), "モデルが…");
        assert_eq!(fit("モデル", 6), "モデル");
        assert_eq!(short_id("01JD0000000000000000ABCDEF"), "00ABCDEF");
    }
}

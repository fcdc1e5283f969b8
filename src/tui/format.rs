//! Pure text formatting of figures for the dashboard.

use crate::time::Millis;

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

/// Time left for a job `fraction` done after running since `started`: elapsed time
/// scaled by what is left. `None` before any progress.
pub fn eta_ms(fraction: f64, started: Millis, now: Millis) -> Option<i64> {
    if !(0.001..1.0).contains(&fraction) {
        return None;
    }
    let elapsed = (now - started).max(0) as f64;
    Some((elapsed * (1.0 - fraction) / fraction).round() as i64)
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

/// Cuts `s` to `width` characters, marking the cut with `…`.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
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

    #[test]
    fn eta_scales_elapsed_by_what_is_left() {
        assert_eq!(eta_ms(0.25, 0, 10_000), Some(30_000));
        assert_eq!(eta_ms(0.0, 0, 10_000), None);
        assert_eq!(eta_ms(1.0, 0, 10_000), None);
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
        assert_eq!(short_id("01JD0000000000000000ABCDEF"), "00ABCDEF");
    }
}

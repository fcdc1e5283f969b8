//! `nvidia-smi --query-gpu` read beside reelbox's own NVML sample of the same GPU, so the
//! GPU check can show that the telemetry the API and dashboard serve is the driver's. Two
//! readings taken a moment apart differ by what changed in between; each field has a
//! tolerance that covers that (utilisation is a share over the driver's last sample period).

use serde::Serialize;

use super::sample::GpuSample;

/// The fields asked of `nvidia-smi`, in the order of its CSV columns.
pub const QUERY_FIELDS: &str = "index,memory.used,memory.total,utilization.gpu,power.draw,temperature.gpu,power.limit";

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SmiReading {
    pub index: u32,
    pub mem_used_mib: Option<u64>,
    pub mem_total_mib: Option<u64>,
    pub util_gpu: Option<u32>,
    pub power_w: Option<f64>,
    pub temperature_c: Option<u32>,
    pub power_limit_w: Option<f64>,
}

/// Parses `nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits`; fields the
/// card does not support (`[N/A]`, `[Not Supported]`) are `None`.
pub fn parse_csv(text: &str) -> Vec<SmiReading> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if cols.len() < 7 {
                return None;
            }
            let num = |i: usize| cols[i].parse::<f64>().ok();
            Some(SmiReading {
                index: cols[0].parse().ok()?,
                mem_used_mib: num(1).map(|v| v as u64),
                mem_total_mib: num(2).map(|v| v as u64),
                util_gpu: num(3).map(|v| v as u32),
                power_w: num(4),
                temperature_c: num(5).map(|v| v as u32),
                power_limit_w: num(6),
            })
        })
        .collect()
}

/// Why `nvidia-smi` gave no reading.
#[derive(Debug, thiserror::Error)]
pub enum SmiError {
    #[error("cannot run nvidia-smi: {0}")]
    Spawn(#[source] std::io::Error),
    /// It ran and failed; the text is its stderr.
    #[error("nvidia-smi failed: {0}")]
    Failed(String),
    #[error("nvidia-smi printed no line for GPU {0}")]
    NoLine(u32),
}

/// Runs `nvidia-smi` for GPU `index`.
pub fn read(index: u32) -> Result<SmiReading, SmiError> {
    let out = std::process::Command::new("nvidia-smi")
        .args([format!("--query-gpu={QUERY_FIELDS}"), "--format=csv,noheader,nounits".into(), format!("--id={index}")])
        .output()
        .map_err(SmiError::Spawn)?;
    if !out.status.success() {
        return Err(SmiError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    parse_csv(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .find(|r| r.index == index)
        .ok_or(SmiError::NoLine(index))
}

/// One field read both ways.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub field: &'static str,
    pub nvml: Option<f64>,
    pub smi: Option<f64>,
    /// Largest difference explained by the moment between the two readings.
    pub tolerance: f64,
    /// Both present and within the tolerance.
    pub agrees: bool,
}

/// Sets reelbox's NVML sample beside `nvidia-smi`'s reading, field by field.
pub fn compare(nvml: &GpuSample, smi: &SmiReading) -> Vec<Agreement> {
    let row = |field, nvml: Option<f64>, smi: Option<f64>, tolerance: f64| Agreement {
        field,
        nvml,
        smi,
        tolerance,
        agrees: matches!((nvml, smi), (Some(a), Some(b)) if (a - b).abs() <= tolerance),
    };
    let f = |v: Option<u64>| v.map(|x| x as f64);
    let g = |v: Option<u32>| v.map(f64::from);
    let power_tol = smi.power_limit_w.or(nvml.power_limit_w).map_or(15.0, |l| (l * 0.05).max(15.0));
    vec![
        // Memory moves only while a model loads; 64 MiB covers an allocator's growth.
        row("memory.used MiB", f(nvml.mem_used_mib), f(smi.mem_used_mib), 64.0),
        row("memory.total MiB", f(nvml.mem_total_mib), f(smi.mem_total_mib), 1.0),
        row("utilization.gpu %", g(nvml.util_gpu), g(smi.util_gpu), 25.0),
        row("power.draw W", nvml.power_w, smi.power_w, power_tol),
        row("temperature.gpu C", g(nvml.temperature_c), g(smi.temperature_c), 3.0),
        row("power.limit W", nvml.power_limit_w, smi.power_limit_w, 1.0),
    ]
}

/// Average power implied by two energy-counter readings `dt_s` apart, watts: the counter
/// is plausible when this matches the power the driver reports over the same time.
pub fn mean_power_w(energy_mj_before: u64, energy_mj_after: u64, dt_s: f64) -> Option<f64> {
    (dt_s > 0.0 && energy_mj_after >= energy_mj_before)
        .then(|| (energy_mj_after - energy_mj_before) as f64 / 1000.0 / dt_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_parse_and_unsupported_fields_are_none() {
        let text = "0, 1024, 143771, 3, 75.32, 31, 700.00\n1, 0, 24576, [N/A], [Not Supported], 40, [N/A]\n";
        let r = parse_csv(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].mem_total_mib, Some(143771));
        assert_eq!(r[0].power_w, Some(75.32));
        assert_eq!((r[1].util_gpu, r[1].power_w, r[1].temperature_c), (None, None, Some(40)));
        assert!(parse_csv("garbage\n").is_empty());
    }

    #[test]
    fn nvml_and_smi_agree_within_what_time_explains() {
        let nvml = GpuSample {
            mem_used_mib: Some(1000),
            mem_total_mib: Some(143771),
            util_gpu: Some(0),
            power_w: Some(80.0),
            temperature_c: Some(30),
            power_limit_w: Some(700.0),
            ..Default::default()
        };
        let smi = SmiReading {
            index: 0,
            mem_used_mib: Some(1030),
            mem_total_mib: Some(143771),
            util_gpu: Some(10),
            power_w: Some(110.0),
            temperature_c: Some(31),
            power_limit_w: Some(700.0),
        };
        assert!(compare(&nvml, &smi).iter().all(|a| a.agrees), "{:?}", compare(&nvml, &smi));
        let off = SmiReading { mem_used_mib: Some(5000), power_w: None, ..smi };
        let rows = compare(&nvml, &off);
        let agrees = |f: &str| rows.iter().find(|a| a.field.starts_with(f)).map(|a| a.agrees);
        assert_eq!(agrees("memory.used"), Some(false));
        assert_eq!(agrees("power.draw"), Some(false), "a missing reading never agrees");
    }

    #[test]
    fn energy_counter_gives_mean_power() {
        assert_eq!(mean_power_w(1_000_000, 1_150_000, 2.0), Some(75.0));
        assert_eq!(mean_power_w(5, 4, 1.0), None, "a counter never runs backwards");
    }
}

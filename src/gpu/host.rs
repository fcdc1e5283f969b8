//! CPU and memory of the host from `/proc/stat` and `/proc/meminfo`: what `reelbox top`
//! shows on GPU-less boxes and beside the GPUs elsewhere.

use super::sample::HostSample;

/// Jiffies counters from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`; iowait and idle count as not busy.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest times are already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes { busy: total.saturating_sub(idle), total })
}

/// Busy percentage between two readings.
pub fn cpu_percent(prev: CpuTimes, now: CpuTimes) -> Option<f32> {
    let total = now.total.checked_sub(prev.total)?;
    if total == 0 {
        return None;
    }
    let busy = now.busy.saturating_sub(prev.busy);
    Some((busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0) as f32)
}

/// (used, total) MiB from `/proc/meminfo`; used is total minus available.
pub fn parse_meminfo(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    let total_kib = field("MemTotal:")?;
    let avail_kib = field("MemAvailable:").or_else(|| field("MemFree:"))?;
    Some((total_kib.saturating_sub(avail_kib) / 1024, total_kib / 1024))
}

/// The host's total memory, MiB, from `/proc/meminfo` (`None` where it cannot be read).
pub fn mem_total_mib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| parse_meminfo(&s)).map(|(_, total)| total)
}

/// Reads host figures, remembering the last CPU counters for the next delta.
#[derive(Debug, Default)]
pub struct HostReader {
    prev: Option<CpuTimes>,
}

impl HostReader {
    /// Takes one reading; the first has no CPU percentage.
    pub fn read(&mut self) -> HostSample {
        let now = std::fs::read_to_string("/proc/stat").ok().and_then(|s| parse_cpu_times(&s));
        let cpu_percent = match (self.prev, now) {
            (Some(p), Some(n)) => cpu_percent(p, n),
            _ => None,
        };
        self.prev = now;
        let mem = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| parse_meminfo(&s));
        HostSample {
            cpu_percent,
            cpus: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            mem_used_mib: mem.map(|m| m.0),
            mem_total_mib: mem.map(|m| m.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_counts_iowait_as_idle() {
        let a = parse_cpu_times("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("parses");
        let b = parse_cpu_times("cpu  150 0 150 850 150 0 0 0 0 0\n").expect("parses");
        assert_eq!(a, CpuTimes { busy: 200, total: 1000 });
        // 100 busy of 300 elapsed jiffies.
        assert!((cpu_percent(a, b).expect("delta") - 33.333).abs() < 0.01);
    }

    #[test]
    fn meminfo_used_is_total_minus_available() {
        let text = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8192000 kB\n";
        assert_eq!(parse_meminfo(text), Some((8000, 16000)));
    }

    #[test]
    fn unchanged_counters_give_no_percentage() {
        let a = CpuTimes { busy: 5, total: 10 };
        assert_eq!(cpu_percent(a, a), None);
    }
}

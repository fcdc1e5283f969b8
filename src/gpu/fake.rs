//! A fake GPU source for machines without NVIDIA cards: N GPUs with given memory sizes and
//! deterministic readings. Chosen with `REELBOX_FAKE_GPUS="8192,24576"` (MiB per GPU) so
//! tests can drive the real daemon's placement, energy accounting and dashboard. The fake
//! stands in for a working CUDA setup too, unless the list holds `probe`
//! (`"8192,probe"`): then the real ONNX Runtime is asked whether its CUDA provider
//! registers, as on a box with a real card (a CPU build says no).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::sample::{GpuProcess, GpuSample};
use super::{DeviceId, DeviceInfo, TelemetrySource};

/// Environment variable that selects the fake source.
pub const FAKE_GPUS_ENV: &str = crate::config::env::REELBOX_FAKE_GPUS;
/// Constant draw the fake energy counter integrates, watts.
pub const FAKE_POWER_W: u64 = 100;

/// Fake GPUs with fixed memory totals.
pub struct FakeGpus {
    totals_mib: Vec<u64>,
    /// Ask the real runtime whether CUDA registers instead of pretending it does.
    probe: bool,
    ticks: AtomicU64,
    born: Instant,
}

/// Why `REELBOX_FAKE_GPUS` could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{FAKE_GPUS_ENV}={value:?} is not a comma-separated list of memory sizes in MiB (and optionally `probe`)")]
pub struct FakeSpecError {
    pub value: String,
}

impl FakeGpus {
    /// GPUs with these memory totals (MiB), indexed 0, 1, ...
    pub fn new(totals_mib: Vec<u64>) -> Self {
        Self { totals_mib, probe: false, ticks: AtomicU64::new(0), born: Instant::now() }
    }

    /// Parses a spec such as `8192,24576` or `8192,probe`.
    pub fn parse(spec: &str) -> Result<Self, FakeSpecError> {
        let items: Vec<&str> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let probe = items.contains(&"probe");
        let totals: Result<Vec<u64>, _> = items.iter().filter(|s| **s != "probe").map(|s| s.parse::<u64>()).collect();
        match totals {
            Ok(t) if !t.is_empty() && t.iter().all(|&m| m > 0) => Ok(Self { probe, ..Self::new(t) }),
            _ => Err(FakeSpecError { value: spec.to_string() }),
        }
    }

    /// Memory other processes hold on fake GPU `i`: an eighth of it, so the dashboard and
    /// placement see a GPU that is not empty.
    fn foreign_mib(&self, i: usize) -> u64 {
        self.totals_mib.get(i).copied().unwrap_or(0) / 8
    }

    /// The reading of GPU `i` at sample number `tick`; a pure function so dashboard
    /// snapshots are stable.
    pub fn reading(&self, i: usize, tick: u64, energy_mj: Option<u64>) -> GpuSample {
        let total = self.totals_mib.get(i).copied().unwrap_or(0);
        let util = ((tick * 13 + i as u64 * 37) % 101) as u32;
        let foreign = self.foreign_mib(i);
        GpuSample {
            index: i as u32,
            host: None,
            name: format!("Fake GPU {} GiB", total / 1024),
            uuid: Some(format!("GPU-fa4e0000-0000-0000-0000-{i:012}")),
            util_gpu: Some(util),
            util_mem: Some(util / 2),
            mem_used_mib: Some(foreign),
            mem_total_mib: Some(total),
            temperature_c: Some(35 + util / 3),
            power_w: Some(30.0 + util as f64 * 2.5),
            power_limit_w: Some(300.0),
            energy_mj,
            sm_clock_mhz: Some(1200 + util * 6),
            mem_clock_mhz: Some(9501),
            // A passively cooled card has no fan: shown as N/A.
            fan_percent: (i % 2 == 0).then_some(30 + util / 2),
            pcie_tx_kib_s: Some(u64::from(util) * 1024),
            pcie_rx_kib_s: Some(u64::from(util) * 512),
            processes: vec![GpuProcess {
                pid: 4242 + i as u32,
                name: Some("fake-other".into()),
                used_mib: Some(foreign),
                ours: false,
            }],
        }
    }
}

impl TelemetrySource for FakeGpus {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn fakes_cuda(&self) -> bool {
        !self.probe
    }

    fn gpus(&self) -> Vec<DeviceInfo> {
        self.totals_mib
            .iter()
            .enumerate()
            .map(|(i, &mib)| DeviceInfo {
                id: DeviceId::Cuda(i as u32),
                name: format!("Fake GPU {} GiB", mib / 1024),
                memory_total: mib * 1024 * 1024,
            })
            .collect()
    }

    fn sample_gpus(&self) -> Vec<GpuSample> {
        let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
        (0..self.totals_mib.len()).map(|i| self.reading(i, tick, self.energy_mj(i as u32))).collect()
    }

    fn energy_mj(&self, index: u32) -> Option<u64> {
        // W × ms = mJ: the counter grows as if the card drew FAKE_POWER_W all along.
        ((index as usize) < self.totals_mib.len()).then(|| self.born.elapsed().as_millis() as u64 * FAKE_POWER_W)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_lists_memory_per_gpu() {
        let f = FakeGpus::parse("8192, 24576").expect("valid");
        let gpus = f.gpus();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].id, DeviceId::Cuda(1));
        assert_eq!(gpus[1].memory_total, 24576 << 20);
        assert!(f.fakes_cuda(), "plain fakes stand in for a working CUDA setup");
        let probed = FakeGpus::parse("8192,probe").expect("valid");
        assert_eq!((probed.gpus().len(), probed.fakes_cuda()), (1, false));
        assert!(FakeGpus::parse("probe").is_err(), "probe alone lists no GPU");
    }

    #[test]
    fn bad_spec_is_refused_with_the_variable_name() {
        let err = FakeGpus::parse("8G").err().expect("must fail");
        assert!(err.to_string().contains(FAKE_GPUS_ENV), "{err}");
        assert!(FakeGpus::parse("0").is_err());
    }

    #[test]
    fn energy_counter_grows_with_time() {
        let f = FakeGpus::new(vec![1024]);
        let a = f.energy_mj(0).expect("counter");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = f.energy_mj(0).expect("counter");
        assert!(b >= a + 20 * FAKE_POWER_W, "{a} -> {b}");
        assert_eq!(f.energy_mj(1), None);
    }
}

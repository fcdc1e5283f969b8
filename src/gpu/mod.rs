//! GPU devices: identities, and telemetry behind a trait so machines without NVML (and
//! tests) use the same code path as real NVIDIA boxes.
//!
//! Sources: [`nvml::NvmlGpus`] (the NVIDIA driver, loaded at run time), [`NoGpus`] (no
//! driver: CPU-only telemetry) and [`fake::FakeGpus`] (tests, chosen with
//! `REELBOX_FAKE_GPUS`). GPU indices are NVML's, which follow PCI bus order; set
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA numbers the cards the same way.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod fake;
pub mod host;
pub mod nvml;
pub mod remote;
pub mod sample;
pub mod smi;
pub mod telemetry;

pub use remote::BoxName;
pub use sample::{GpuProcess, GpuSample, HostSample, TelemetrySample};
pub use telemetry::Telemetry;

/// A device a worker runs jobs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeviceId {
    /// The CPU worker, always present.
    Cpu,
    /// An NVIDIA GPU by its NVML/CUDA index.
    Cuda(u32),
    /// A device of a cluster worker box: its CPU (`gpu: None`) or one of its GPUs.
    Remote {
        /// The worker box.
        host: BoxName,
        /// The GPU index on that box; `None` is its CPU.
        gpu: Option<u32>,
    },
}

impl DeviceId {
    /// Stable short name used in APIs and logs: `cpu`, `cuda:0`.
    pub fn name(&self) -> String {
        match self {
            DeviceId::Cpu => "cpu".into(),
            DeviceId::Cuda(i) => format!("cuda:{i}"),
            DeviceId::Remote { host, gpu } => format!("{host}/{}", DeviceId::local(*gpu).name()),
        }
    }

    /// The local device of the same kind: what a remote device is on its own box.
    pub fn local(gpu: Option<u32>) -> Self {
        gpu.map_or(DeviceId::Cpu, DeviceId::Cuda)
    }

    /// Whether this device is a GPU (here or on a worker box).
    pub fn is_gpu(&self) -> bool {
        matches!(self, DeviceId::Cuda(_) | DeviceId::Remote { gpu: Some(_), .. })
    }

    /// Parses the short name back.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some((host, local)) = s.split_once('/') {
            let host = BoxName::new(host).ok()?;
            return match DeviceId::parse(local)? {
                DeviceId::Cpu => Some(DeviceId::Remote { host, gpu: None }),
                DeviceId::Cuda(i) => Some(DeviceId::Remote { host, gpu: Some(i) }),
                DeviceId::Remote { .. } => None,
            };
        }
        if s == "cpu" {
            return Some(DeviceId::Cpu);
        }
        s.strip_prefix("cuda:")?.parse().ok().map(DeviceId::Cuda)
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a worker needs to know about a device to place jobs on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub id: DeviceId,
    pub name: String,
    /// Total memory in bytes (system RAM for the CPU).
    pub memory_total: u64,
}

/// A source of device inventory; NVML on real boxes, a fixed list in tests.
pub trait DeviceSource: Send + Sync {
    /// The GPUs present (may be empty). The CPU is implied and not listed.
    fn gpus(&self) -> Vec<DeviceInfo>;
}

/// Where GPU readings come from: NVML, nothing, or fakes for tests.
pub trait TelemetrySource: Send + Sync {
    /// Short name shown in the API: `nvml`, `none`, `fake`.
    fn name(&self) -> &'static str;
    /// The GPUs present (may be empty). The CPU is implied and not listed.
    fn gpus(&self) -> Vec<DeviceInfo>;
    /// One reading of every GPU; fields a card does not support are `None`.
    fn sample_gpus(&self) -> Vec<GpuSample>;
    /// GPU `index`'s energy counter, millijoules since the driver loaded.
    fn energy_mj(&self, index: u32) -> Option<u64>;
    /// True when the source also stands in for a working CUDA setup (fakes), so nobody
    /// asks ONNX Runtime whether its CUDA provider registers on these GPUs.
    fn fakes_cuda(&self) -> bool {
        false
    }
}

impl<T: TelemetrySource> DeviceSource for T {
    fn gpus(&self) -> Vec<DeviceInfo> {
        TelemetrySource::gpus(self)
    }
}

/// The device source for machines without NVIDIA GPUs.
pub struct NoGpus;

impl TelemetrySource for NoGpus {
    fn name(&self) -> &'static str {
        "none"
    }

    fn gpus(&self) -> Vec<DeviceInfo> {
        Vec::new()
    }

    fn sample_gpus(&self) -> Vec<GpuSample> {
        Vec::new()
    }

    fn energy_mj(&self, _index: u32) -> Option<u64> {
        None
    }
}

/// The telemetry source for this process: fakes when `REELBOX_FAKE_GPUS` is set, else
/// NVML when the driver loads, else none (the CPU still works).
pub fn open_source() -> Arc<dyn TelemetrySource> {
    if let Some(spec) = crate::config::env::fake_gpus() {
        match fake::FakeGpus::parse(&spec) {
            Ok(f) => {
                tracing::warn!("using {} fake GPUs from {}", TelemetrySource::gpus(&f).len(), fake::FAKE_GPUS_ENV);
                return Arc::new(f);
            }
            Err(e) => tracing::error!("{e}; ignoring it"),
        }
    }
    match nvml::NvmlGpus::open() {
        Ok(n) => Arc::new(n),
        Err(e) => {
            tracing::info!("{}; GPU telemetry off, CPU only", nvml_unavailable(&e));
            Arc::new(NoGpus)
        }
    }
}

/// Why NVML cannot be used, in the words `reelbox doctor` prints (a box without the NVIDIA
/// driver is the usual case, and libloading's own text reads as a crash).
pub fn nvml_unavailable(e: &nvml_wrapper::error::NvmlError) -> String {
    match e {
        nvml_wrapper::error::NvmlError::LibloadingError(_) => "no NVIDIA driver: libnvidia-ml.so.1 not found".into(),
        e => format!("NVML unavailable: {e}"),
    }
}

/// The GPUs of `all` that config `workers` allows: none when `use_gpus` is off, else
/// those `gpus` lists (all when the list is empty).
pub fn filter_gpus(all: &[DeviceInfo], workers: &crate::config::WorkersConfig) -> Vec<DeviceInfo> {
    if !workers.use_gpus {
        return Vec::new();
    }
    let allowed = &workers.gpus;
    for i in allowed {
        if !all.iter().any(|d| d.id == DeviceId::Cuda(*i)) {
            tracing::warn!("workers.gpus names GPU {i}, which this machine does not have");
        }
    }
    all.iter()
        .filter(|d| matches!(d.id, DeviceId::Cuda(i) if allowed.is_empty() || allowed.contains(&i)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gpu_list_limits_the_visible_set() {
        let all = TelemetrySource::gpus(&fake::FakeGpus::new(vec![8192, 8192, 8192]));
        let workers = |gpus: Vec<u32>, use_gpus| crate::config::WorkersConfig { gpus, use_gpus, ..Default::default() };
        let ids: Vec<_> = filter_gpus(&all, &workers(vec![0, 2, 7], true)).into_iter().map(|d| d.id).collect();
        assert_eq!(ids, vec![DeviceId::Cuda(0), DeviceId::Cuda(2)]);
        assert_eq!(filter_gpus(&all, &workers(vec![], true)).len(), 3, "empty list means all");
        assert!(filter_gpus(&all, &workers(vec![0], false)).is_empty(), "use_gpus = false means none");
    }
}

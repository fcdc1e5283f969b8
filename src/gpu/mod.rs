//! GPU devices: identities, and telemetry behind a trait so machines without NVML (and
//! tests) use the same code path as real NVIDIA boxes.

use serde::{Deserialize, Serialize};

/// A device a worker runs jobs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeviceId {
    /// The CPU worker, always present.
    Cpu,
    /// An NVIDIA GPU by its NVML/CUDA index.
    Cuda(u32),
}

impl DeviceId {
    /// Stable short name used in APIs and logs: `cpu`, `cuda:0`.
    pub fn name(&self) -> String {
        match self {
            DeviceId::Cpu => "cpu".into(),
            DeviceId::Cuda(i) => format!("cuda:{i}"),
        }
    }

    /// Parses the short name back.
    pub fn parse(s: &str) -> Option<Self> {
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

/// The device source for machines without NVIDIA GPUs.
pub struct NoGpus;

impl DeviceSource for NoGpus {
    fn gpus(&self) -> Vec<DeviceInfo> {
        Vec::new()
    }
}

/// GPU indices the daemon may use. Until telemetry lands this is the configured list,
/// further limited by nothing; without NVML no GPU is visible.
pub fn visible_gpus(config: &crate::config::Config) -> Vec<u32> {
    let _ = config;
    Vec::new()
}

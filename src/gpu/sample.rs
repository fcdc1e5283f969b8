//! One telemetry sample: what the host and each GPU were doing at one moment. Every
//! reading a device may not support is an `Option`, so a missing sensor is `null` in JSON
//! and `N/A` on screen, never an error.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Millis;

/// The host and all GPUs at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TelemetrySample {
    /// When the sample was taken, Unix milliseconds.
    #[schema(value_type = i64)]
    pub at_ms: Millis,
    pub host: HostSample,
    pub gpus: Vec<GpuSample>,
    /// Worker boxes' GPUs from their last heartbeats (each with `host` set), after this
    /// box's own; empty without a cluster.
    #[serde(default)]
    pub remote_gpus: Vec<GpuSample>,
}

impl TelemetrySample {
    /// This box's GPUs, then the worker boxes'.
    pub fn all_gpus(&self) -> impl Iterator<Item = &GpuSample> {
        self.gpus.iter().chain(&self.remote_gpus)
    }
}

/// CPU and memory of the machine, from `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostSample {
    /// Busy share of all CPUs since the previous sample, 0–100 (`null` on the first).
    pub cpu_percent: Option<f32>,
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in use (total minus available), MiB.
    pub mem_used_mib: Option<u64>,
    pub mem_total_mib: Option<u64>,
}

/// One GPU's readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuSample {
    /// NVML index (PCI bus order) on its box.
    pub index: u32,
    /// The worker box this GPU is in; absent for this box's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub name: String,
    pub uuid: Option<String>,
    /// Share of time a kernel ran, percent.
    pub util_gpu: Option<u32>,
    /// Share of time device memory was read or written, percent.
    pub util_mem: Option<u32>,
    pub mem_used_mib: Option<u64>,
    pub mem_total_mib: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// Energy used since the driver loaded, millijoules.
    pub energy_mj: Option<u64>,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub fan_percent: Option<u32>,
    /// PCIe throughput towards the host, KiB/s.
    pub pcie_tx_kib_s: Option<u64>,
    /// PCIe throughput from the host, KiB/s.
    pub pcie_rx_kib_s: Option<u64>,
    pub processes: Vec<GpuProcess>,
}

/// A process holding GPU memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuProcess {
    pub pid: u32,
    /// Command name from `/proc/PID/comm`, when readable.
    pub name: Option<String>,
    pub used_mib: Option<u64>,
    /// True for this reelbox daemon.
    pub ours: bool,
}

impl GpuSample {
    /// The device id as everywhere else: `cuda:N`, or `NAME/cuda:N` on a worker box.
    pub fn device(&self) -> String {
        match &self.host {
            Some(h) => format!("{h}/cuda:{}", self.index),
            None => format!("cuda:{}", self.index),
        }
    }

    /// Whether this is the same GPU as `other` (same box, same index).
    pub fn same_gpu(&self, other: &GpuSample) -> bool {
        self.index == other.index && self.host == other.host
    }

    /// Free memory by the driver's count, MiB.
    pub fn mem_free_mib(&self) -> Option<u64> {
        Some(self.mem_total_mib?.saturating_sub(self.mem_used_mib?))
    }

    /// GPU memory held by this daemon; `None` when the driver lists no process at all
    /// (it may not support listing them, so "none" cannot be told from "unknown").
    pub fn ours_mib(&self) -> Option<u64> {
        if self.processes.is_empty() {
            return None;
        }
        Some(self.processes.iter().filter(|p| p.ours).filter_map(|p| p.used_mib).sum())
    }
}

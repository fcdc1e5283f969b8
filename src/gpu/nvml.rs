//! NVIDIA GPUs through NVML (nvml-wrapper). The library is loaded at run time, so a binary
//! built here runs on boxes without the driver: `NvmlGpus::open` then fails and the
//! daemon falls back to CPU-only telemetry.

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;

use super::sample::{GpuProcess, GpuSample};
use super::{DeviceId, DeviceInfo, TelemetrySource};

const MIB: u64 = 1024 * 1024;

/// GPUs reported by the NVIDIA driver.
pub struct NvmlGpus {
    nvml: Nvml,
    count: u32,
    our_pid: u32,
}

impl NvmlGpus {
    /// Loads `libnvidia-ml.so` and counts GPUs; an error when there is no driver.
    pub fn open() -> Result<Self, nvml_wrapper::error::NvmlError> {
        let nvml = Nvml::init()?;
        let count = nvml.device_count()?;
        Ok(Self { nvml, count, our_pid: std::process::id() })
    }

    fn read(&self, index: u32) -> Option<GpuSample> {
        let d = self.nvml.device_by_index(index).ok()?;
        let mem = d.memory_info().ok();
        let util = d.utilization_rates().ok();
        let mut processes: Vec<GpuProcess> = Vec::new();
        let procs = d.running_compute_processes().unwrap_or_default().into_iter().chain(
            // Graphics contexts (a desktop session) hold memory too.
            d.running_graphics_processes().unwrap_or_default(),
        );
        for p in procs {
            if processes.iter().any(|q| q.pid == p.pid) {
                continue;
            }
            processes.push(GpuProcess {
                pid: p.pid,
                name: std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).ok().map(|s| s.trim().to_string()),
                used_mib: match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => Some(b / MIB),
                    UsedGpuMemory::Unavailable => None,
                },
                ours: p.pid == self.our_pid,
            });
        }
        let fan = d.num_fans().ok().filter(|&n| n > 0).and_then(|_| d.fan_speed(0).ok());
        Some(GpuSample {
            index,
            host: None,
            name: d.name().unwrap_or_else(|_| format!("GPU {index}")),
            uuid: d.uuid().ok(),
            util_gpu: util.as_ref().map(|u| u.gpu),
            util_mem: util.as_ref().map(|u| u.memory),
            mem_used_mib: mem.as_ref().map(|m| m.used / MIB),
            mem_total_mib: mem.as_ref().map(|m| m.total / MIB),
            temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
            power_w: d.power_usage().ok().map(|mw| f64::from(mw) / 1000.0),
            power_limit_w: d.enforced_power_limit().ok().map(|mw| f64::from(mw) / 1000.0),
            energy_mj: d.total_energy_consumption().ok(),
            sm_clock_mhz: d.clock_info(Clock::SM).ok(),
            mem_clock_mhz: d.clock_info(Clock::Memory).ok(),
            fan_percent: fan,
            pcie_tx_kib_s: d.pcie_throughput(PcieUtilCounter::Send).ok().map(u64::from),
            pcie_rx_kib_s: d.pcie_throughput(PcieUtilCounter::Receive).ok().map(u64::from),
            processes,
        })
    }
}

impl TelemetrySource for NvmlGpus {
    fn name(&self) -> &'static str {
        "nvml"
    }

    fn gpus(&self) -> Vec<DeviceInfo> {
        (0..self.count)
            .filter_map(|i| {
                let d = self.nvml.device_by_index(i).ok()?;
                Some(DeviceInfo {
                    id: DeviceId::Cuda(i),
                    name: d.name().unwrap_or_else(|_| format!("GPU {i}")),
                    memory_total: d.memory_info().map(|m| m.total).unwrap_or(0),
                })
            })
            .collect()
    }

    fn sample_gpus(&self) -> Vec<GpuSample> {
        (0..self.count).filter_map(|i| self.read(i)).collect()
    }

    fn energy_mj(&self, index: u32) -> Option<u64> {
        self.nvml.device_by_index(index).ok()?.total_energy_consumption().ok()
    }
}

//! `/metrics`: a small registry that renders the Prometheus text format (version 0.0.4).
//! Anything can add to it: set or add to named counters and gauges, or register a
//! [`Collector`] that writes its families at scrape time (GPU telemetry does).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::gpu::Telemetry;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Writes metric families at scrape time.
pub trait Collector: Send + Sync {
    /// Appends this collector's families to `out`.
    fn collect(&self, out: &mut Exposition);
}

/// Prometheus text being written; each family's `# HELP`/`# TYPE` appear once.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    declared: HashSet<String>,
}

impl Exposition {
    /// Declares a family (idempotent).
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        if self.declared.insert(name.to_string()) {
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        }
    }

    /// Writes one sample of a declared family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// The text so far.
    pub fn finish(self) -> String {
        self.text
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

type Labels = Vec<(String, String)>;

struct Family {
    help: String,
    kind: MetricKind,
    values: BTreeMap<Labels, f64>,
}

/// The daemon's metrics registry (in [`AppState`]).
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<String, Family>>,
    collectors: RwLock<Vec<Arc<dyn Collector>>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a collector run at every scrape.
    pub fn register(&self, collector: Arc<dyn Collector>) {
        self.collectors.write().unwrap_or_else(|p| p.into_inner()).push(collector);
    }

    /// Declares a counter or gauge family kept in the registry.
    pub fn describe(&self, name: &str, help: &str, kind: MetricKind) {
        let mut f = self.families.lock().unwrap_or_else(|p| p.into_inner());
        f.entry(name.to_string()).or_insert_with(|| Family { help: help.into(), kind, values: BTreeMap::new() });
    }

    /// Adds `by` to a sample of a described family (a counter, usually).
    pub fn add(&self, name: &str, labels: &[(&str, &str)], by: f64) {
        self.update(name, labels, |v| *v += by);
    }

    /// Sets a sample of a described family (a gauge).
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.update(name, labels, |v| *v = value);
    }

    fn update(&self, name: &str, labels: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fam) = fams.get_mut(name) else {
            tracing::warn!("metric {name} was not described; ignoring the update");
            return;
        };
        let key: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        f(fam.values.entry(key).or_insert(0.0));
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        {
            let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
            for (name, fam) in fams.iter() {
                out.family(name, &fam.help, fam.kind);
                for (labels, v) in &fam.values {
                    let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    out.sample(name, &l, *v);
                }
            }
        }
        let collectors = self.collectors.read().unwrap_or_else(|p| p.into_inner()).clone();
        for c in collectors {
            c.collect(&mut out);
        }
        out.finish()
    }
}

/// GPU and host gauges from the newest telemetry sample.
pub struct TelemetryCollector(pub Arc<Telemetry>);

impl Collector for TelemetryCollector {
    fn collect(&self, out: &mut Exposition) {
        let Some(s) = self.0.latest() else { return };
        const MIB: f64 = 1024.0 * 1024.0;
        let host = &s.host;
        out.family("reelbox_host_cpu_percent", "Busy share of all host CPUs, percent.", MetricKind::Gauge);
        if let Some(c) = host.cpu_percent {
            out.sample("reelbox_host_cpu_percent", &[], f64::from(c));
        }
        out.family("reelbox_host_memory_used_bytes", "Host memory in use.", MetricKind::Gauge);
        if let Some(m) = host.mem_used_mib {
            out.sample("reelbox_host_memory_used_bytes", &[], m as f64 * MIB);
        }
        out.family("reelbox_host_memory_total_bytes", "Host memory installed.", MetricKind::Gauge);
        if let Some(m) = host.mem_total_mib {
            out.sample("reelbox_host_memory_total_bytes", &[], m as f64 * MIB);
        }
        out.family("reelbox_gpus", "GPUs the telemetry source reports.", MetricKind::Gauge);
        out.sample("reelbox_gpus", &[("source", self.0.source_name())], s.gpus.len() as f64);
        type Reading = fn(&crate::gpu::GpuSample) -> Option<f64>;
        let gauges: [(&str, &str, MetricKind, Reading); 13] = [
            ("reelbox_gpu_utilization_percent", "Share of time a kernel ran.", MetricKind::Gauge, |g| {
                g.util_gpu.map(f64::from)
            }),
            (
                "reelbox_gpu_memory_utilization_percent",
                "Share of time memory was read or written.",
                MetricKind::Gauge,
                |g| g.util_mem.map(f64::from),
            ),
            ("reelbox_gpu_memory_used_bytes", "GPU memory in use.", MetricKind::Gauge, |g| {
                g.mem_used_mib.map(|m| m as f64 * MIB)
            }),
            ("reelbox_gpu_memory_total_bytes", "GPU memory installed.", MetricKind::Gauge, |g| {
                g.mem_total_mib.map(|m| m as f64 * MIB)
            }),
            ("reelbox_gpu_temperature_celsius", "GPU die temperature.", MetricKind::Gauge, |g| {
                g.temperature_c.map(f64::from)
            }),
            ("reelbox_gpu_power_watts", "GPU power draw.", MetricKind::Gauge, |g| g.power_w),
            ("reelbox_gpu_power_limit_watts", "Enforced GPU power limit.", MetricKind::Gauge, |g| g.power_limit_w),
            ("reelbox_gpu_energy_joules_total", "GPU energy used since the driver loaded.", MetricKind::Counter, |g| {
                g.energy_mj.map(|e| e as f64 / 1000.0)
            }),
            ("reelbox_gpu_sm_clock_hertz", "SM clock.", MetricKind::Gauge, |g| {
                g.sm_clock_mhz.map(|c| f64::from(c) * 1e6)
            }),
            ("reelbox_gpu_memory_clock_hertz", "Memory clock.", MetricKind::Gauge, |g| {
                g.mem_clock_mhz.map(|c| f64::from(c) * 1e6)
            }),
            ("reelbox_gpu_fan_percent", "Fan speed, percent of maximum.", MetricKind::Gauge, |g| {
                g.fan_percent.map(f64::from)
            }),
            ("reelbox_gpu_pcie_tx_bytes_per_second", "PCIe throughput towards the host.", MetricKind::Gauge, |g| {
                g.pcie_tx_kib_s.map(|k| k as f64 * 1024.0)
            }),
            ("reelbox_gpu_pcie_rx_bytes_per_second", "PCIe throughput from the host.", MetricKind::Gauge, |g| {
                g.pcie_rx_kib_s.map(|k| k as f64 * 1024.0)
            }),
        ];
        for (name, help, kind, read) in gauges {
            out.family(name, help, kind);
            for g in &s.gpus {
                if let Some(v) = read(g) {
                    let index = g.index.to_string();
                    let uuid = g.uuid.clone().unwrap_or_default();
                    out.sample(name, &[("gpu", &index), ("name", &g.name), ("uuid", &uuid)], v);
                }
            }
        }
    }
}

/// Worker boxes' devices from their last heartbeats (`[cluster]` heads): one series per
/// box and device, so a dashboard shows every box beside the head's own GPUs.
pub struct RemoteCollector(pub Arc<dyn crate::scheduler::RemoteBoxes>);

impl Collector for RemoteCollector {
    fn collect(&self, out: &mut Exposition) {
        let devices = self.0.devices();
        type Reading = fn(&crate::scheduler::RemoteDevice) -> Option<f64>;
        let gauges: [(&str, &str, Reading); 4] = [
            ("reelbox_remote_device_slots", "Stages a worker box's device runs at once.", |d| Some(d.slots as f64)),
            ("reelbox_remote_gpu_memory_free_bytes", "Free memory of a worker box's GPU.", |d| {
                d.free_mib.map(|m| m as f64 * 1024.0 * 1024.0)
            }),
            ("reelbox_remote_gpu_memory_total_bytes", "Memory of a worker box's GPU.", |d| {
                d.total_mib.map(|m| m as f64 * 1024.0 * 1024.0)
            }),
            ("reelbox_remote_device_utilization_percent", "Utilisation of a worker box's device.", |d| {
                d.util.map(f64::from)
            }),
        ];
        for (name, help, read) in gauges {
            out.family(name, help, MetricKind::Gauge);
            for d in &devices {
                if let (Some(v), crate::gpu::DeviceId::Remote { host, .. }) = (read(d), d.device) {
                    out.sample(name, &[("box", host.as_str()), ("device", &d.device.name())], v);
                }
            }
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4", description = "Prometheus text format 0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Job and HTTP counters read the store, so they are rendered off the async threads.
    let mut body = state.metrics.render();
    let ops = tokio::task::spawn_blocking(move || super::ops_metrics::render(&state)).await.unwrap_or_default();
    body.push_str(&ops);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_help_written_once() {
        let m = Metrics::new();
        m.describe("reelbox_things_total", "Things.", MetricKind::Counter);
        m.add("reelbox_things_total", &[("what", "a \"quoted\"\\name")], 2.0);
        m.add("reelbox_things_total", &[("what", "a \"quoted\"\\name")], 1.5);
        let text = m.render();
        assert_eq!(
            text,
            "# HELP reelbox_things_total Things.\n# TYPE reelbox_things_total counter\n\
             reelbox_things_total{what=\"a \\\"quoted\\\"\\\\name\"} 3.5\n"
        );
    }

    #[test]
    fn undescribed_metric_updates_are_ignored() {
        let m = Metrics::new();
        m.set("nope", &[], 1.0);
        assert_eq!(m.render(), "");
    }
}

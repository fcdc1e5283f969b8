//! The sampler: one reading of the host and every GPU per interval, kept for five minutes
//! in a ring buffer and broadcast to live subscribers (SSE, the dashboard).

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::host::HostReader;
use super::sample::{GpuSample, TelemetrySample};
use super::{DeviceId, DeviceInfo, TelemetrySource};
use crate::time::now_ms;

/// How often the sampler reads the devices.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long history is kept.
pub const HISTORY_SPAN: Duration = Duration::from_secs(300);
/// Name of the sampler thread (the CPU benchmark finds it by this name).
pub const THREAD_NAME: &str = "reelbox-telemetry";

struct Ring {
    samples: VecDeque<Arc<TelemetrySample>>,
    host: HostReader,
}

/// Device telemetry: a source, its recent history and live subscribers.
pub struct Telemetry {
    source: Arc<dyn TelemetrySource>,
    gpus: Vec<DeviceInfo>,
    interval: Duration,
    capacity: usize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<TelemetrySample>>,
    /// Dropping the sender (explicit stop, or the Telemetry itself) ends the thread.
    stop: Mutex<Option<mpsc::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Worker boxes' GPU readings, folded into every sample once a cluster is attached.
    remote: OnceLock<RemoteReadings>,
}

/// Reads the worker boxes' GPUs (from their heartbeats); cheap, never blocks on the network.
pub type RemoteReadings = Arc<dyn Fn() -> Vec<GpuSample> + Send + Sync>;

impl Telemetry {
    /// Telemetry over `source`, sampling every [`SAMPLE_INTERVAL`] once started.
    pub fn new(source: Arc<dyn TelemetrySource>) -> Arc<Self> {
        Self::with_interval(source, SAMPLE_INTERVAL)
    }

    /// As [`Telemetry::new`] with another interval (history still spans five minutes).
    pub fn with_interval(source: Arc<dyn TelemetrySource>, interval: Duration) -> Arc<Self> {
        let interval = interval.max(Duration::from_millis(10));
        let capacity = (HISTORY_SPAN.as_millis() / interval.as_millis()).max(1) as usize;
        let (live, _) = broadcast::channel(64);
        Arc::new(Self {
            gpus: source.gpus(),
            source,
            interval,
            capacity,
            ring: Mutex::new(Ring { samples: VecDeque::with_capacity(capacity), host: HostReader::default() }),
            live,
            stop: Mutex::new(None),
            thread: Mutex::new(None),
            remote: OnceLock::new(),
        })
    }

    /// Name of the source: `nvml`, `fake` or `none`.
    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// Sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the source stands in for CUDA too (see [`TelemetrySource::fakes_cuda`]).
    pub fn fakes_cuda(&self) -> bool {
        self.source.fakes_cuda()
    }

    /// GPUs the source reported when it was opened (before `workers` settings or the
    /// CUDA check).
    pub fn gpus(&self) -> &[DeviceInfo] {
        &self.gpus
    }

    /// Folds worker boxes' GPUs into every later sample (once; a second call is ignored).
    pub fn attach_remote(&self, readings: RemoteReadings) {
        let _ = self.remote.set(readings);
    }

    /// Takes a sample now, records and broadcasts it.
    pub fn sample_now(&self) -> Arc<TelemetrySample> {
        let gpus = self.source.sample_gpus();
        let remote_gpus = self.remote.get().map(|r| r()).unwrap_or_default();
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let sample = Arc::new(TelemetrySample { at_ms: now_ms(), host: ring.host.read(), gpus, remote_gpus });
        if ring.samples.len() >= self.capacity {
            ring.samples.pop_front();
        }
        ring.samples.push_back(sample.clone());
        drop(ring);
        // No subscriber is fine: the ring keeps the history.
        let _ = self.live.send(sample.clone());
        sample
    }

    /// Starts the sampling thread (idempotent); the first sample is taken before returning
    /// so placement never sees an empty history.
    pub fn start(self: &Arc<Self>) {
        let mut thread = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if thread.is_some() {
            return;
        }
        self.sample_now();
        let (tx, rx) = mpsc::channel::<()>();
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let weak: Weak<Self> = Arc::downgrade(self);
        let interval = self.interval;
        let spawned = std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || {
            let mut next = Instant::now() + interval;
            // A message or a dropped sender both mean stop; only a timeout means sample.
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                let Some(me) = weak.upgrade() else { break };
                me.sample_now();
                next += interval;
                let now = Instant::now();
                if next < now {
                    // Fell behind (suspend, slow driver): skip the missed ticks.
                    next = now + interval;
                }
            }
        });
        match spawned {
            Ok(h) => *thread = Some(h),
            Err(e) => tracing::error!("cannot start the telemetry thread: {e}"),
        }
    }

    /// Stops the sampling thread and waits for it.
    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Arc<TelemetrySample>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).samples.back().cloned()
    }

    /// All kept samples, oldest first.
    pub fn history(&self) -> Vec<Arc<TelemetrySample>> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).samples.iter().cloned().collect()
    }

    /// Samples as they are taken.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TelemetrySample>> {
        self.live.subscribe()
    }

    /// The device's energy counter now, millijoules (read directly, not from the last
    /// sample, so stage boundaries are exact). `None` for the CPU or unsupported GPUs.
    pub fn energy_mj(&self, device: DeviceId) -> Option<u64> {
        match device {
            DeviceId::Cpu | DeviceId::Remote { .. } => None,
            DeviceId::Cuda(i) => self.source.energy_mj(i),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Watt-hours between two energy counter readings in millijoules.
pub fn energy_wh(start_mj: u64, end_mj: u64) -> f64 {
    end_mj.saturating_sub(start_mj) as f64 / 3_600_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::fake::FakeGpus;

    #[test]
    fn history_keeps_five_minutes_of_samples() {
        let t = Telemetry::with_interval(Arc::new(FakeGpus::new(vec![8192])), Duration::from_secs(1));
        for _ in 0..310 {
            t.sample_now();
        }
        let h = t.history();
        assert_eq!(h.len(), 300);
        assert_eq!(h.last().map(|s| s.gpus.len()), Some(1));
    }

    #[test]
    fn started_sampler_broadcasts_and_stops() {
        let t = Telemetry::with_interval(Arc::new(FakeGpus::new(vec![1024, 2048])), Duration::from_millis(20));
        let mut rx = t.subscribe();
        t.start();
        assert!(t.latest().is_some(), "first sample is taken at start");
        let got = rx.blocking_recv().expect("a live sample");
        assert_eq!(got.gpus.len(), 2);
        t.stop();
        let n = t.history().len();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.history().len(), n, "no samples after stop");
    }

    #[test]
    fn one_watt_hour_is_3600_joules() {
        assert!((energy_wh(1_000, 3_601_000) - 1.0).abs() < 1e-12);
        assert_eq!(energy_wh(5, 1), 0.0, "a counter reset gives zero, not a negative");
    }
}

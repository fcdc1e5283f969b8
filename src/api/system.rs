//! `/api/v1/system`, `/healthz` and `/readyz`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::telemetry::TelemetryView;
use super::{ApiError, AppState};
use crate::engine::LoadedSession;
use crate::store::StateCounts;

/// What the daemon is and how busy it is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemView {
    pub version: String,
    pub uptime_s: u64,
    pub paused: bool,
    pub devices: Vec<DeviceView>,
    /// Set when GPUs were found but none is used because ONNX Runtime's CUDA provider does
    /// not register: what failed and how to fix it (jobs run on the CPU meanwhile).
    #[serde(default)]
    pub gpus_unusable: Option<String>,
    pub queue: QueueView,
    pub kinds: Vec<String>,
    /// Device telemetry: source and newest sample.
    #[serde(default)]
    pub telemetry: TelemetryView,
    /// Electricity price used for job costs.
    #[serde(default)]
    pub energy: EnergyView,
    /// Model sessions the engine holds loaded, most recently used first.
    #[serde(default)]
    pub sessions: Vec<SessionView>,
    /// Free space where the box writes.
    #[serde(default)]
    pub disk: DiskView,
    /// What the box takes in one request.
    #[serde(default)]
    pub limits: LimitsView,
}

/// What the box takes in one request, for clients to check before they send.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LimitsView {
    /// `limits.max_upload_bytes`: the largest file an upload may carry (0 from a daemon
    /// that did not say).
    #[serde(default)]
    pub max_upload_bytes: u64,
}

/// Free space on the disks of the data dir and the models dir (`None` where it cannot be
/// read); below `min_free_bytes` new jobs, uploads and pulls are refused (HTTP 507).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DiskView {
    pub data: Option<crate::disk::Space>,
    pub models: Option<crate::disk::Space>,
    /// `limits.min_free_disk_bytes`; 0 when the check is off.
    pub min_free_bytes: u64,
    /// Which directory the models dir is (`disk::dir_identity`: machine, filesystem, inode,
    /// no path): `reelbox pull` on a login whose models dir is another one (another box, or
    /// a daemon started with its own `--data-dir`) has the daemon pull instead.
    #[serde(default)]
    pub models_dir_id: Option<String>,
}

impl DiskView {
    /// The box's disks now, as `config` places and guards them.
    pub fn now(config: &crate::config::Config) -> Self {
        Self {
            data: crate::disk::space(&config.data_dir),
            models: crate::disk::space(&config.models_dir()),
            min_free_bytes: config.limits.min_free_disk_bytes,
            models_dir_id: crate::disk::dir_identity(&config.models_dir()),
        }
    }

    /// Which of the disks is below the minimum, as the refusals name it.
    pub fn low(&self) -> Option<&'static str> {
        let low = |s: &Option<crate::disk::Space>| s.is_some_and(|s| s.is_low(self.min_free_bytes));
        if low(&self.data) {
            Some("data dir")
        } else if low(&self.models) {
            Some("models dir")
        } else {
            None
        }
    }
}

/// A loaded model session (unloaded after `runtime.keep_alive_s` idle).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Model file the session was created from.
    pub model: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Estimated memory held, bytes.
    pub bytes: u64,
    pub loaded_at: String,
    /// How long loading took, milliseconds.
    pub load_ms: u64,
    /// Seconds since a job last used it.
    pub idle_s: u64,
    /// Seconds until it is unloaded if left idle.
    pub expires_in_s: u64,
    /// True while a job holds it.
    pub in_use: bool,
    /// Times a job used it.
    pub uses: u64,
}

impl From<LoadedSession> for SessionView {
    fn from(s: LoadedSession) -> Self {
        Self {
            model: s.model.display().to_string(),
            device: s.device,
            bytes: s.bytes,
            loaded_at: super::views::time(s.loaded_at),
            load_ms: s.load_ms,
            idle_s: s.idle_s,
            expires_in_s: s.expires_in_s,
            in_use: s.in_use,
            uses: s.uses,
        }
    }
}

/// Electricity price for job costs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct EnergyView {
    pub price_per_kwh: Option<f64>,
    pub currency: String,
}

/// A device with its workers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// `cpu` or `cuda:N`; a worker box's as `NAME/cpu`, `NAME/cuda:N`.
    pub id: String,
    pub workers: usize,
    pub running: u64,
    /// GPU model name (`null` for the CPU).
    #[serde(default)]
    pub name: Option<String>,
    /// GPU memory, MiB (`null` for the CPU).
    #[serde(default)]
    pub memory_total_mib: Option<u64>,
}

/// Queue depth.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    #[schema(inline)]
    pub by_state: StateCountsView,
    pub max_queued: u64,
}

/// Jobs per state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateCountsView {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl From<StateCounts> for StateCountsView {
    fn from(c: StateCounts) -> Self {
        Self { queued: c.queued, running: c.running, succeeded: c.succeeded, failed: c.failed, canceled: c.canceled }
    }
}

/// Daemon status.
#[utoipa::path(get, path = "/api/v1/system", responses((status = 200, body = SystemView)))]
pub async fn system(State(state): State<AppState>, caller: Caller) -> Result<Json<SystemView>, ApiError> {
    let counts = state.store.counts(caller.owner_filter().as_deref())?;
    let telemetry = state.scheduler.telemetry();
    let running_jobs = state.store.list_jobs(
        &crate::store::JobFilter { state: Some(crate::store::records::JobStatus::Running), kind: None, owner: None },
        None,
        10_000,
    )?;
    let running_on = |d: crate::gpu::DeviceId| {
        running_jobs
            .iter()
            .filter(|j| matches!(j.state, crate::store::records::JobState::Running { device, .. } if device == d))
            .count() as u64
    };
    let mut devices: Vec<DeviceView> = state
        .scheduler
        .devices()
        .iter()
        .map(|(d, workers)| DeviceView {
            id: d.name(),
            name: state.scheduler.gpus().iter().find(|g| g.id == *d).map(|g| g.name.clone()),
            memory_total_mib: state.scheduler.gpus().iter().find(|g| g.id == *d).map(|g| g.memory_total >> 20),
            workers: *workers,
            running: running_on(*d),
        })
        .collect();
    // Worker boxes' devices (`NAME/cpu`, `NAME/cuda:0`) from their last heartbeat.
    let remote = state.scheduler.remote().map(|r| r.devices()).unwrap_or_default();
    devices.extend(remote.into_iter().map(|r| DeviceView {
        id: r.device.name(),
        name: r.name,
        memory_total_mib: r.total_mib,
        workers: r.slots,
        running: running_on(r.device),
    }));
    Ok(Json(SystemView {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        paused: state.scheduler.is_paused(),
        devices,
        gpus_unusable: state.scheduler.gpus_unusable().map(str::to_string),
        queue: QueueView { by_state: counts.into(), max_queued: state.config.queue.max_queued },
        kinds: state.scheduler.kind_names().iter().map(|s| s.to_string()).collect(),
        telemetry: TelemetryView {
            source: telemetry.source_name().to_string(),
            interval_ms: telemetry.interval().as_millis() as u64,
            latest: telemetry.latest().map(|s| (*s).clone()),
        },
        energy: EnergyView {
            price_per_kwh: state.config.energy.price_per_kwh,
            currency: state.config.energy.currency.clone(),
        },
        sessions: state.scheduler.engine().loaded_sessions().into_iter().map(SessionView::from).collect(),
        disk: DiskView::now(&state.config),
        limits: LimitsView { max_upload_bytes: state.config.limits.max_upload_bytes as u64 },
    }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = String, content_type = "text/plain", description = "`ok`")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the store answers and workers run.
#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, body = String, content_type = "text/plain", description = "`ready`"), (status = 503, description = "not ready: the store cannot be read or written (`error` says why, naming the data dir)", body = super::error::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let check = match state.store.queued_len() {
        Ok(_) => state.store.check_writable().await,
        Err(e) => Err(e),
    };
    match check {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        // The API's error shape, so clients and probes read it like any other refusal.
        Err(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unwritable", e.to_string()).into_response(),
    }
}

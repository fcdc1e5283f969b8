//! The HTTP API: native `/api/v1`, operations endpoints and the OpenAPI document.
//! Handlers validate at the edge and hand work to the scheduler; they never touch ort.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::config::Config;
use crate::scheduler::Scheduler;
use crate::store::Store;

pub mod a1111;
pub mod artifacts;
pub mod auth;
pub mod cluster;
pub mod comfy;
pub mod download;
pub mod error;
pub mod events;
pub mod family;
pub mod gc;
pub mod http_client;
pub mod images;
pub mod jobs;
pub mod json;
pub mod keys;
pub mod limits;
pub mod links;
pub mod media;
pub mod metrics;
pub mod model_rm;
pub mod models;
pub mod openai;
pub mod openapi;
pub mod ops_metrics;
pub mod origin;
pub mod outputs;
pub mod presets;
pub mod profiles;
pub mod renders;
pub mod samplers;
pub mod speech;
pub mod sse;
pub mod system;
pub mod telemetry;
pub mod upload_form;
pub mod views;
pub mod web;

pub use error::ApiError;

impl limits::Metered for auth::Caller {
    fn owner(&self) -> &str {
        &self.owner
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn is_local(&self) -> bool {
        auth::Caller::is_local(self)
    }
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub scheduler: Arc<Scheduler>,
    pub store: Store,
    pub config: Arc<Config>,
    pub started: Instant,
    /// Fires when the daemon shuts down; long-lived streams end on it.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// What `/metrics` serves; add counters and collectors here.
    pub metrics: Arc<metrics::Metrics>,
    /// API keys, rate limits and stream slots.
    pub gate: Arc<auth::Gate>,
    /// Operations counters for `/metrics`.
    pub ops: Arc<ops_metrics::OpsMetrics>,
    /// Which host names and web origins may reach the API.
    pub guard: Arc<origin::Guard>,
    /// Submission, cancel, retry and the rest of the jobs' rules.
    pub jobs: crate::jobs::Service,
    /// Signs and checks the links to one artifact that work without a key.
    pub links: Arc<links::Links>,
    /// OpenAI jobs whose clients hung up, kept a while for the same request sent again.
    pub waits: Arc<openai::rejoin::Waits>,
}

impl AppState {
    /// State over a started scheduler.
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        let metrics = Arc::new(metrics::Metrics::new());
        metrics.register(Arc::new(metrics::TelemetryCollector(scheduler.telemetry().clone())));
        if let Some(remote) = scheduler.remote() {
            metrics.register(Arc::new(metrics::RemoteCollector(remote.clone())));
        }
        let shutdown = tokio_util::sync::CancellationToken::new();
        let grace = Duration::from_secs(scheduler.config().openai.hangup_grace_s);
        Self {
            metrics,
            waits: Arc::new(openai::rejoin::Waits::new(scheduler.clone(), grace, shutdown.clone())),
            store: scheduler.store().clone(),
            config: scheduler.config().clone(),
            gate: Arc::new(auth::Gate::new(scheduler.config(), scheduler.store())),
            ops: Arc::default(),
            guard: Arc::new(origin::Guard::for_config(scheduler.config())),
            jobs: crate::jobs::Service::new(scheduler.clone()),
            links: Arc::new(links::Links::open(&scheduler.config().data_dir)),
            scheduler,
            started: Instant::now(),
            shutdown,
        }
    }
}

/// All routes.
pub fn router(state: AppState) -> Router {
    let limits = &state.config.limits;
    // A profile's form carries a portrait and a voice sample, each up to the file limit.
    let uploads = Router::new()
        .route("/api/v1/artifacts", post(artifacts::upload))
        .layer(DefaultBodyLimit::max(upload_form::body_limit(limits, 1)))
        .layer(Extension(json::FormFiles(1)))
        .route("/api/v1/profiles", get(profiles::list).post(profiles::create))
        .route("/api/v1/profiles/{id}", get(profiles::show).delete(profiles::remove).patch(profiles::update))
        .layer(DefaultBodyLimit::max(upload_form::body_limit(limits, 2)))
        .layer(Extension(json::FormFiles(2)))
        .layer(axum::middleware::map_response(upload_form::close_after_too_large));
    Router::new()
        .route("/api/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::show).patch(jobs::patch).delete(jobs::delete))
        .route("/api/v1/renders", post(renders::create))
        .route("/api/v1/renders/plan", post(renders::plan))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/retry", post(jobs::retry))
        .route("/api/v1/jobs/{id}/artifacts", get(artifacts::of_job))
        .route("/api/v1/jobs/{id}/events", get(events::job_events))
        .route("/api/v1/events", get(events::all_events))
        .route("/api/v1/queue/pause", post(jobs::pause))
        .route("/api/v1/queue/resume", post(jobs::resume))
        .route("/api/v1/gc", post(gc::run))
        .route("/api/v1/artifacts/{id}", get(artifacts::download))
        .route("/api/v1/artifacts/{id}/meta", get(artifacts::meta))
        .route("/api/v1/speech", post(speech::create))
        .route("/api/v1/images", post(images::create))
        .route("/api/v1/lipsync", post(media::lipsync))
        .route("/api/v1/upscale", post(media::upscale))
        .route("/api/v1/models", get(models::list))
        .route("/api/v1/presets", get(presets::list))
        .route("/api/v1/samplers", get(samplers::list))
        .route("/api/v1/models/pull", post(models::pull).delete(model_rm::remove_shadowed))
        .route("/api/v1/models/import", post(models::import).delete(model_rm::remove_shadowed))
        .route("/api/v1/models/{name}", axum::routing::delete(model_rm::remove))
        .route("/api/v1/system", get(system::system))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/telemetry", get(telemetry::stream))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/keys", post(keys::create).get(keys::list))
        .route("/api/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/api/v1/session", post(web::session::login).get(web::session::show).delete(web::session::logout))
        .route("/", get(web::index))
        .route("/web/{file}", get(web::file))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .merge(uploads)
        .merge(openai::routes(&state))
        .merge(comfy::routes(&state))
        .merge(a1111::routes(&state))
        .fallback(|| async {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_route", "no such endpoint; see /openapi.json")
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this endpoint does not take {method}; see /openapi.json"),
            )
        })
        // Last, so it wraps every route above (and the fallback): nothing answers unauthenticated
        // except the probes it lets through.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_caller))
        // Between the guard and authentication: a listed page's preflight (which carries no
        // key) is answered, and its refusals carry CORS headers too, so the page can read them.
        .layer(origin::cors(state.guard.clone()))
        // Outside authentication: a foreign page or name is refused before anything else.
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ops_metrics::track))
        .with_state(state)
}

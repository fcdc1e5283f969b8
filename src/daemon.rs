//! Starting and stopping the daemon: store, engine, scheduler and HTTP server, in that
//! order, and the reverse on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::{Engine, ReaperGuard};
use crate::kinds;
use crate::scheduler::Scheduler;
use crate::store::records::{EventBody, Job, JobStatus};
use crate::store::{Store, StoreError};
use crate::sweeper::Sweeper;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}{}", bind_hint(source))]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// A configuration that would expose the API (or cannot work); one line.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl StartError {
    /// Whether a restart cannot mend this: the config (or another daemon on the same port or
    /// data dir) must change first. `serve` exits with `EX_CONFIG` for these, which the
    /// units' `RestartPreventExitStatus=` names, so systemd stops instead of looping.
    pub fn is_config(&self) -> bool {
        match self {
            Self::Refused(_) | Self::Tls(_) | Self::Store(StoreError::InUse { .. }) => true,
            // A taken port is nearly always another reelbox (or the port of another service),
            // which a restart every 5 s does not move; a privileged port needs another bind.
            Self::Bind { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied)
            }
            Self::DataDir { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
            Self::Store(_) => false,
        }
    }
}

/// What to do about a bind that failed, for the cases a user can act on.
fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another reelbox may be running there (`systemctl status reelbox`, `reelbox top`), or another \
             program holds the port: stop it, or change `bind` in the config file (or pass --bind)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges: set `bind` in the config file to a port from 1024 up (default 8470)"
        }
        _ => "",
    }
}

/// A running daemon.
pub struct Daemon {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Whether the API is served over HTTPS.
    pub tls: bool,
    pub scheduler: Arc<Scheduler>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
    /// The daily retention sweep, when `[retention]` turns it on.
    sweeper: Option<Sweeper>,
    /// Stops following the cluster (heartbeats, results) after the scheduler stopped.
    cluster_stop: CancellationToken,
    /// Unloads sessions idle past their keep-alive while the box sits idle: without it they
    /// went only at the next job's session look-up, keeping their memory till then.
    reaper: ReaperGuard,
    /// Works out A1111's hashes of models imported before imports kept them; stopped first.
    rehash: crate::models::convert::rehash::AtStart,
}

/// Time allowed for running jobs to checkpoint and connections to close on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

impl Daemon {
    /// Opens the store, recovers interrupted jobs, starts workers and the HTTP server.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.retention.check().map_err(|e| StartError::Refused(e.to_string()))?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
        let store = Store::open(&config.data_dir, config.store.group_commit, config.store.max_batch)?;
        if let Err(why) = api::auth::check_start(&config, &store) {
            store.close();
            return Err(StartError::Refused(why.to_string()));
        }
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => match crate::tls::server_config(cert, key) {
                Ok(c) => Some(c),
                Err(e) => {
                    store.close();
                    return Err(e.into());
                }
            },
            _ => None,
        };
        let config = Arc::new(config);
        let engine = Arc::new(Engine::new(&config));
        // Said at start, not only at the first job (ORT loads lazily): a fresh package's
        // service has none yet, and an admin reading the log wants to know which one runs.
        match crate::engine::runtime::find(&config, crate::config::env::ort_dylib_path()) {
            Ok(rt) => tracing::info!("ONNX Runtime {} found at {}", rt.version, rt.path.display()),
            Err(missing) => tracing::warn!("{missing}; until then every job that runs a model is refused"),
        }
        warn_of_old_pieces(&config);
        crate::config::exposure::warn_if_exposed(&config);
        let reaper = engine.spawn_reaper();
        let mut scheduler = Scheduler::new(store, config.clone(), engine, kinds::registry());
        let cluster_stop = CancellationToken::new();
        if config.cluster.as_ref().is_some_and(|c| c.role == crate::config::ClusterRole::Worker) {
            // Else a box set up as a worker but started as a daemon silently runs no stage for the head.
            tracing::warn!(
                "[cluster] role = \"worker\": `reelbox serve` takes no part in the cluster; run `reelbox worker` \
                 (reelbox-worker.service) on a worker box, or set role = \"head\""
            );
        }
        // Bound before the cluster is dialled: a port in use is said at once, not after
        // NATS's patience.
        let listener =
            TcpListener::bind(config.bind).await.map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let mut reconnect = None;
        if let Some(cluster) = config.cluster.as_ref().filter(|c| c.role == crate::config::ClusterRole::Head) {
            scheduler = scheduler.expect_remote(cluster.local_work);
            // Before `start`: results that came while the head was down are in hand before
            // recovered jobs run again. A server that does not answer soon (down, or the NATS
            // box still booting) does not keep the studio down: the daemon serves and runs
            // what it can while the head keeps dialling (`cluster::dial::reconnect`).
            match tokio::time::timeout(
                crate::cluster::HEAD_FIRST_WAIT,
                crate::cluster::Head::start(cluster.clone(), scheduler.store().clone(), cluster_stop.clone()),
            )
            .await
            {
                Ok(Ok(head)) => {
                    crate::cluster::dial::connected(&scheduler, cluster, &head);
                    scheduler = scheduler.attach_remote(head, cluster.local_work);
                }
                // Refused credentials, failed TLS, another box's seed: a setting to fix.
                Ok(Err(e)) if !e.is_unreachable() => {
                    scheduler.store().close();
                    return Err(StartError::Refused(format!("cannot join the cluster: {e}")));
                }
                Ok(Err(e)) => reconnect = Some(e.to_string()),
                Err(_) => reconnect = Some("it does not answer".into()),
            }
        }
        // A stop puts running jobs back in the queue, a crash leaves them running: either
        // way they started before (a `running` event, among a job's first) and run again now.
        let store = scheduler.store();
        let interrupted = job_list(store, |j| {
            j.state.status() == JobStatus::Running
                || store.events_after(Some(j.id), 0, 16).is_ok_and(|events| {
                    events.iter().any(|e| matches!(e.body, EventBody::State { state: JobStatus::Running, .. }))
                })
        });
        if !interrupted.is_empty() {
            tracing::info!("resuming jobs that ran before this start (a stop or crash put them back): {interrupted}");
        }
        scheduler.start().await?;
        if let (Some(why), Some(cluster)) = (reconnect, config.cluster.clone()) {
            crate::cluster::dial::reconnect(scheduler.clone(), cluster, cluster_stop.clone(), why);
        }
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let state = AppState::new(scheduler.clone());
        let shutdown = state.shutdown.clone();
        api::ops_metrics::spawn_collector(&state);
        let app = api::router(state);
        let stop = shutdown.clone();
        let https = tls.is_some();
        let server = match tls {
            None => tokio::spawn(async move {
                let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(e) = serve.await {
                    tracing::error!("HTTP server failed: {e}");
                }
            }),
            Some(tls) => {
                let std_listener =
                    listener.into_std().map_err(|source| StartError::Bind { addr: config.bind, source })?;
                let server =
                    axum_server::from_tcp_rustls(std_listener, axum_server::tls_rustls::RustlsConfig::from_config(tls))
                        .map_err(|source| StartError::Bind { addr: config.bind, source })?;
                let handle = axum_server::Handle::new();
                let h = handle.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    h.graceful_shutdown(Some(SHUTDOWN_GRACE / 2));
                });
                tokio::spawn(async move {
                    let serve = server.handle(handle).serve(app.into_make_service_with_connect_info::<SocketAddr>());
                    if let Err(e) = serve.await {
                        tracing::error!("HTTPS server failed: {e}");
                    }
                })
            }
        };
        let sweeper = Sweeper::spawn(scheduler.store().clone(), config.retention.clone());
        say_models(&config);
        let rehash = crate::models::convert::rehash::spawn(&config);
        let scheme = if https { "https" } else { "http" };
        tracing::info!(%addr, tls = https, "reelbox listening; web studio at {scheme}://{addr}/");
        Ok(Self { addr, tls: https, scheduler, shutdown, server, sweeper, cluster_stop, reaper, rehash })
    }

    /// Stops accepting requests, checkpoints running jobs and flushes the store.
    pub async fn stop(self) {
        let t0 = Instant::now();
        let Daemon { scheduler, shutdown, server, sweeper, cluster_stop, reaper, rehash, .. } = self;
        shutdown.cancel();
        // Stopped at its next megabyte read (a 7 GB checkpoint does not hold the stop), and
        // waited for off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(rehash)).await;
        let server = async {
            if tokio::time::timeout(SHUTDOWN_GRACE / 2, server).await.is_err() {
                tracing::warn!("HTTP connections still open after {:?}; closing them", SHUTDOWN_GRACE / 2);
            }
        };
        // A sweep in progress finishes beside the HTTP drain, before the store closes.
        let sweeper = async {
            if let Some(s) = sweeper {
                s.stop(SHUTDOWN_GRACE / 2).await;
            }
        };
        tokio::join!(server, sweeper);
        // Read before they stop: an `apt upgrade` restarts the service mid-render, and the
        // log should say which jobs go back in the queue.
        let running = job_list(scheduler.store(), |j| j.state.status() == JobStatus::Running);
        scheduler.shutdown(SHUTDOWN_GRACE / 2).await;
        if !running.is_empty() {
            tracing::info!("put back in the queue, to run again at the next start: {running}");
        }
        cluster_stop.cancel();
        drop(reaper);
        scheduler.store().close();
        tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "reelbox stopped");
    }
}

/// The jobs in the store that `keep` picks, as `ID (kind)` separated by commas.
fn job_list(store: &Store, keep: impl Fn(&Job) -> bool) -> String {
    let mut out = Vec::new();
    for status in [JobStatus::Running, JobStatus::Queued] {
        let filter = crate::store::JobFilter { state: Some(status), ..Default::default() };
        match store.list_jobs(&filter, None, 1000) {
            Ok(jobs) => out.extend(jobs.iter().filter(|j| keep(j)).map(|j| format!("{} ({})", j.id, j.kind))),
            Err(e) => tracing::warn!("cannot list jobs: {e}"),
        }
    }
    out.join(", ")
}

/// Says at start which models are installed and which runs by default for each kind: on a
/// blocking thread, since it reads the models dir.
fn say_models(config: &Arc<Config>) {
    use crate::models::ModelKind;
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let catalog = crate::models::Catalog::load(&config);
        let per_kind: Vec<String> = ModelKind::ALL
            .into_iter()
            .map(|kind| {
                let n = catalog.installed(kind).count();
                match catalog.default_name(kind, &config) {
                    Some(d) => format!("{} {n} (default {d})", kind.as_str()),
                    None => format!("{} {n}", kind.as_str()),
                }
            })
            .collect();
        tracing::info!(
            "models in {}: {} (`reelbox models list`, `{}` installs the defaults)",
            catalog.models_dir().display(),
            per_kind.join(", "),
            crate::engine::runtime::setup_command(catalog.models_dir())
        );
    });
}

/// Says at start what `reelbox doctor` would warn of in the pieces speech uses (a box
/// upgraded from a build whose setup did not install them runs on the system's): on a
/// blocking thread, so loading espeak-ng does not delay serving.
fn warn_of_old_pieces(config: &Config) {
    let pinned = crate::pipelines::tts::espeak::pinned_dir(&config.data_dir);
    tokio::task::spawn_blocking(move || {
        crate::pipelines::tts::espeak::use_pinned(&pinned);
        if let Some(why) = crate::pipelines::tts::espeak::loaded().ok().and_then(|e| e.mismatch()) {
            tracing::warn!("{why}; fix: {}", crate::pipelines::tts::espeak::SETUP_PINS);
        }
    });
}

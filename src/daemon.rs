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
use crate::engine::Engine;
use crate::kinds;
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError};
use crate::sweeper::Sweeper;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// A configuration that would expose the API (or cannot work); one line.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
        if let Err(missing) = crate::engine::runtime::find(&config, crate::config::env::ort_dylib_path()) {
            // Said at start, not only at the first job: a fresh package's service has none yet.
            tracing::warn!("{missing}; until then every job that runs a model is refused");
        }
        warn_of_old_pieces(&config);
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
                crate::cluster::Head::start(cluster.clone(), cluster_stop.clone()),
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
        tracing::info!(%addr, tls = https, "reelbox listening");
        Ok(Self { addr, tls: https, scheduler, shutdown, server, sweeper, cluster_stop })
    }

    /// Stops accepting requests, checkpoints running jobs and flushes the store.
    pub async fn stop(self) {
        let t0 = Instant::now();
        let Daemon { scheduler, shutdown, server, sweeper, cluster_stop, .. } = self;
        shutdown.cancel();
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
        scheduler.shutdown(SHUTDOWN_GRACE / 2).await;
        cluster_stop.cancel();
        scheduler.store().close();
        tracing::info!(elapsed_ms = t0.elapsed().as_millis() as u64, "reelbox stopped");
    }
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

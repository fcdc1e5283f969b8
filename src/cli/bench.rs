//! `reelbox bench ...`: throughput measurements printed side by side with a baseline run
//! in the same process, so the ratio is what matters, not this machine's absolute speed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use reelbox::config::Config;
use reelbox::daemon::Daemon;

use super::Global;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Durable job submissions per second and latency, group commit vs one transaction per job.
    Queue {
        /// Concurrent HTTP clients to try.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 64])]
        clients: Vec<usize>,
        /// Seconds to run each configuration.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// CPU used by `reelbox top` and by the daemon's telemetry sampler (goal: <= 1% each).
    Top(super::bench_top::BenchTopArgs),
    /// Where the demo render's time goes: per stage, model and ffmpeg time vs wall time.
    Render(super::bench_render::BenchRenderArgs),
    /// The same jobs on a GPU and on the CPU: speedup, placement, energy, memory, output
    /// differences; NVML beside nvidia-smi; TensorRT (packaging/gpu-check.sh runs it).
    Gpu(super::bench_gpu::BenchGpuArgs),
    /// Testcard and CPU demo-render throughput on the head alone and on 1, 2, 4 worker
    /// processes through a NATS server it starts, and the per-stage cost of going remote.
    Cluster(super::bench_cluster::BenchClusterArgs),
    /// The installed-models listing (what `/object_info`, `/v1/models` and each worker
    /// heartbeat read) kept while the models dir looks the same, against reading it at
    /// every call.
    Models(super::bench_models::BenchModelsArgs),
}

/// One configuration's figures.
struct Figures {
    jobs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs a benchmark.
pub async fn run(g: &Global, what: BenchWhat) -> anyhow::Result<ExitCode> {
    match what {
        BenchWhat::Queue { clients, seconds } => queue(&clients, Duration::from_secs_f64(seconds)).await,
        BenchWhat::Top(args) => super::bench_top::run(args).await,
        BenchWhat::Render(args) => super::bench_render::run(g, args).await,
        BenchWhat::Gpu(args) => super::bench_gpu::run(g, args).await,
        BenchWhat::Cluster(args) => super::bench_cluster::run(g, args).await,
        BenchWhat::Models(args) => super::bench_models::run(args).await,
    }
}

async fn queue(clients: &[usize], each: Duration) -> anyhow::Result<ExitCode> {
    println!("queue submission benchmark: POST /api/v1/jobs (testcard), durable before reply, workers paused");
    println!(
        "{:>8}  {:>22}  {:>22}  {:>7}",
        "clients", "group commit  jobs/s p50/p99 ms", "txn per job  jobs/s p50/p99 ms", "ratio"
    );
    for &n in clients {
        let grouped = measure(true, n, each).await?;
        let single = measure(false, n, each).await?;
        println!(
            "{n:>8}  {:>9.0} {:>5.1}/{:<6.1}  {:>9.0} {:>5.1}/{:<6.1}  {:>6.2}x",
            grouped.jobs_per_s,
            grouped.p50_ms,
            grouped.p99_ms,
            single.jobs_per_s,
            single.p50_ms,
            single.p99_ms,
            grouped.jobs_per_s / single.jobs_per_s.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn measure(group_commit: bool, clients: usize, each: Duration) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!("reelbox-bench-{}-{}", std::process::id(), reelbox::time::now_ms()));
    let mut config = Config { data_dir: dir.clone(), bind: "127.0.0.1:0".parse()?, ..Config::default() };
    config.store.group_commit = group_commit;
    config.queue.max_queued = u64::MAX;
    let daemon = Daemon::start(config).await.context("cannot start the benchmark daemon")?;
    daemon.scheduler.set_paused(true).await?;
    let url = format!("http://{}/api/v1/jobs", daemon.addr);
    let deadline = Instant::now() + each;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let body = serde_json::json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}});
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 202 => lat.push(t0.elapsed()),
                    Ok(r) => return Err(anyhow::anyhow!("submission answered {}", r.status())),
                    Err(e) => return Err(anyhow::anyhow!("submission failed: {e}")),
                }
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = started.elapsed().as_secs_f64();
    daemon.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    };
    Ok(Figures { jobs_per_s: all.len() as f64 / wall, p50_ms: pct(0.50), p99_ms: pct(0.99) })
}

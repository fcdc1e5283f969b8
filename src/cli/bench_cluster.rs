//! `reelbox bench cluster`: the same testcard load on the head alone and on 1, 2 and 4
//! worker processes (side by side in one run, one `nats-server -js` it starts itself), and
//! the per-stage cost of going remote (tiny stages one at a time, head-local vs remote).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reelbox::config::{ClusterConfig, Config};
use reelbox::daemon::Daemon;
use reelbox::store::records::{JobState, StageState};

/// Arguments of `reelbox bench cluster`.
#[derive(Debug, Args)]
pub struct BenchClusterArgs {
    /// Worker process counts to compare with the head alone.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
    pub workers: Vec<usize>,
    /// Testcard jobs per configuration.
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Steps per testcard.
    #[arg(long, default_value_t = 5)]
    pub steps: u64,
    /// Milliseconds per step.
    #[arg(long, default_value_t = 100)]
    pub step_ms: u64,
    /// Tiny stages (one step, 0 ms) timed one at a time for the per-stage overhead.
    #[arg(long, default_value_t = 20)]
    pub overhead_jobs: usize,
}

/// Child processes stopped on drop (the NATS server, workers): SIGTERM, so a worker
/// takes its heartbeat out and the next configuration's head never sees it.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &self.0 {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// Runs the benchmark.
pub async fn run(args: BenchClusterArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("reelbox-bench-cluster-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nats = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(root.join("nats"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nats-server (apt-get install nats-server)")?;
    let _nats = Procs(vec![nats]);
    let url = format!("nats://127.0.0.1:{port}");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("nats-server did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "cluster benchmark: {} testcards of {} x {} ms per configuration; one stage slot per box",
        args.jobs, args.steps, args.step_ms
    );
    println!("{:>12}  {:>8}  {:>8}  {:>8}", "boxes", "seconds", "jobs/s", "ratio");
    let mut base = None;
    for n in std::iter::once(0).chain(args.workers.iter().copied()) {
        let dir = root.join(format!("run-{n}"));
        let (secs, _) = load(&dir, &url, n, args.jobs, args.steps, args.step_ms).await?;
        let rate = args.jobs as f64 / secs;
        let base_rate = *base.get_or_insert(rate);
        let label = if n == 0 { "head alone".to_string() } else { format!("{n} worker(s)") };
        println!("{label:>12}  {secs:>8.2}  {rate:>8.2}  {:>7.2}x", rate / base_rate);
    }
    println!("per-stage overhead: {} tiny stages (1 step, 0 ms) one at a time", args.overhead_jobs * 2);
    let (_, local) = load(&root.join("local"), &url, 0, args.overhead_jobs, 1, 0).await?;
    let (_, remote) = load(&root.join("remote"), &url, 1, args.overhead_jobs, 1, 0).await?;
    let (l, r) = (median(local), median(remote));
    println!("  stage start→end, median: head-local {l:.1} ms, remote {r:.1} ms, overhead {:.1} ms per stage", r - l);
    let _ = std::fs::remove_dir_all(&root);
    Ok(ExitCode::SUCCESS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `jobs` testcards on a head with `workers` worker processes (none: the head runs
/// them itself); returns the wall seconds and each stage's start→end milliseconds.
/// Overhead runs (`step_ms` 0) submit one job at a time.
async fn load(
    dir: &Path,
    url: &str,
    workers: usize,
    jobs: usize,
    steps: u64,
    step_ms: u64,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let run = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut config = Config { data_dir: dir.join("head"), bind: "127.0.0.1:0".parse()?, ..Config::default() };
    config.workers.cpu_concurrency = 1;
    config.workers.use_gpus = false;
    config.queue.max_queued = u64::MAX;
    config.cluster = Some(ClusterConfig {
        nats_url: url.to_string(),
        name: Some(format!("head-{run}").chars().take(16).collect()),
        local_work: workers == 0,
        heartbeat_ttl_s: 3,
        ..ClusterConfig::default()
    });
    let daemon = Daemon::start(config).await.context("cannot start the benchmark head")?;
    let mut procs = Procs(Vec::new());
    for i in 0..workers {
        procs.0.push(spawn_worker(&dir.join(format!("w{i}")), url, &format!("{run}-{i}"))?);
    }
    let t0 = Instant::now();
    while daemon.scheduler.remote().map_or(0, |r| r.devices().len()) < workers {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("only {:?} of {workers} workers joined", daemon.scheduler.remote().map(|r| r.devices().len()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http = reqwest::Client::new();
    let submit_url = format!("http://{}/api/v1/jobs", daemon.addr);
    let body = serde_json::json!({"kind": "testcard", "params": {"steps": steps, "step_ms": step_ms, "width": 64, "height": 36}});
    let one_by_one = step_ms == 0;
    let t0 = Instant::now();
    let mut submitted = 0;
    while submitted < jobs {
        let r = http.post(&submit_url).json(&body).send().await.context("submit")?;
        if !r.status().is_success() {
            bail!("submit answered {}", r.status());
        }
        submitted += 1;
        if one_by_one {
            wait_done(&daemon, submitted).await?;
        }
    }
    wait_done(&daemon, jobs).await?;
    let secs = t0.elapsed().as_secs_f64();
    let store = daemon.scheduler.store().clone();
    let all = store.list_jobs(&Default::default(), None, jobs + 10)?;
    let mut stage_ms = Vec::new();
    for j in &all {
        if !matches!(j.state, JobState::Succeeded { .. }) {
            bail!("job {} ended {:?}", j.id, j.state.status());
        }
        for s in &j.stages {
            if let StageState::Done { started_at, finished_at, .. } = s.state {
                stage_ms.push((finished_at - started_at) as f64);
            }
        }
    }
    daemon.stop().await;
    drop(procs);
    Ok((secs, stage_ms))
}

async fn wait_done(daemon: &Daemon, n: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let c = daemon.scheduler.store().counts(None)?;
        if (c.succeeded + c.failed + c.canceled) as usize >= n {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("jobs did not finish in 10 minutes: {c:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn spawn_worker(dir: &Path, url: &str, name: &str) -> anyhow::Result<Child> {
    let exe: PathBuf = std::env::current_exe().context("cannot find this program")?;
    Command::new(exe)
        .args(["worker", "--join", url, "--name", name, "--data-dir"])
        .arg(dir)
        .env("REELBOX_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start a worker process")
}

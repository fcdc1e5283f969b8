//! `reelbox bench cluster`: the same testcard load on the head alone and on 1, 2 and 4
//! worker processes (side by side in one run, one `nats-server -js` it starts itself), the
//! per-stage cost of going remote (tiny stages one at a time, head-local vs remote), and
//! the CPU demo render (N renders at once) on the same configurations.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use reelbox::config::{ClusterConfig, Config};
use reelbox::daemon::Daemon;
use reelbox::store::records::{JobState, StageState};

use super::Global;
use super::client::Client;
use super::render::{DemoInputs, demo_inputs, demo_request, setup_demo};

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
    /// Demo renders submitted at once per configuration (0: skip the render part).
    #[arg(long, default_value_t = 4)]
    pub renders: usize,
    /// Width and height of the demo renders, pixels.
    #[arg(long, default_value_t = 128)]
    pub render_size: u32,
}

/// What a configuration runs: testcards, or demo renders on the installed demo models.
enum Load<'a> {
    /// `jobs` testcards of `steps` × `step_ms`.
    Testcards { jobs: usize, steps: u64, step_ms: u64 },
    /// `jobs` demo renders at `size`².
    Renders { jobs: usize, size: u32, demo: &'a DemoModels },
}

/// The demo's inputs and where its models and runtime are, for the head and the workers.
struct DemoModels {
    inputs: DemoInputs,
    models: PathBuf,
    runtime: PathBuf,
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
pub async fn run(g: &Global, args: BenchClusterArgs) -> anyhow::Result<ExitCode> {
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
    let cards = Load::Testcards { jobs: args.jobs, steps: args.steps, step_ms: args.step_ms };
    side_by_side(&root.join("cards"), &url, &args.workers, &cards, "jobs/s").await?;
    println!("per-stage overhead: {} tiny stages (1 step, 0 ms) one at a time", args.overhead_jobs * 2);
    let tiny = Load::Testcards { jobs: args.overhead_jobs, steps: 1, step_ms: 0 };
    let inline = ClusterConfig::default().inline_kib;
    let (_, local) = load(&root.join("local"), &url, 0, &tiny, inline).await?;
    let (_, remote) = load(&root.join("remote"), &url, 1, &tiny, inline).await?;
    // The same with every artifact through the object store (`inline_kib = 0`).
    let (_, stored) = load(&root.join("stored"), &url, 1, &tiny, 0).await?;
    let (l, r, o) = (median(local), median(remote), median(stored));
    println!("  stage start→end, median: head-local {l:.1} ms, remote {r:.1} ms, overhead {:.1} ms per stage", r - l);
    println!(
        "  with every artifact through the object store (inline_kib = 0): remote {o:.1} ms, overhead {:.1} ms",
        o - l
    );
    if args.renders > 0 {
        let demo = demo_models(g).await?;
        println!(
            "CPU demo render: {} renders of the demo script at {px}x{px} submitted at once; one stage slot per box",
            args.renders,
            px = args.render_size
        );
        let renders = Load::Renders { jobs: args.renders, size: args.render_size, demo: &demo };
        side_by_side(&root.join("renders"), &url, &args.workers, &renders, "films/min").await?;
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(ExitCode::SUCCESS)
}

/// Runs `what` on the head alone and on each worker count; prints the rates, their ratio
/// to the head alone and the scaling efficiency (ratio per box doing the work).
async fn side_by_side(root: &Path, url: &str, workers: &[usize], what: &Load<'_>, unit: &str) -> anyhow::Result<()> {
    println!("{:>12}  {:>8}  {:>9}  {:>8}  {:>10}", "boxes", "seconds", unit, "ratio", "efficiency");
    let (jobs, per) = match what {
        Load::Testcards { jobs, .. } => (*jobs, 1.0),
        Load::Renders { jobs, .. } => (*jobs, 60.0),
    };
    let mut base = None;
    for n in std::iter::once(0).chain(workers.iter().copied()) {
        let (secs, _) = load(&root.join(format!("run-{n}")), url, n, what, ClusterConfig::default().inline_kib).await?;
        let rate = jobs as f64 * per / secs;
        let ratio = rate / *base.get_or_insert(rate);
        let label = if n == 0 { "head alone".to_string() } else { format!("{n} worker(s)") };
        let efficiency = ratio / n.max(1) as f64;
        println!("{label:>12}  {secs:>8.2}  {rate:>9.2}  {ratio:>7.2}x  {:>9.0}%", efficiency * 100.0);
    }
    Ok(())
}

/// The installed demo models and runtime (set up as `reelbox demo` would when missing).
async fn demo_models(g: &Global) -> anyhow::Result<DemoModels> {
    let inputs = demo_inputs()?;
    let config = Config::load(g.config.as_deref())?;
    setup_demo(&config, &inputs).await?;
    let runtime = reelbox::engine::runtime::find(&config, reelbox::config::env::ort_dylib_path())?.path;
    Ok(DemoModels { inputs, models: config.models_dir(), runtime })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `what` on a head with `workers` worker processes (none: the head runs it
/// itself), all with `inline_kib`; returns the wall seconds and each stage's start→end
/// milliseconds. Overhead runs (`step_ms` 0) submit one job at a time; everything else
/// goes in at once.
async fn load(
    dir: &Path,
    url: &str,
    workers: usize,
    what: &Load<'_>,
    inline_kib: u64,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let run = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut config = Config { data_dir: dir.join("head"), bind: "127.0.0.1:0".parse()?, ..Config::default() };
    config.workers.cpu_concurrency = 1;
    config.workers.use_gpus = false;
    config.queue.max_queued = u64::MAX;
    let demo = match what {
        Load::Renders { demo, .. } => Some(*demo),
        Load::Testcards { .. } => None,
    };
    if let Some(d) = demo {
        config.models_dir = Some(d.models.clone());
        config.runtime.onnxruntime = Some(d.runtime.clone());
    }
    let parent = dir.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = format!("{parent}-{run}").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    config.cluster = Some(ClusterConfig {
        nats_url: url.to_string(),
        name: Some(format!("h{name}").chars().take(16).collect()),
        local_work: workers == 0,
        heartbeat_ttl_s: 3,
        inline_kib,
        ..ClusterConfig::default()
    });
    let daemon = Daemon::start(config).await.context("cannot start the benchmark head")?;
    let mut procs = Procs(Vec::new());
    for i in 0..workers {
        let box_name: String =
            format!("{name}-{i}").chars().rev().take(16).collect::<Vec<_>>().into_iter().rev().collect();
        procs.0.push(spawn_worker(&dir.join(format!("w{i}")), url, &box_name, demo, inline_kib)?);
    }
    let t0 = Instant::now();
    while daemon.scheduler.remote().map_or(0, |r| r.devices().len()) < workers {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("only {:?} of {workers} workers joined", daemon.scheduler.remote().map(|r| r.devices().len()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://{}", daemon.addr);
    let (jobs, t0) = match what {
        Load::Testcards { jobs, steps, step_ms } => {
            (*jobs, submit_testcards(&daemon, &base, *jobs, *steps, *step_ms).await?)
        }
        Load::Renders { jobs, size, demo } => (*jobs, submit_renders(&base, *jobs, *size, demo).await?),
    };
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

/// Submits the testcards (one at a time for 0 ms steps); returns when the clock started.
async fn submit_testcards(
    daemon: &Daemon,
    base: &str,
    jobs: usize,
    steps: u64,
    step_ms: u64,
) -> anyhow::Result<Instant> {
    let http = reqwest::Client::new();
    let submit_url = format!("{base}/api/v1/jobs");
    let body = serde_json::json!({"kind": "testcard", "params": {"steps": steps, "step_ms": step_ms, "width": 64, "height": 36}});
    let one_by_one = step_ms == 0;
    let t0 = Instant::now();
    for submitted in 1..=jobs {
        let r = http.post(&submit_url).json(&body).send().await.context("submit")?;
        if !r.status().is_success() {
            bail!("submit answered {}", r.status());
        }
        if one_by_one {
            wait_done(daemon, submitted).await?;
        }
    }
    Ok(t0)
}

/// Makes the demo presenter's profiles, then submits the renders at once; returns when
/// the clock started (after the profiles: their upload is not the render's time).
async fn submit_renders(base: &str, jobs: usize, size: u32, demo: &DemoModels) -> anyhow::Result<Instant> {
    let c = Client::new(&Global {
        url: base.to_string(),
        key: None,
        cacert: None,
        json: true,
        config: None,
        config_error: None,
        hint: Default::default(),
        typed: Default::default(),
    })?;
    let mut bodies = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let mut body = demo_request(&c, &demo.inputs).await?;
        body["width"] = size.into();
        body["height"] = size.into();
        bodies.push(body);
    }
    let t0 = Instant::now();
    for body in bodies {
        let _: serde_json::Value = c.post("/api/v1/renders", &body).await.context("submit a render")?;
    }
    Ok(t0)
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

fn spawn_worker(
    dir: &Path,
    url: &str,
    name: &str,
    demo: Option<&DemoModels>,
    inline_kib: u64,
) -> anyhow::Result<Child> {
    let exe: PathBuf = std::env::current_exe().context("cannot find this program")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config = dir.join("config.toml");
    let toml = format!("[cluster]\nnats_url = {url:?}\nrole = \"worker\"\ninline_kib = {inline_kib}\n");
    std::fs::write(&config, toml).with_context(|| format!("cannot write {}", config.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["worker", "--join", url, "--name", name, "--data-dir"]).arg(dir).arg("--config").arg(&config);
    if let Some(d) = demo {
        cmd.arg("--models-dir").arg(&d.models).env("REELBOX_ONNXRUNTIME", &d.runtime);
    }
    cmd.env("REELBOX_LOG", "warn").stdout(Stdio::null()).spawn().context("cannot start a worker process")
}

//! `reelbox bench top`: CPU cost of watching the box. Starts a daemon (with fake GPUs by
//! default) and a running job, then measures, from /proc/PID/stat utime+stime, the share
//! of one core used by (1) the daemon's telemetry sampler thread and the whole daemon
//! while nobody watches, and (2) `reelbox top` at its refresh rate (inside tmux, which
//! gives it a real terminal) and the daemon while it serves that dashboard, and (3) how
//! long the daemon takes to answer one of top's polls. The box holds finished renders with
//! long scripts, as many as top lists, so what a render's view costs shows.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;

/// Arguments of `reelbox bench top`.
#[derive(Debug, Args)]
pub struct BenchTopArgs {
    /// Seconds to measure each phase.
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Dashboard refresh, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub refresh: f64,
    /// Fake GPUs for the daemon (MiB each); empty for the machine's own telemetry source.
    #[arg(long, default_value = "8192,24576")]
    pub fake_gpus: String,
    /// Finished renders with long scripts per finished state (top lists the last 30 of each).
    #[arg(long, default_value_t = 30)]
    pub renders: usize,
}

/// Child processes killed on drop, whatever happens to the benchmark.
struct Owned {
    daemon: Child,
    tmux_socket: Option<String>,
    dir: std::path::PathBuf,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(s) = &self.tmux_socket {
            let _ = Command::new("tmux").args(["-L", s, "kill-server"]).status();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// CPU time (utime + stime) of a process or thread in clock ticks, from its `stat` file.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the full line, utime 14 and stime 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn ticks_of(path: &str) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    cpu_ticks(&stat).ok_or_else(|| anyhow!("unexpected format of {path}"))
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The sampler thread's stat path (thread names are cut to 15 bytes by the kernel).
fn sampler_thread(pid: u32) -> anyhow::Result<String> {
    let want = &reelbox::gpu::telemetry::THREAD_NAME[..15];
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = entry?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == want) {
            return Ok(dir.join("stat").display().to_string());
        }
    }
    bail!("no {want} thread in daemon {pid}")
}

/// Share of one core used by each stat file over `span`.
async fn measure(paths: &[String], span: Duration) -> anyhow::Result<Vec<f64>> {
    let hz = clock_ticks_per_second();
    let before: Vec<u64> = paths.iter().map(|p| ticks_of(p)).collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    tokio::time::sleep(span).await;
    let after: Vec<u64> = paths.iter().map(|p| ticks_of(p)).collect::<Result<_, _>>()?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(before.iter().zip(&after).map(|(a, b)| (b.saturating_sub(*a)) as f64 / hz / secs * 100.0).collect())
}

/// Polls timed in phase 3.
const POLLS: u32 = 20;

/// Writes `per_state` finished renders of each end with scripts near the 8000-character
/// limit into the store under `dir` before the daemon opens it: their models need not be
/// installed to be listed.
async fn seed_renders(dir: &Path, per_state: usize) -> anyhow::Result<()> {
    use reelbox::kinds::JobKind as _;
    use reelbox::store::records::{Job, JobState, Stage, StageState};
    let scene = "The harbour was foggy that morning and the boats waited for the light to come. \
                 Gulls circled the masts while the old ferry turned towards the pier.";
    let script = vec![scene; 48].join("\n\n");
    let params = reelbox::kinds::render::RenderParams::sample(script.chars().take(8000).collect::<String>());
    let json = serde_json::to_value(&params)?;
    let names = reelbox::kinds::render::Render.stages(&json);
    let store = reelbox::store::Store::open(dir, true, 8)?;
    let (t0, cpu) = (reelbox::time::now_ms() - 3_600_000, reelbox::gpu::DeviceId::Cpu);
    let done = StageState::Done { started_at: t0, finished_at: t0 + 60_000, device: cpu };
    let ends = [
        JobState::Succeeded { started_at: t0, finished_at: t0 + 60_000 },
        JobState::Failed { started_at: Some(t0), finished_at: t0 + 60_000, error: "benchmark".into() },
        JobState::Canceled { canceled_at: t0 + 60_000, reason: Some("benchmark".into()) },
    ];
    for state in ends {
        for _ in 0..per_state {
            let stages = names
                .iter()
                .map(|&name| Stage { name, state: done.clone(), artifacts: Vec::new(), energy_wh: None })
                .collect();
            let job = Job {
                id: store.new_id(),
                owner: "local".into(),
                kind: "render".into(),
                params: json.to_string(),
                priority: 0,
                state: state.clone(),
                attempts: 1,
                first_started_at: Some(t0),
                stages,
                idempotency_key: None,
                created_at: t0,
            };
            store.submit(job, u64::MAX).await?;
        }
    }
    store.close();
    Ok(())
}

/// Runs the benchmark.
pub async fn run(args: BenchTopArgs) -> anyhow::Result<ExitCode> {
    if Command::new("tmux").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        bail!("bench top runs `reelbox top` inside tmux to give it a terminal: apt-get install tmux");
    }
    let exe = std::env::current_exe().context("cannot find this reelbox binary")?;
    let dir = std::env::temp_dir().join(format!("reelbox-bench-top-{}", std::process::id()));
    seed_renders(&dir, args.renders).await.context("cannot write the benchmark's renders")?;
    let mut cmd = Command::new(&exe);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("REELBOX_LOG", "warn")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env_remove("REELBOX_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !args.fake_gpus.is_empty() {
        cmd.env(reelbox::gpu::fake::FAKE_GPUS_ENV, &args.fake_gpus);
    }
    let mut daemon = cmd.spawn().context("cannot start the daemon")?;
    let stdout = daemon.stdout.take().ok_or_else(|| anyhow!("no daemon stdout"))?;
    let mut owned = Owned { daemon, tmux_socket: None, dir };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url =
        line.trim().strip_prefix("reelbox listening on ").ok_or_else(|| anyhow!("daemon said {line:?}"))?.to_string();
    let pid = owned.daemon.id();
    // A running job and a few queued ones, so the dashboard has rows to refresh.
    let http = reqwest::Client::new();
    for steps in [10_000; 4] {
        http.post(format!("{url}/api/v1/jobs"))
            .json(
                &serde_json::json!({"kind": "testcard", "params": {"steps": steps, "step_ms": 500, "vram_mib": 6000}}),
            )
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("cannot submit the benchmark jobs")?;
    }
    let span = Duration::from_secs_f64(args.seconds);
    let sampler = sampler_thread(pid)?;
    let daemon_stat = format!("/proc/{pid}/stat");
    println!(
        "reelbox top CPU benchmark: {}s per phase, refresh {}s, fake GPUs {:?}",
        args.seconds, args.refresh, args.fake_gpus
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = measure(&[sampler.clone(), daemon_stat.clone()], span).await?;
    println!("phase 1, nobody watching:   sampler thread {:>6.3}% of a core, whole daemon {:>6.3}%", idle[0], idle[1]);

    let socket = format!("reelbox-bench-top-{}", std::process::id());
    owned.tmux_socket = Some(socket.clone());
    let top_cmd = format!("{} top --url {url} --refresh {}", exe.display(), args.refresh);
    let ok = Command::new("tmux")
        .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", &top_cmd])
        .status()?;
    if !ok.success() {
        bail!("tmux could not start reelbox top");
    }
    let out = Command::new("tmux").args(["-L", &socket, "display-message", "-p", "#{pane_pid}"]).output()?;
    let top_pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().context("no pane pid from tmux")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let watched = measure(&[format!("/proc/{top_pid}/stat"), sampler, daemon_stat], span).await?;
    println!(
        "phase 2, reelbox top open:  top {:>6.3}% of a core, sampler thread {:>6.3}%, whole daemon {:>6.3}%",
        watched[0], watched[1], watched[2]
    );
    let goal = |v: f64| if v <= 1.0 { "ok" } else { "OVER" };
    println!("goals (<= 1% of a core): top {}, sampler {}", goal(watched[0]), goal(idle[0].max(watched[1])));

    // The daemon's side of one refresh, without the terminal: top's own poll, timed.
    let api = reelbox::client::ApiClient::new(&url, None, None, None)?;
    let t0 = Instant::now();
    for _ in 0..POLLS {
        reelbox::tui::client::snapshot(&api, Some(true)).await?;
    }
    let per_poll = t0.elapsed().as_secs_f64() * 1000.0 / f64::from(POLLS);
    println!("phase 3, one top poll ({} renders listed): {per_poll:>8.1} ms (mean of {POLLS})", 3 * args.renders);
    drop(owned);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_ticks_skip_names_with_spaces() {
        let stat = "1234 (reelbox (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }
}

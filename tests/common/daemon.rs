//! Starts the real `reelbox serve` binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A daemon process the test owns; killed on drop.
pub struct DaemonProc {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

impl DaemonProc {
    /// Starts `reelbox serve` on 127.0.0.1:0 with `data_dir` and extra environment.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0", env)
    }

    /// The `reelbox serve` command for `bind`, not yet started (stdout piped).
    pub fn command(data_dir: &Path, bind: &str, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
        cmd.args(["serve", "--bind", bind, "--data-dir"])
            .arg(data_dir)
            .env_remove("REELBOX_CONFIG")
            .env_remove("REELBOX_KEY")
            .env("XDG_CONFIG_HOME", data_dir.join("no-config"))
            .env("REELBOX_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `reelbox serve` on `bind` (use port 0) with `data_dir` and extra environment.
    pub fn start_on(data_dir: &Path, bind: &str, env: &[(&str, &str)]) -> Self {
        Self::spawned(Self::command(data_dir, bind, env), data_dir)
    }

    /// As [`DaemonProc::start`] with its log (standard error) written to `log`.
    pub fn start_logged(data_dir: &Path, env: &[(&str, &str)], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("daemon log file");
        let mut cmd = Self::command(data_dir, "127.0.0.1:0", env);
        cmd.stderr(file);
        Self::spawned(cmd, data_dir)
    }

    /// Starts `cmd` and waits for its "listening on" line, which carries the URL.
    fn spawned(mut cmd: Command, data_dir: &Path) -> Self {
        let mut child = cmd.spawn().expect("spawn reelbox serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read listening line");
        let url = line
            .trim()
            .strip_prefix("reelbox listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, url, data_dir: data_dir.to_path_buf() }
    }

    /// As [`DaemonProc::start`] on a given address (to restart on the same port).
    pub fn start_at(data_dir: &Path, bind: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(data_dir, bind, env)
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits; returns the exit status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let t0 = Instant::now();
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let status = self.child.wait().expect("wait");
        (status, t0.elapsed())
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Full URL for an API path.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /api/v1/jobs/{id}` until `done(job)` or the timeout.
pub async fn wait_job(
    http: &reqwest::Client,
    d: &DaemonProc,
    id: &str,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let job: serde_json::Value = http
            .get(d.at(&format!("/api/v1/jobs/{id}")))
            .send()
            .await
            .expect("get job")
            .json()
            .await
            .expect("job json");
        if done(&job) {
            return job;
        }
        assert!(t0.elapsed() < timeout, "job {id} did not reach the expected state in {timeout:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// True once a job is in a final state.
pub fn is_final(job: &serde_json::Value) -> bool {
    matches!(job["state"].as_str(), Some("succeeded" | "failed" | "canceled"))
}

/// Pulls model `name` through the API (`POST /api/v1/models/pull`, as `reelbox pull` beside a
/// daemon and the web studio's Pull do; 202 expected) and waits up to `timeout` for its
/// `model_pull` job to end: the job's id and final view.
pub async fn pull_job(
    http: &reqwest::Client,
    d: &DaemonProc,
    name: &str,
    timeout: Duration,
) -> (String, serde_json::Value) {
    let (status, job) = post_json(http, d, "/api/v1/models/pull", serde_json::json!({"name": name})).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let job = wait_job(http, d, &id, timeout, is_final).await;
    (id, job)
}

/// The body of a `testcard` job (the daemon's built-in test kind) with `params`.
pub fn testcard(params: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"kind": "testcard", "params": params})
}

/// Submits a job body to `POST /api/v1/jobs`, expecting 202; returns the job.
pub async fn submit(http: &reqwest::Client, d: &DaemonProc, body: serde_json::Value) -> serde_json::Value {
    let resp = http.post(d.at("/api/v1/jobs")).json(&body).send().await.expect("submit");
    assert_eq!(resp.status(), 202, "submit answered {}", resp.status());
    resp.json().await.expect("job json")
}

/// Submits a [`testcard`] job with `params`, expecting 202; returns its id.
pub async fn submit_testcard(http: &reqwest::Client, d: &DaemonProc, params: serde_json::Value) -> String {
    let job = submit(http, d, testcard(params)).await;
    job["id"].as_str().expect("id").to_string()
}

/// POSTs JSON to `path`; the status and the JSON answer (null when it is not JSON).
pub async fn post_json(
    http: &reqwest::Client,
    d: &DaemonProc,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = http.post(d.at(path)).json(&body).send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// GETs `path` and reads its JSON answer.
pub async fn get_json(http: &reqwest::Client, d: &DaemonProc, path: &str) -> serde_json::Value {
    http.get(d.at(path)).send().await.expect("get").json().await.expect("json")
}

//! Real processes for cluster tests: a `nats-server -js` on a free loopback port with its
//! own storage dir, a head (`reelbox serve` with `[cluster]`) and workers (`reelbox worker`),
//! each with its own data dir.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::DaemonProc;

/// A `nats-server -js` the test owns; killed on drop.
pub struct Nats {
    child: Option<Child>,
    /// The server's port.
    pub port: u16,
    /// The address it listens on (127.0.0.1 unless a test needs another).
    addr: String,
    store: PathBuf,
    /// Extra server flags (`--auth TOKEN`, `--tls ...`).
    args: Vec<String>,
    /// The config file (`-c`) names the store dir: no `-sd` (nats-server refuses both).
    store_in_file: bool,
}

/// A free loopback port (bound and released; a race with other tests is unlikely).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Nats {
    /// Starts a server with JetStream on a free port, storing under `dir`.
    pub fn start(dir: &Path) -> Self {
        Self::start_args(dir, &[])
    }

    /// As [`Nats::start`] with extra server flags (`--auth TOKEN`, `--tls --tlscert F --tlskey F`).
    pub fn start_args(dir: &Path, args: &[&str]) -> Self {
        Self::start_on(dir, "127.0.0.1", args)
    }

    /// As [`Nats::start_args`] listening on `addr` (a local address, e.g. a veth's).
    pub fn start_on(dir: &Path, addr: &str, args: &[&str]) -> Self {
        // Fail, never skip: .ci/test installs nats-server, so a missing one is a broken setup.
        let installed = Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(installed, "nats-server is not installed: apt-get install nats-server (.ci/test does)");
        let args = args.iter().map(|a| a.to_string()).collect();
        let (port, addr, store) = (free_port(), addr.to_string(), dir.join("nats"));
        let mut n = Self { child: None, port, addr, store, args, store_in_file: false };
        n.spawn();
        n
    }

    /// A server with config file `conf` whose `jetstream { store_dir }` is
    /// [`Nats::store_dir`] of `dir` (nats-server reloads such a file: `--signal reload`), and
    /// extra flags.
    pub fn start_reloadable(dir: &Path, conf: &Path, args: &[&str]) -> Self {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["-c".to_string(), conf.to_string_lossy().into_owned()]);
        let (port, store) = (free_port(), dir.join("nats"));
        let mut n = Self { child: None, port, addr: "127.0.0.1".into(), store, args, store_in_file: true };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("nats-server");
        cmd.args(["-js", "-a", &self.addr, "-p", &self.port.to_string()]);
        if !self.store_in_file {
            cmd.arg("-sd").arg(&self.store);
        }
        let child =
            cmd.args(&self.args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn nats-server");
        self.child = Some(child);
        let t0 = Instant::now();
        while std::net::TcpStream::connect((self.addr.as_str(), self.port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(10), "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL workers and the head join.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.addr, self.port)
    }

    /// Makes the server read its config file again (SIGHUP, as `nats-server --signal
    /// reload` sends); connected clients stay.
    pub fn reload(&self) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill").arg("-HUP").arg(c.id().to_string()).status().is_ok_and(|s| s.success());
            assert!(ok, "kill -HUP nats-server failed");
        }
    }

    /// Its JetStream storage dir for a test dir (`-sd`, or the config file's `store_dir`).
    pub fn store_dir(dir: &Path) -> PathBuf {
        dir.join("nats")
    }

    /// Stops the server (SIGTERM, then waits); [`Nats::start_again`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Starts a stopped server again on the same port and store.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Stops the server and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[cluster]` settings for tests: short heartbeats and ack waits (unless `extra` sets its own).
pub fn cluster_toml(url: &str, role: &str, name: &str, extra: &str) -> String {
    let ack_wait = if extra.contains("ack_wait_s") { "" } else { "ack_wait_s = 3\n" };
    format!(
        "[queue]\nretry_backoff_s = 0\n\n[cluster]\nnats_url = \"{url}\"\nrole = \"{role}\"\nname = \"{name}\"\nheartbeat_ttl_s = 2\n{ack_wait}{extra}\n"
    )
}

/// Writes `toml` as `dir/config.toml`; returns its path.
pub fn config_file(dir: &Path, toml: &str) -> String {
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    path.to_string_lossy().into_owned()
}

/// A head: `reelbox serve` with `[cluster] role = "head"`; `local_work` false leaves all
/// work to the workers.
pub fn start_head(dir: &Path, nats: &Nats, local_work: bool) -> DaemonProc {
    start_head_with(dir, nats, local_work, &[])
}

/// As [`start_head`] with extra environment (a models dir).
pub fn start_head_with(dir: &Path, nats: &Nats, local_work: bool, env: &[(&str, &str)]) -> DaemonProc {
    start_head_cfg(dir, nats, &format!("local_work = {local_work}"), env)
}

/// A head with `extra` lines under its `[cluster]` (credentials, TLS, `local_work`).
pub fn start_head_cfg(dir: &Path, nats: &Nats, extra: &str, env: &[(&str, &str)]) -> DaemonProc {
    let cfg = config_file(&dir.join("cfg"), &cluster_toml(&nats.url(), "head", "head", extra));
    let mut all = vec![("REELBOX_CONFIG", cfg.as_str())];
    all.extend_from_slice(env);
    DaemonProc::start(&dir.join("data"), &all)
}

/// As [`start_head_cfg`] with the head's log (info level) written to `log`.
pub fn start_head_logged(dir: &Path, nats: &Nats, extra: &str, log: &Path) -> DaemonProc {
    let cfg = config_file(&dir.join("cfg"), &cluster_toml(&nats.url(), "head", "head", extra));
    DaemonProc::start_logged(&dir.join("data"), &[("REELBOX_CONFIG", cfg.as_str()), ("REELBOX_LOG", "info")], log)
}

/// A worker process; killed on drop.
pub struct WorkerProc {
    child: Child,
    /// Its box name.
    pub name: String,
}

impl WorkerProc {
    /// Starts `reelbox worker --join URL --name NAME --data-dir DIR/data`.
    pub fn start(dir: &Path, nats: &Nats, name: &str) -> Self {
        Self::start_with(dir, nats, name, &[])
    }

    /// As [`WorkerProc::start`] with extra arguments (`--models-dir DIR`).
    pub fn start_with(dir: &Path, nats: &Nats, name: &str, args: &[&str]) -> Self {
        Self::start_env(dir, nats, name, args, &[])
    }

    /// As [`WorkerProc::start_with`] with extra environment (`REELBOX_FAKE_GPUS`).
    pub fn start_env(dir: &Path, nats: &Nats, name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(worker_command(dir, nats, name, "", args).envs(env.iter().copied()), name)
    }

    /// A worker run inside a network namespace (`ip netns exec`), whose link a test cuts; its
    /// log (info level) written to `log` when given.
    pub fn start_in_logged(dir: &Path, nats: &Nats, name: &str, ns: &NetNs, log: Option<&Path>) -> Self {
        let mut inner = worker_command(dir, nats, name, "", &[]);
        if log.is_some() {
            inner.env("REELBOX_LOG", "info");
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name]).arg(inner.get_program()).args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdout(Stdio::piped());
        match log {
            Some(log) => cmd.stderr(std::fs::File::create(log).expect("worker log file")),
            None => cmd.stderr(Stdio::inherit()),
        };
        Self::spawn(&mut cmd, name)
    }

    /// A worker with `extra` lines under its config's `[cluster]` (credentials, TLS).
    pub fn start_cfg(dir: &Path, nats: &Nats, name: &str, extra: &str) -> Self {
        Self::spawn(&mut worker_command(dir, nats, name, extra, &[]), name)
    }

    /// As [`WorkerProc::start_cfg`] with its log (standard error, info level) written to `log`.
    pub fn start_logged(dir: &Path, nats: &Nats, name: &str, extra: &str, log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("worker log file");
        Self::spawn(worker_command(dir, nats, name, extra, &[]).env("REELBOX_LOG", "info").stderr(file), name)
    }

    fn spawn(cmd: &mut Command, name: &str) -> Self {
        let mut child = cmd.spawn().expect("spawn reelbox worker");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the worker's first line");
        assert!(line.contains("worker started"), "unexpected first line {line:?}");
        Self { child, name: name.to_string() }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (as `systemctl stop` sends); how long the process took to exit, if it did
    /// within `limit`.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<Duration> {
        self.signal("TERM");
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.child.try_wait().ok().flatten().is_some() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGSTOP or SIGCONT: the process stays but says nothing (a network cut, as NATS sees it).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `reelbox worker --join URL --name NAME --data-dir DIR/data` command, not yet
/// started (stdout piped), with `extra` lines under its config's `[cluster]`.
pub fn worker_command(dir: &Path, nats: &Nats, name: &str, extra: &str, args: &[&str]) -> Command {
    let cfg = config_file(&dir.join("cfg"), &cluster_toml(&nats.url(), "worker", name, extra));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
    cmd.args(["worker", "--join", &nats.url(), "--name", name, "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .env("REELBOX_CONFIG", &cfg)
        .env_remove("REELBOX_KEY")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("REELBOX_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Waits until the head's `/api/v1/system` lists every named box's CPU.
pub async fn wait_boxes(http: &reqwest::Client, head: &DaemonProc, names: &[&str]) {
    let t0 = Instant::now();
    loop {
        let sys: serde_json::Value =
            http.get(head.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
        let ids: Vec<String> = sys["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect();
        if names.iter().all(|n| ids.contains(&format!("{n}/cpu"))) {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "boxes {names:?} never appeared: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the head's `GET /api/v1/cluster` lists exactly the named boxes (those gone
/// dropped out once their heartbeats expired).
pub async fn wait_only_boxes(http: &reqwest::Client, head: &DaemonProc, names: &[&str]) {
    let t0 = Instant::now();
    loop {
        let view: serde_json::Value =
            http.get(head.at("/api/v1/cluster")).send().await.expect("cluster").json().await.expect("json");
        let hosts: Vec<&str> =
            view["boxes"].as_array().into_iter().flatten().filter_map(|b| b["host"].as_str()).collect();
        if hosts == names {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the head lists {hosts:?}, not only {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `n` testcards of `steps` × 100 ms on the head until each one succeeded (showing
/// the NATS server's log at `nats_log`, when given, for one that did not); the devices
/// their stages ran on, with the jobs' ids.
pub async fn run_testcards(
    http: &reqwest::Client,
    head: &DaemonProc,
    n: usize,
    steps: u32,
    nats_log: Option<&Path>,
) -> (std::collections::BTreeSet<String>, Vec<String>) {
    use crate::common::daemon::{is_final, submit_testcard, wait_job};
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(submit_testcard(http, head, serde_json::json!({"steps": steps, "step_ms": 100})).await);
    }
    let mut devices = std::collections::BTreeSet::new();
    for id in &ids {
        let j = wait_job(http, head, id, Duration::from_secs(60), is_final).await;
        let server_log = nats_log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
        assert_eq!(j["state"], "succeeded", "{j}\nnats-server log:\n{server_log}");
        devices.extend(stage_devices(&j));
    }
    (devices, ids)
}

/// `reelbox cluster status --url HEAD` as a user with no config or key of their own runs it.
pub fn cluster_status(dir: &Path, head: &DaemonProc, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["cluster", "status", "--url", &head.url])
        .args(extra)
        .env_remove("REELBOX_CONFIG")
        .env_remove("REELBOX_KEY")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .output()
        .expect("cluster status")
}

/// The devices a job's stages ran on.
pub fn stage_devices(job: &serde_json::Value) -> Vec<String> {
    job["stages"].as_array().into_iter().flatten().filter_map(|s| s["device"].as_str().map(str::to_owned)).collect()
}

/// How a test cuts a box off the bus: as root, `w1` runs in a network namespace whose link
/// the test takes down (a real cut: the process runs on, its packets go nowhere); otherwise
/// the cut box's process is stopped (SIGSTOP), its stage with it.
pub struct Cut {
    pub ns: Option<NetNs>,
}

impl Cut {
    pub fn make() -> Self {
        Self { ns: NetNs::make() }
    }

    /// The NATS server, listening where a box in the namespace reaches it.
    pub fn nats(&self, dir: &Path) -> Nats {
        match &self.ns {
            Some(ns) => Nats::start_on(dir, &ns.host_ip, &[]),
            None => Nats::start(dir),
        }
    }

    /// Worker `w1`, in the namespace when there is one, logging to `log`.
    pub fn w1(&self, dir: &Path, nats: &Nats, log: &Path) -> WorkerProc {
        match &self.ns {
            Some(ns) => WorkerProc::start_in_logged(&dir.join("w1"), nats, "w1", ns, Some(log)),
            None => WorkerProc::start_logged(&dir.join("w1"), nats, "w1", "", log),
        }
    }

    /// Cuts `worker` off (`quiet`) or lets it back: the namespace's link, else the process.
    pub fn silence(&self, worker: &WorkerProc, quiet: bool) {
        match &self.ns {
            Some(ns) => ns.link(!quiet),
            None => worker.signal(if quiet { "STOP" } else { "CONT" }),
        }
    }
}

/// A network namespace joined to this host by a veth pair, so that a test can cut one
/// box's network (link down) while its process keeps running; deleted on drop.
pub struct NetNs {
    name: String,
    host_if: String,
    /// The host side's address: servers the box must reach listen here.
    pub host_ip: String,
}

impl NetNs {
    /// Makes one, or `None` when this process may not (not root, no `ip netns`).
    pub fn make() -> Option<Self> {
        // Unique per test too: tests of one binary run side by side in one process.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 60;
        let (id, net) = (format!("{}n{n}", std::process::id()), std::process::id() % 250);
        let ns = Self {
            name: format!("rbx{id}"),
            host_if: format!("rbh{id}"),
            host_ip: format!("10.213.{net}.{}", 4 * n + 1),
        };
        let peer = format!("rbw{id}");
        let inside = format!("10.213.{net}.{}/30", 4 * n + 2);
        let host = format!("{}/30", ns.host_ip);
        let steps: [&[&str]; 7] = [
            &["netns", "add", &ns.name],
            &["link", "add", &ns.host_if, "type", "veth", "peer", "name", &peer],
            &["link", "set", &peer, "netns", &ns.name],
            &["addr", "add", &host, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
            &["-n", &ns.name, "addr", "add", &inside, "dev", &peer],
            &["-n", &ns.name, "link", "set", &peer, "up"],
        ];
        for step in steps {
            let ok = Command::new("ip").args(step).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
            if !ok {
                return None; // Drop removes what was made.
            }
        }
        Some(ns)
    }

    /// Cuts (`false`) or restores (`true`) the box's link.
    pub fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let ok = Command::new("ip").args(["link", "set", &self.host_if, state]).status().is_ok_and(|s| s.success());
        assert!(ok, "ip link set {} {state} failed", self.host_if);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace removes the veth pair with it.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).stderr(Stdio::null()).status();
    }
}

/// Waits up to 10 s until the artifact buckets of `boxes` hold no object and no chunk
/// (the head deletes a stage's inputs and outputs after its commit, off the stage's path;
/// a box that ran nothing has no bucket).
/// `client` needs the rights to read them (the head's user, or a server without users).
pub async fn assert_buckets_empty(client: &async_nats::Client, boxes: &[&str]) {
    use futures::StreamExt;
    let js = async_nats::jetstream::new(client.clone());
    let t0 = Instant::now();
    loop {
        let mut left = Vec::new();
        for b in boxes {
            let name = reelbox::cluster::protocol::object_bucket(b);
            // A box that ran nothing has no bucket: nothing is left there either.
            let Ok(store) = js.get_object_store(&name).await else { continue };
            let mut list = store.list().await.expect("list objects");
            while let Some(o) = list.next().await {
                left.push(format!("{name}: object {}", o.expect("object info").name));
            }
            let stream = js.get_stream(format!("OBJ_{name}")).await.expect("bucket stream");
            let mut chunks = stream.info_with_subjects(format!("$O.{name}.C.>")).await.expect("chunk subjects");
            while let Some(c) = chunks.next().await {
                left.push(format!("{name}: chunks on {}", c.expect("subject").0));
            }
        }
        if left.is_empty() {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "left in the buckets after the stages: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

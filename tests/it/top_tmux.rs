//! `reelbox top` driven through tmux against the real daemon, as a person on SSH would:
//! it shows a running job, `c` asks and `y` cancels it, a daemon restart shows a status line and
//! recovers, and `q` exits with the terminal restored (main screen, canonical mode).

use crate::common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{DaemonProc, wait_job};
use serde_json::{Value, json};

const WIDTH: u16 = 100;
const HEIGHT: u16 = 30;

/// A private tmux server (own socket), killed on drop.
struct Tmux {
    socket: String,
    _conf: tempfile::NamedTempFile,
}

impl Tmux {
    fn start(command: &str) -> Self {
        Self::start_sized(command, WIDTH, HEIGHT)
    }

    fn start_sized(command: &str, width: u16, height: u16) -> Self {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!("tmux is missing; this test needs it: apt-get install tmux"),
        }
        let mut conf = tempfile::NamedTempFile::new().expect("tmux config");
        // Keep the pane after the program exits so its exit status and screen can be read.
        std::io::Write::write_all(&mut conf, b"set -g remain-on-exit on\nset -g status off\n").expect("write config");
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = format!("reelbox-top-test-{}-{n}", std::process::id());
        let me = Self { socket, _conf: conf };
        let ok = Command::new("tmux")
            .args(["-L", &me.socket, "-f"])
            .arg(me._conf.path())
            .args(["new-session", "-d", "-s", "top", "-x", &width.to_string(), "-y", &height.to_string(), command])
            .status()
            .expect("run tmux");
        assert!(ok.success(), "tmux new-session failed");
        me
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "top"])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "top", keys]);
    }

    fn pane(&self, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", "top", format]).trim().to_string()
    }

    /// Waits until the screen satisfies `ok`; panics with the screen otherwise.
    fn wait(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(t0.elapsed() < timeout, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `sh -c` script: run top, then print its exit code and the tty's canonical-mode flag
/// and keep the pane open for reading.
fn top_script(url: &str, extra: &str) -> String {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_reelbox"));
    let script = format!(
        "{} top --url {} {extra}; echo \"top-exit=$?\"; stty -a | tr ' ' '\\n' | grep -x -- '-\\?icanon'; sleep 60",
        shell_quote(&bin.display().to_string()),
        shell_quote(url)
    );
    format!("sh -c {}", shell_quote(&script))
}

/// Asserts top exited 0 and left the terminal as it found it. (After a resize tmux's
/// main screen may keep stray cells, so `main_screen_clean` is checked only without one.)
fn assert_restored(tmux: &Tmux, after: &str, main_screen_clean: bool) {
    assert!(after.contains("top-exit=0"), "top did not exit cleanly:\n{after}");
    let modes: Vec<&str> = after.lines().map(str::trim).filter(|l| l.ends_with("icanon")).collect();
    assert_eq!(modes, ["icanon"], "the terminal is left in raw mode:\n{after}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "top left the alternate screen on");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "top left the cursor hidden");
    assert!(!main_screen_clean || !after.contains("jobs ·"), "the dashboard stayed on the main screen:\n{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_running_job_cancels_it_survives_a_restart_and_quits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("REELBOX_FAKE_GPUS", "8192,24576")];
    let mut daemon = DaemonProc::start(dir.path(), &env);
    let http = reqwest::Client::new();
    let tmux = Tmux::start(&top_script(&daemon.url, "--refresh 0.5"));
    tmux.wait("the dashboard", Duration::from_secs(20), |s| s.contains("devices · fake") && s.contains("Fake GPU 24"));
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "top draws on the alternate screen");

    let job: Value = http
        .post(daemon.at("/api/v1/jobs"))
        .json(&json!({"kind": "testcard", "params": {"steps": 600, "step_ms": 100}}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("job");
    let id = job["id"].as_str().expect("id").to_string();
    let short = id[id.len() - 8..].to_string();
    let screen = tmux.wait("the running job", Duration::from_secs(20), |s| {
        s.lines().any(|l| l.contains(&short) && l.contains("running") && l.contains("card"))
    });
    assert!(screen.contains("1 running"), "{screen}");

    // The only job is the selected row: `c` asks first (one stray key over a laggy link
    // stopped a long render), any other key keeps it, and `c` `y` cancels it.
    tmux.keys("c");
    tmux.wait("the question", Duration::from_secs(10), |s| {
        s.contains(&format!("cancel job {short}? y cancels it, any other key keeps it"))
    });
    tmux.keys("n");
    tmux.wait("the answer", Duration::from_secs(10), |s| s.contains(&format!("not canceled: {short} keeps running")));
    let (_, still) =
        common::api::call(None, reqwest::Method::GET, daemon.at(&format!("/api/v1/jobs/{id}")), None).await;
    assert_eq!(still["state"], "running", "{still}");
    tmux.keys("c");
    tmux.wait("the question again", Duration::from_secs(10), |s| s.contains("y cancels it"));
    tmux.keys("y");
    let job = wait_job(&http, &daemon, &id, Duration::from_secs(15), |j| j["state"] == "canceled").await;
    assert_eq!(job["state"], "canceled");
    tmux.wait("the canceled row", Duration::from_secs(10), |s| {
        s.lines().any(|l| l.contains(&short) && l.contains("canceled"))
    });

    // The daemon dies: a status line says so, and top picks up again after a restart.
    let bind = daemon.url.trim_start_matches("http://").to_string();
    daemon.kill9();
    tmux.wait("the daemon-down status line", Duration::from_secs(15), |s| s.contains("daemon down"));
    let daemon = DaemonProc::start_at(dir.path(), &bind, &env);
    assert_eq!(daemon.url, format!("http://{bind}"));
    tmux.wait("reconnection", Duration::from_secs(20), |s| {
        !s.contains("daemon down") && s.lines().any(|l| l.contains(&short) && l.contains("canceled"))
    });

    tmux.keys("q");
    let after = tmux.wait("top to exit", Duration::from_secs(10), |s| s.contains("top-exit=") && s.contains("icanon"));
    assert_restored(&tmux, &after, true);
}

#[test]
fn top_redraws_on_resize_and_restores_the_terminal_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No NVIDIA driver here and no fakes: the CPU-only panel.
    let daemon = DaemonProc::start(dir.path(), &[]);
    let tmux = Tmux::start_sized(&top_script(&daemon.url, ""), 80, 24);
    let small = tmux.wait("the CPU-only dashboard", Duration::from_secs(20), |s| s.contains("host · no GPU"));
    let widest = |s: &str| s.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert_eq!(widest(&small), 80, "{small}");
    tmux.tmux(&["resize-window", "-t", "top", "-x", "160", "-y", "48"]);
    let big = tmux.wait("a redraw at 160x48", Duration::from_secs(10), |s| widest(s) == 160 && s.lines().count() >= 47);
    assert!(big.contains("host · no GPU"), "{big}");
    // SIGTERM (a service manager, a closing session) ends top cleanly too.
    let shell = tmux.pane("#{pane_pid}");
    let out = Command::new("pgrep").args(["-P", &shell]).output().expect("pgrep");
    let top_pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!top_pid.is_empty(), "no top process under the pane's shell {shell}");
    let killed = Command::new("kill").args(["-TERM", &top_pid]).status().expect("kill");
    assert!(killed.success());
    let after = tmux.wait("top to exit", Duration::from_secs(10), |s| s.contains("top-exit=") && s.contains("icanon"));
    assert_restored(&tmux, &after, false);
}

//! The service protocol systemd's `Type=notify` + `WatchdogSec=` unit relies on, spoken to
//! a notify socket the test owns.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn messages_until(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < timeout {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {timeout:?}; got {seen:?}");
}

#[test]
fn serve_notifies_ready_pings_the_watchdog_and_notifies_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let path = path.to_string_lossy().into_owned();
    // systemd names the watched process in WATCHDOG_PID; `exec` keeps the shell's pid.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve --bind 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_reelbox"))
        .arg(dir.path().join("data"))
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .env("REELBOX_LOG", "warn")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn reelbox serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    assert!(line.starts_with("reelbox listening on"), "{line}");
    messages_until(&sock, "READY=1", Duration::from_secs(5));
    // Half the 400 ms interval: several pings in a second.
    let t0 = Instant::now();
    for _ in 0..3 {
        messages_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(t0.elapsed() < Duration::from_millis(1500), "pings every ~200 ms, took {:?}", t0.elapsed());
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(child.wait().expect("wait").success());
    messages_until(&sock, "STOPPING=1", Duration::from_secs(1));
}

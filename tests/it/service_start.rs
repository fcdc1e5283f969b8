//! What an admin meets when the service starts and stops: settings a restart cannot mend
//! stop it with `EX_CONFIG` (78, which the units' `RestartPreventExitStatus=` names) and a
//! message naming the setting, and the log says what the box has and which jobs a stop
//! put back.

use crate::common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::daemon::{DaemonProc, submit, wait_job};
use serde_json::json;

/// Runs `reelbox serve` on `bind` with `env` until it exits (it should not start).
fn refused(data_dir: &Path, bind: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = DaemonProc::command(data_dir, bind, env);
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let Output { status, stderr, .. } = cmd.output().expect("run reelbox serve");
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

#[test]
fn settings_a_restart_cannot_mend_stop_the_service_with_ex_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");

    // A LAN bind before any key exists: the hint gives the command for a packaged box too.
    let (code, stderr) = refused(&data, "0.0.0.0:0", &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("without an API key") && stderr.contains("as root on a packaged install"), "{stderr}");

    // A TLS file that is not there.
    let config = tmp.path().join("tls.toml");
    std::fs::write(&config, "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n").expect("cfg");
    let (code, stderr) = refused(&data, "127.0.0.1:0", &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("tls.cert") && stderr.contains("cannot read the file"), "{stderr}");

    // A `[retention]` that TOML reads but the sweep cannot use.
    std::fs::write(&config, "[retention]\nfinished_job_days = -3\n").expect("cfg");
    let (code, stderr) = refused(&data, "127.0.0.1:0", &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("retention.finished_job_days"), "{stderr}");

    // A port another program (here: the test) holds: named as `bind`, not retried every 5 s.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = holder.local_addr().expect("addr").to_string();
    let (code, stderr) = refused(&data, &taken, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains(&taken) && stderr.contains("`bind`") && stderr.contains("another reelbox"), "{stderr}");

    // A host name where an address belongs says what to write instead.
    std::fs::write(&config, "bind = \"localhost:8470\"\n").expect("cfg");
    let (code, stderr) = refused(&data, "127.0.0.1:0", &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("bind") && stderr.contains("127.0.0.1:8470"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_says_what_the_box_has_and_which_jobs_a_stop_put_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("first.log");
    let c = reqwest::Client::new();
    let mut d = DaemonProc::start_logged(dir.path(), &[("REELBOX_LOG", "info")], &log);
    let job = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 200, "step_ms": 100}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &id, Duration::from_secs(10), |j| j["state"] == "running").await;
    let (status, _) = d.terminate();
    assert!(status.success(), "exit status {status}");
    let first = std::fs::read_to_string(&log).expect("log");
    assert!(first.contains(&format!("web studio at {}/", d.url)), "{first}");
    assert!(first.contains("models in ") && first.contains("diffusion "), "{first}");
    assert!(!first.contains("libloading"), "NVML's absence in libloading's words: {first}");
    let put_back = first.lines().find(|l| l.contains("put back in the queue")).unwrap_or_else(|| panic!("{first}"));
    assert!(put_back.contains(&format!("{id} (testcard)")), "{put_back}");

    let log = dir.path().join("second.log");
    let _d = DaemonProc::start_logged(dir.path(), &[("REELBOX_LOG", "info")], &log);
    let second = std::fs::read_to_string(&log).expect("log");
    let resumed = second.lines().find(|l| l.contains("resuming jobs")).unwrap_or_else(|| panic!("{second}"));
    assert!(resumed.contains(&id), "{resumed}");
}

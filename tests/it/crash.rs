//! Crash edges against the real daemon: event ids across `kill -9`, a second daemon on a
//! data dir already in use, a job whose runs keep taking the daemon down, and the time of
//! a job resumed after one.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::{DaemonProc, is_final, submit, wait_job};
use common::sse::read_events;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn bind_of(d: &DaemonProc) -> String {
    d.url.trim_start_matches("http://").to_string()
}

fn config_file(dir: &Path, toml: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    path.to_string_lossy().into_owned()
}

/// A daemon on `dir` running a 3 s testcard: the daemon, its address, the job's id.
async fn daemon_with_a_card(dir: &Path, c: &reqwest::Client) -> (DaemonProc, String, String) {
    let d = DaemonProc::start(dir, &[]);
    let bind = bind_of(&d);
    let job = submit(c, &d, json!({"kind": "testcard", "params": {"steps": 30, "step_ms": 100}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    (d, bind, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumed_after_kill_9_gets_every_later_state_and_no_id_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let (mut d, bind, id) = daemon_with_a_card(dir.path(), &c).await;
    let events_url = format!("/api/v1/jobs/{id}/events");
    // Progress events are committed without an fsync of their own: the newest ones are
    // exactly what a kill -9 takes away.
    let seen = read_events(c.get(d.at(&events_url)).send().await.expect("sse"), |got| {
        got.iter().filter(|e| e.1["type"] == "progress").count() >= 3
    })
    .await;
    let last = seen.last().expect("some events").0;
    d.kill9();

    let d = DaemonProc::start_at(dir.path(), &bind, &[]);
    let resumed = tokio::time::timeout(
        Duration::from_secs(60),
        read_events(
            c.get(d.at(&events_url)).header("Last-Event-ID", last.to_string()).send().await.expect("sse"),
            |_| false,
        ),
    )
    .await
    .expect("the resumed stream ends with the job");
    assert!(resumed.iter().all(|e| e.0 > last), "a resumed stream sends only ids after {last}: {resumed:?}");
    let states: Vec<&str> =
        resumed.iter().filter(|e| e.1["type"] == "state").filter_map(|e| e.1["state"].as_str()).collect();
    assert_eq!(states, ["queued", "running", "succeeded"], "every state after the crash arrives: {resumed:?}");

    // No id the client saw before the crash now names a different event.
    let history = read_events(c.get(d.at(&events_url)).send().await.expect("sse"), |_| false).await;
    let before: BTreeMap<u64, &Value> = seen.iter().map(|(i, v)| (*i, v)).collect();
    for (i, event) in history.iter().filter(|e| e.0 <= last) {
        if let Some(was) = before.get(i) {
            assert_eq!(*was, event, "event id {i} was handed out twice");
        }
    }
    let restart = history.iter().find(|e| e.1["message"].as_str().is_some_and(|m| m.contains("daemon restarted")));
    let after_crash = restart.map(|e| e.0);
    assert!(after_crash.is_some_and(|i| i > last), "the restart's events come after id {last}: {history:?}");
}

/// Every file under `dir` with its bytes, except the database (its pages are the first
/// daemon's business and are checked through the API instead).
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.file_name().is_some_and(|n| n != "reelbox.redb") {
                out.insert(p.clone(), std::fs::read(&p).expect("read file"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_a_data_dir_in_use_names_the_pid_and_deletes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let d = DaemonProc::start(dir.path(), &[]);
    let mut png = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb([200, 40, 90]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode png");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.clone()).file_name("card.png").mime_str("image/png").expect("mime"),
    );
    let resp = c.post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), 201);
    let art: Value = resp.json().await.expect("artifact json");
    // A file the first daemon could be writing right now looks just like a crash's leftover.
    let in_flight = dir.path().join("artifacts/ZZ/01INFLIGHT0000000000000000.png.partial");
    std::fs::create_dir_all(in_flight.parent().expect("parent")).expect("mkdir");
    std::fs::write(&in_flight, b"half written").expect("write partial");
    let before = files_under(dir.path());

    let mut second = DaemonProc::command(dir.path(), "127.0.0.1:0", &[])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second reelbox serve");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = second.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            panic!("a second daemon on the same data dir kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(!status.success(), "the second daemon must fail: {status}");
    assert!(in_flight.exists(), "the first daemon's temp file was deleted");
    assert!(stderr.contains(&format!("in use by PID {}", d.pid())), "names the first daemon: {stderr}");
    assert!(stderr.contains(&dir.path().display().to_string()), "names the data dir: {stderr}");

    assert_eq!(files_under(dir.path()), before, "the first daemon's files are untouched");
    let got = c.get(d.at(art["url"].as_str().expect("url"))).send().await.expect("download");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("bytes")[..], png[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_killing_the_daemon_fails_after_max_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_file(dir.path(), "[queue]\nmax_attempts = 2\nretry_backoff_s = 0\n");
    let env = [("REELBOX_CONFIG", cfg.as_str())];
    let c = http();
    let mut d = DaemonProc::start(dir.path(), &env);
    let bind = bind_of(&d);
    let job = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 600, "step_ms": 100}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    for attempt in 1..=2u64 {
        let running = wait_job(&c, &d, &id, Duration::from_secs(20), |j| j["state"] == "running").await;
        assert_eq!(running["attempts"], attempt, "{running}");
        d.kill9();
        d = DaemonProc::start_at(dir.path(), &bind, &env);
    }
    let job = wait_job(&c, &d, &id, Duration::from_secs(10), is_final).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("running when the daemon stopped 2 times"), "{job}");

    // The daemon stays up and keeps working.
    let next = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}})).await;
    let done = wait_job(&c, &d, next["id"].as_str().expect("id"), Duration::from_secs(20), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = wait_job(&c, &d, &id, Duration::from_secs(5), is_final).await;
    assert_eq!(again["state"], "failed", "the failed job stays failed: {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_stays_paused_across_a_restart_until_resumed() {
    // An operator pauses the box to work on it; a restart (an upgrade, a reboot, a crash)
    // started every queued job.
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let mut d = DaemonProc::start(dir.path(), &[]);
    let bind = bind_of(&d);
    assert_eq!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    let job = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    d.kill9();

    let d = DaemonProc::start_at(dir.path(), &bind, &[]);
    let system: Value = c.get(d.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    assert_eq!(system["paused"], true, "{system}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let view: Value = c.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(view["state"], "queued", "{view}");
    assert!(view["waiting"].as_str().is_some_and(|w| w.contains("paused")), "{view}");
    assert_eq!(c.post(d.at("/api/v1/queue/resume")).send().await.expect("resume").status(), 200);
    let done = wait_job(&c, &d, &id, Duration::from_secs(20), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_resumed_after_kill_9_counts_its_time_from_its_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let (mut d, bind, id) = daemon_with_a_card(dir.path(), &c).await;
    let running = wait_job(&c, &d, &id, Duration::from_secs(20), |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let first = running["started_at"].as_str().expect("started_at").to_string();
    d.kill9();

    let d = DaemonProc::start_at(dir.path(), &bind, &[]);
    let j = wait_job(&c, &d, &id, Duration::from_secs(60), is_final).await;
    assert_eq!((&j["state"], &j["attempts"]), (&json!("succeeded"), &json!(2)), "{j}");
    // `reelbox top`'s `took` and the web studio count from here: the whole job, not its last try.
    assert_eq!(j["started_at"], first, "{j}");
}

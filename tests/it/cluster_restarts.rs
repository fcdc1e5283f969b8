//! Restarts around remote stages, with real processes: the head killed with -9 mid-stage
//! takes the result that arrived while it was down, and a NATS server restarted mid-stage
//! (file storage) loses nothing, and a head whose NATS server is down at its start serves
//! at once and takes its worker boxes when the server comes up; work submitted while the
//! server is away waits for it without counting attempts. A second box under a name a
//! running box holds refuses to join; the box itself, restarted after kill -9, joins, and
//! takes back at once the stage it was running, but never runs one the head gave away.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use cluster_support::{
    Nats, WorkerProc, cluster_status, run_testcards, stage_devices, start_head, start_head_cfg, start_head_logged,
    wait_boxes, worker_command,
};
use common::daemon::{DaemonProc, is_final, submit_testcard, wait_job};
use common::sse::read_events;
use serde_json::{Value, json};

/// Waits until the job runs on a worker box with some progress; returns the device.
async fn running_remote(http: &reqwest::Client, head: &DaemonProc, id: &str) -> String {
    let j = wait_job(http, head, id, Duration::from_secs(30), |j| {
        j["state"] == "running"
            && j["device"].as_str().is_some_and(|d| d.contains('/'))
            && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    })
    .await;
    j["device"].as_str().expect("device").to_string()
}

fn artifact_counts(job: &Value) -> Vec<usize> {
    job["stages"].as_array().into_iter().flatten().map(|s| s["artifacts"].as_array().map_or(0, Vec::len)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_head_mid_stage_resumes_and_takes_the_result_that_arrived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let head_dir = dir.path().join("head");
    let mut head = start_head(&head_dir, &nats, false);
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    let id = submit_testcard(&http, &head, json!({"steps": 20, "step_ms": 100})).await;
    let device = running_remote(&http, &head, &id).await;
    let bind = head.url.trim_start_matches("http://").to_string();
    head.kill9();
    // The worker finishes the card stage (2 s) and its result waits in JetStream.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cfg = head_dir.join("cfg").join("config.toml");
    let head = DaemonProc::start_at(&head_dir.join("data"), &bind, &[("REELBOX_CONFIG", cfg.to_str().expect("utf-8"))]);
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j)[0], device, "{j}");
    assert_eq!(artifact_counts(&j), [1, 1], "one artifact per stage: {j}");
    // The stream of a finished job ends with it.
    let resp = http.get(head.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let events = read_events(resp, |_| false).await;
    let took = events.iter().any(|e| e.1["message"].as_str().is_some_and(|m| m.contains("while the head was away")));
    assert!(took, "the card stage's result was taken, not run again: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_mid_stage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, false);
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let _w2 = WorkerProc::start(&dir.path().join("w2"), &nats, "w2");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1", "w2"]).await;

    let ids = [
        submit_testcard(&http, &head, json!({"steps": 30, "step_ms": 100})).await,
        submit_testcard(&http, &head, json!({"steps": 30, "step_ms": 100})).await,
    ];
    running_remote(&http, &head, &ids[0]).await;
    nats.restart();
    for id in &ids {
        let j = wait_job(&http, &head, id, Duration::from_secs(90), is_final).await;
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(artifact_counts(&j), [1, 1], "one artifact per stage: {j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_whose_nats_server_is_down_serves_at_once_and_takes_its_boxes_when_it_comes_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = Nats::start(dir.path());
    nats.stop();
    // It answered nothing for 60 s, then exited (and systemd restarted it, over and over).
    let head = start_head(&dir.path().join("head"), &nats, false);
    let http = reqwest::Client::new();
    let r = http.get(head.at("/api/v1/cluster")).send().await.expect("cluster");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "cluster_unreachable", "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(&nats.url()[7..])), "{body}");
    // Work is taken and waits for a box (local_work = false), saying so.
    let id = submit_testcard(&http, &head, json!({"steps": 1, "step_ms": 10})).await;
    let waits = |j: &Value| {
        j["waiting"].as_str().is_some_and(|w| w.starts_with("no worker box is connected: this head cannot reach"))
    };
    wait_job(&http, &head, &id, Duration::from_secs(20), waits).await;

    // The server comes up, a box joins: the head attaches it by itself and the job runs there.
    nats.start_again();
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j), ["w1/cpu", "w1/cpu"], "{j}");
    let r = http.get(head.at("/api/v1/cluster")).send().await.expect("cluster");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_submitted_while_nats_is_away_waits_for_it_without_counting_attempts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, false);
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    nats.stop();
    let id = submit_testcard(&http, &head, json!({"steps": 2, "step_ms": 100})).await;
    let waits = |j: &Value| {
        j["waiting"].as_str().is_some_and(|w| w.starts_with("no worker box is connected: this head cannot reach"))
    };
    wait_job(&http, &head, &id, Duration::from_secs(30), waits).await;
    // Well past the three unacked publishes (5 s each) that failed such a job for good.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let j: Value =
        http.get(head.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(j["state"], "queued", "{j}");
    assert_eq!(j["attempts"], 0, "no attempt counted while the server was away: {j}");
    assert!(waits(&j), "{j}");
    // `cluster status` says the server does not answer instead of listing w1 as alive.
    let status = cluster_status(dir.path(), &head, &[]);
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success() && said.contains("cannot reach its NATS server"), "{said}");

    nats.start_again();
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j), ["w1/cpu", "w1/cpu"], "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_box_under_a_taken_name_refuses_to_join_and_the_box_itself_rejoins_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, false);
    let mut attic = WorkerProc::start(&dir.path().join("attic"), &nats, "attic");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["attic"]).await;

    // A clone of the machine, same name, no models.
    let err = dir.path().join("clone.err");
    let mut clone = worker_command(&dir.path().join("clone"), &nats, "attic", "", &[])
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn the clone");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = clone.try_wait().expect("try_wait") {
            break Some(status);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = clone.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "the clone joined as attic: {said}");
    assert!(said.contains("another box already calls itself attic") && said.contains("--name"), "{said}");

    // attic dies without leaving (its last heartbeat lives on) and starts again: it joins.
    attic.kill9();
    let _attic = WorkerProc::start(&dir.path().join("attic"), &nats, "attic");
    let (devices, _) = run_testcards(&http, &head, 1, 2, None).await;
    assert_eq!(devices.into_iter().collect::<Vec<_>>(), ["attic/cpu"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_restarted_after_kill_9_mid_stage_takes_its_stage_back_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    // JetStream would deliver the stage again only after 300 s, far past this test's waits.
    let slow = "ack_wait_s = 300";
    let head = start_head_cfg(&dir.path().join("head"), &nats, &format!("local_work = false\n{slow}"), &[]);
    let attic_dir = dir.path().join("attic");
    let mut attic = WorkerProc::start_cfg(&attic_dir, &nats, "attic", slow);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["attic"]).await;

    let id = submit_testcard(&http, &head, json!({"steps": 30, "step_ms": 100})).await;
    running_remote(&http, &head, &id).await;
    attic.kill9();
    let _attic = WorkerProc::start_cfg(&attic_dir, &nats, "attic", slow);
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    // Taken back by the box, not sent anew after its heartbeat expired.
    assert_eq!(j["attempts"], 1, "{j}");
    assert_eq!(stage_devices(&j), ["attic/cpu", "attic/cpu"], "{j}");
}

/// Waits until the file at `log` holds `what`.
async fn wait_logged(log: &std::path::Path, what: &str) {
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(log).unwrap_or_default().contains(what) {
        assert!(t0.elapsed() < Duration::from_secs(30), "never logged {what:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_restarted_just_as_the_head_gives_its_stage_away_does_not_run_the_old_attempt() {
    // The head counts a box gone a TTL after its last heartbeat and, a second later, takes the
    // stage back and places it again; a box restarted then takes the stage back too. The box
    // starts again at several moments around that second, so that in some rounds its new work
    // consumer delivers the old message just before the head deletes it.
    for delay_ms in [950, 1000, 1050] {
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = Nats::start(dir.path());
        let slow = "ack_wait_s = 300";
        let head_log = dir.path().join("head.log");
        let head =
            start_head_logged(&dir.path().join("head"), &nats, &format!("local_work = false\n{slow}"), &head_log);
        let attic_dir = dir.path().join("attic");
        let (before, after) = (dir.path().join("attic-before.log"), dir.path().join("attic-after.log"));
        let mut attic = WorkerProc::start_logged(&attic_dir, &nats, "attic", slow, &before);
        let http = reqwest::Client::new();
        wait_boxes(&http, &head, &["attic"]).await;

        let id = submit_testcard(&http, &head, json!({"steps": 40, "step_ms": 100})).await;
        running_remote(&http, &head, &id).await;
        attic.kill9();
        wait_logged(&head_log, "worker box attic left").await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _attic = WorkerProc::start_logged(&attic_dir, &nats, "attic", slow, &after);
        let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(artifact_counts(&j), [1, 1], "one artifact per stage: {j}");
        let said = std::fs::read_to_string(&after).unwrap_or_default();
        let runs: Vec<&str> =
            said.lines().filter(|l| l.contains("stage started") && l.contains("stage=card")).collect();
        // Only the attempt the head holds: the one taken back, or the one placed again.
        let current = format!("attempt={}", j["attempts"]);
        assert!(
            runs.len() == 1 && runs[0].contains(&current),
            "after {delay_ms} ms the restarted box ran the card stage {} time(s) for {current}: {runs:?}\n{said}",
            runs.len()
        );
        let how = if said.contains("skipping job") { "skipped the old attempt" } else { "ran one attempt" };
        eprintln!("restarted {delay_ms} ms after the head saw the box leave: {how}, {current}");
    }
}

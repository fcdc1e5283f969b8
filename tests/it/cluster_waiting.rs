//! A job no box can take says why instead of waiting silently: a head with
//! `local_work = false` and no worker says "no worker box is connected"; once a box
//! without the job's model joins it says which model no box has; it starts by itself as
//! soon as a box with the model joins. A model pull asked of such a head installs on the
//! head, not on a box. Real processes: nats-server, the head, two workers.

use crate::cluster_support;
use crate::common;

use std::time::Duration;

use cluster_support::{Nats, WorkerProc, cluster_status, stage_devices, start_head_with, wait_boxes};
use common::daemon::{is_final, submit_testcard, wait_job};
use common::sse::read_events;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_box_can_take_says_what_is_missing_and_starts_when_a_box_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let models = models.to_str().expect("utf-8");
    let nats = Nats::start(dir.path());
    let head = start_head_with(&dir.path().join("head"), &nats, false, &[("REELBOX_MODELS_DIR", models)]);
    let http = reqwest::Client::new();
    let r = http
        .post(head.at("/api/v1/images"))
        .json(&json!({"prompt": "a red circle", "model": "demo-shapes"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 202, "image submit answered {}", r.status());
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let waits_for = |what: &'static str| move |j: &Value| j["waiting"].as_str() == Some(what);

    // No worker at all.
    let j = wait_job(&http, &head, &id, Duration::from_secs(20), waits_for("no worker box is connected")).await;
    assert_eq!(j["state"], "queued", "{j}");
    assert_eq!(j["progress"]["message"], "waiting: no worker box is connected", "{j}");

    // A box without the model joins: the job names the model no box has.
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    wait_boxes(&http, &head, &["w1"]).await;
    let j = wait_job(&http, &head, &id, Duration::from_secs(20), waits_for("no box has model \"demo-shapes\"")).await;
    assert_eq!(j["state"], "queued", "w1 lacks the model, so it never takes it: {j}");

    // A box with the model joins: the job starts by itself and runs there.
    let _w2 = WorkerProc::start_with(&dir.path().join("w2"), &nats, "w2", &["--models-dir", models]);
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j), ["w2/cpu"], "{j}");
    assert!(j["waiting"].is_null(), "a finished job waits for nothing: {j}");

    // SSE followers saw each reason once, before the job started.
    let resp = http.get(head.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("sse");
    let events = read_events(resp, |_| false).await;
    let said: Vec<&str> =
        events.iter().filter_map(|(_, e)| e["message"].as_str().filter(|m| m.starts_with("waiting: "))).collect();
    assert_eq!(
        said,
        ["waiting: no worker box is connected", "waiting: no box has model \"demo-shapes\""],
        "{events:?}"
    );
    let started = events.iter().position(|(_, e)| e["state"] == "running").expect("a running event");
    let last_wait = events
        .iter()
        .rposition(|(_, e)| e["message"].as_str().is_some_and(|m| m.starts_with("waiting: ")))
        .expect("waiting events");
    assert!(last_wait < started, "the reasons came before the start: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_whose_disk_is_low_takes_no_stage_and_the_job_says_why_until_it_has_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let head = start_head_with(&dir.path().join("head"), &nats, false, &[]);
    let http = reqwest::Client::new();
    // A floor no disk meets: the box's disk is "low" whatever this machine has free.
    let low = WorkerProc::start_cfg(
        &dir.path().join("attic"),
        &nats,
        "attic",
        "\n[limits]\nmin_free_disk_bytes = 1000000000000000000",
    );
    wait_boxes(&http, &head, &["attic"]).await;
    let id = submit_testcard(&http, &head, json!({"steps": 1, "step_ms": 10})).await;
    let said = |j: &Value| j["waiting"].as_str().is_some_and(|w| w.starts_with("box attic takes no new stages"));
    let j = wait_job(&http, &head, &id, Duration::from_secs(20), said).await;
    assert_eq!(j["state"], "queued", "{j}");
    let waiting = j["waiting"].as_str().unwrap_or_default();
    assert!(
        waiting.contains("the disk holding the data dir (")
            && waiting.contains("limits.min_free_disk_bytes")
            && waiting.ends_with("it takes them again once space is freed there"),
        "{waiting}"
    );
    // `reelbox cluster status` and the API say it of the box.
    let status = cluster_status(dir.path(), &head, &[]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("attic: takes no new stages: the disk holding the data dir"), "{text}");
    let view: Value = http.get(head.at("/api/v1/cluster")).send().await.expect("cluster").json().await.expect("json");
    assert!(view["boxes"][0]["disk_low"].as_str().is_some_and(|w| w.contains("free")), "{view}");

    // Space freed (the same box back with a floor it meets): the job runs there by itself.
    drop(low);
    let _attic =
        WorkerProc::start_cfg(&dir.path().join("attic"), &nats, "attic", "\n[limits]\nmin_free_disk_bytes = 0");
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j), ["attic/cpu", "attic/cpu"], "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_pull_asked_of_a_head_that_leaves_work_to_its_boxes_installs_on_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("head-models");
    let nats = Nats::start(dir.path());
    let head = start_head_with(
        &dir.path().join("head"),
        &nats,
        false,
        &[("REELBOX_MODELS_DIR", models.to_str().expect("utf-8"))],
    );
    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    let r =
        http.post(head.at("/api/v1/models/pull")).json(&json!({"name": "demo-upscaler"})).send().await.expect("pull");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(stage_devices(&j).iter().all(|d| d == "cpu"), "ran on the head: {j}");
    assert!(models.join("demo-upscaler/model.onnx").is_file(), "the head has the model now: {j}");
    let listed: Value = http.get(head.at("/api/v1/models")).send().await.expect("models").json().await.expect("json");
    assert!(listed.to_string().contains("demo-upscaler"), "{listed}");
}

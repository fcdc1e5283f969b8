//! The render on worker boxes: a head that runs no stage itself and two workers with the
//! tiny fixture models, all real processes. The film comes home complete, every stage ran
//! once on a worker, no artifact is doubled, and nothing is left in the boxes' buckets.

use crate::cluster_support;
use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_support::{Nats, WorkerProc, assert_buckets_empty, stage_devices, start_head_with, wait_boxes};
use common::daemon::{get_json, is_final, wait_job};
use common::provision;
use common::render::{check_film, models_dir, render_request};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_render_runs_on_workers_and_its_film_comes_home_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let models = models.to_str().expect("utf-8");
    let runtime = provision::runtime();
    let runtime = runtime.to_str().expect("utf-8");
    let env = [("REELBOX_MODELS_DIR", models), ("REELBOX_ONNXRUNTIME", runtime)];
    let nats = Nats::start(dir.path());
    // The head has the models too (it validates the request against its catalog) but runs
    // nothing itself: local_work = false.
    let head = start_head_with(&dir.path().join("head"), &nats, false, &env);
    let worker_env = [("REELBOX_ONNXRUNTIME", runtime)];
    let args = ["--models-dir", models];
    let _w1 = WorkerProc::start_env(&dir.path().join("w1"), &nats, "w1", &args, &worker_env);
    let _w2 = WorkerProc::start_env(&dir.path().join("w2"), &nats, "w2", &args, &worker_env);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1", "w2"]).await;

    let body = render_request(&http, &head, true).await;
    let job: Value =
        http.post(head.at("/api/v1/jobs")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("no job id: {job}")).to_string();
    let done = wait_job(&http, &head, &id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 1, "every stage ran once: {done}");

    let stages = done["stages"].as_array().expect("stages");
    let names: Vec<&str> = stages.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["plan", "keyframes", "narration", "motion", "talking_head", "upscale", "mux"], "{done}");
    for s in stages {
        assert_eq!(s["state"], "done", "{s}");
        assert!(s["artifacts"].as_array().is_some_and(|a| !a.is_empty()), "stage without output: {s}");
    }
    let devices = stage_devices(&done);
    assert_eq!(devices.len(), stages.len(), "every stage names its device: {done}");
    assert!(devices.iter().all(|d| d == "w1/cpu" || d == "w2/cpu"), "a stage ran off the workers: {devices:?}");

    // One artifact per output: no id twice across stages, no name twice in the job.
    let ids: Vec<&str> =
        stages.iter().flat_map(|s| s["artifacts"].as_array().into_iter().flatten()).filter_map(Value::as_str).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "an artifact in two stages: {done}");
    let listed = get_json(&http, &head, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let listed = listed.as_array().expect("artifact list");
    let listed_names: BTreeSet<&str> = listed.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(listed.len(), ids.len(), "the job lists what its stages made: {listed:?}");
    assert_eq!(listed_names.len(), listed.len(), "a doubled artifact: {listed:?}");

    check_film(&http, &head, &id, dir.path()).await;
    // Every stage's inputs and outputs crossed in its box's own bucket and were deleted.
    let client = async_nats::connect(nats.url()).await.expect("connect to NATS");
    assert_buckets_empty(&client, &["w1", "w2"]).await;
}

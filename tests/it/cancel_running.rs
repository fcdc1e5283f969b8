//! A cancel stops a running picture inside its model run: ONNX Runtime is told to stop
//! mid-graph, so a big CPU picture ends `canceled` without finishing the UNet step it was
//! on, and the model it ran serves the next job, on the real daemon over HTTP.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common;
use common::api::call;
use common::daemon::{DaemonProc, is_final, wait_job};
use common::sse::read_events;

/// A picture whose every UNet step is one run of the demo UNet over an 80² latent grid (no
/// CFG batch at guidance 1): seconds on a CPU (3 s on 2 cores, 2.8 GB peak), where a
/// stopped run ends within one node.
const SIDE: u32 = 640;

/// Long enough for a run stopped mid-graph to end, however slow the machine, and for the
/// base code to end its step too (it fails on the events below, not on this wait).
const WAIT: Duration = Duration::from_secs(300);

fn picture(side: u32, steps: u32) -> Value {
    json!({"prompt": "a red circle", "model": "demo-shapes", "width": side, "height": side,
        "steps": steps, "guidance": 1.0, "seed": 7})
}

async fn submit(d: &DaemonProc, body: Value) -> String {
    let (status, v) = call(None, Method::POST, d.at("/api/v1/images"), Some(body)).await;
    assert_eq!(status.as_u16(), 202, "{v}");
    v["id"].as_str().expect("job id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_running_picture_inside_its_unet_step_and_the_model_serves_the_next_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let d = DaemonProc::start(
        &dir.path().join("data"),
        // Room for the big picture on the CPU, whatever share of this box's memory is the default.
        &[("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")), ("REELBOX_CPU_MEMORY_MIB", "4000")],
    );
    let http = reqwest::Client::new();
    let id = submit(&d, picture(SIDE, 3)).await;

    // Step 1 of 3 done: the UNet is on step 2 (the cancel check before it has passed).
    wait_job(&http, &d, &id, WAIT, |j| is_final(j) || j["progress"]["step"].as_u64() >= Some(1)).await;
    let (status, v) = call(None, Method::POST, d.at(&format!("/api/v1/jobs/{id}/cancel")), None).await;
    assert_eq!(status.as_u16(), 200, "{v}");
    let job = wait_job(&http, &d, &id, WAIT, is_final).await;
    assert_eq!(
        (job["state"].as_str(), job["error"].as_str()),
        (Some("canceled"), Some("canceled by its owner")),
        "canceled, not failed with ONNX Runtime's terminate text: {job}"
    );

    // Its events: step 2 never finished; the cancel ended the run it was in.
    let url = d.at(&format!("/api/v1/jobs/{id}/events?after=0"));
    let done = |got: &[(u64, Value)]| got.iter().any(|(_, e)| is_final(e));
    let events = read_events(http.get(url).send().await.expect("events"), done).await;
    let steps: Vec<u64> = events.iter().filter_map(|(_, e)| e["step"].as_u64()).collect();
    assert_eq!(steps.iter().max(), Some(&1), "the cancel waited for step 2 to end: {events:?}");

    // The model's cached session still runs: the next picture is made.
    let next = submit(&d, picture(64, 2)).await;
    let job = wait_job(&http, &d, &next, WAIT, is_final).await;
    assert_eq!(job["state"], "succeeded", "{job}");
}

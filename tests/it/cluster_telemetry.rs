//! Worker boxes' GPUs on the head: two workers with fake GPUs (`REELBOX_FAKE_GPUS` in the
//! worker process) send their readings in heartbeats, and the head shows them as
//! `NAME/cuda:N` in `/api/v1/system`, the telemetry stream and ComfyUI's `system_stats`.

use crate::cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{Nats, WorkerProc, start_head, wait_boxes};
use futures::StreamExt;
use reelbox::api::sse::SseParser;
use serde_json::Value;

/// `NAME/cuda:N` of every remote GPU in a telemetry sample, with its memory total.
fn remote_gpus(sample: &Value) -> Vec<(String, u64)> {
    sample["remote_gpus"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let host = g["host"].as_str().unwrap_or("?");
            (format!("{host}/cuda:{}", g["index"]), g["mem_total_mib"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_boxes_gpus_show_in_system_telemetry_and_comfy_stats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, true);
    let fake = "REELBOX_FAKE_GPUS";
    let _w1 = WorkerProc::start_env(&dir.path().join("w1"), &nats, "w1", &[], &[(fake, "8192")]);
    let _w2 = WorkerProc::start_env(&dir.path().join("w2"), &nats, "w2", &[], &[(fake, "16384,24576")]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1", "w2"]).await;
    let want = vec![("w1/cuda:0".to_string(), 8192), ("w2/cuda:0".into(), 16384), ("w2/cuda:1".into(), 24576)];

    // /api/v1/system: the devices and the newest sample (taken each second) list them.
    let t0 = Instant::now();
    let system = loop {
        let sys: Value = http.get(head.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
        if remote_gpus(&sys["telemetry"]["latest"]) == want {
            break sys;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "remote GPUs never reached the samples: {sys}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ids: Vec<&str> =
        system["devices"].as_array().expect("devices").iter().filter_map(|d| d["id"].as_str()).collect();
    for (id, _) in &want {
        assert!(ids.contains(&id.as_str()), "{id} in the device list {ids:?}");
    }
    let latest = &system["telemetry"]["latest"];
    assert!(latest["gpus"].as_array().is_some_and(Vec::is_empty), "the head itself has no GPU: {latest}");
    let w2 = &latest["remote_gpus"][1];
    assert!(w2["util_gpu"].is_u64() && w2["power_w"].is_number() && w2["temperature_c"].is_u64(), "readings: {w2}");

    // The telemetry stream: the next live sample carries them too.
    let resp = http.get(head.at("/api/v1/telemetry?history=false")).send().await.expect("stream");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut parser = SseParser::default();
    let sample = 'read: loop {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("a sample within 5 s");
        for msg in parser.push(&chunk.expect("stream open").expect("bytes")) {
            if msg.event == "sample" {
                break 'read serde_json::from_str::<Value>(&msg.data).expect("sample JSON");
            }
        }
    };
    assert_eq!(remote_gpus(&sample), want);

    // ComfyUI's system_stats: one device per remote GPU, named as everywhere else.
    let stats: Value = http.get(head.at("/system_stats")).send().await.expect("stats").json().await.expect("json");
    let devices: Vec<(String, u64)> = stats["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| (d["name"].as_str().unwrap_or("").to_string(), d["vram_total"].as_u64().unwrap_or(0)))
        .collect();
    for (id, mib) in &want {
        assert!(
            devices.iter().any(|(name, total)| name.starts_with(&format!("{id} ")) && *total == mib << 20),
            "{id} with {mib} MiB in system_stats: {devices:?}"
        );
    }
}

/// A worker whose card NVML sees but whose ONNX Runtime cannot register CUDA on it (the
/// real CPU build, asked for real: `probe`) offers only its CPU, so the head never sends
/// it a stage that would fail on `cuda:0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_cuda_provider_does_not_register_offers_only_its_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, true);
    let runtime = crate::common::provision::runtime();
    let env = [("REELBOX_FAKE_GPUS", "8192,probe"), ("ORT_DYLIB_PATH", runtime.to_str().expect("utf-8"))];
    let _w = WorkerProc::start_env(&dir.path().join("w"), &nats, "nocuda", &[], &env);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["nocuda"]).await;
    let sys: Value = http.get(head.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    let ids: Vec<&str> = sys["devices"].as_array().expect("devices").iter().filter_map(|d| d["id"].as_str()).collect();
    assert!(ids.contains(&"nocuda/cpu") && !ids.iter().any(|d| d.starts_with("nocuda/cuda")), "{ids:?}");
}

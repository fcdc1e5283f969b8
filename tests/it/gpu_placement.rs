//! GPU placement, energy accounting, telemetry and `/metrics` against the real daemon with
//! fake GPUs (`REELBOX_FAKE_GPUS`): the hardware is the only thing faked.

use crate::common;

use std::collections::HashSet;
use std::time::Duration;

use common::daemon::{DaemonProc, is_final, submit_testcard, wait_job};
use futures::StreamExt;
use serde_json::{Value, json};

const FAKE: (&str, &str) = ("REELBOX_FAKE_GPUS", "8192,24576");

fn devices_of(job: &Value) -> HashSet<String> {
    job["stages"].as_array().expect("stages").iter().filter_map(|s| s["device"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_gib_jobs_never_land_on_the_8_gib_gpu_and_report_energy_and_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[energy]\nprice_per_kwh = 0.5\ncurrency = \"EUR\"\n").expect("config");
    let d = DaemonProc::start(dir.path(), &[FAKE, ("REELBOX_CONFIG", config.to_str().expect("utf-8 path"))]);
    let http = reqwest::Client::new();

    let system: Value = http.get(d.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    let ids: Vec<&str> =
        system["devices"].as_array().expect("devices").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, ["cpu", "cuda:0", "cuda:1"], "{system}");
    assert_eq!(system["telemetry"]["source"], "fake");
    assert_eq!(system["telemetry"]["latest"]["gpus"].as_array().map(Vec::len), Some(2), "{system}");

    // Big jobs compete with small ones for three devices; the big ones may only use cuda:1.
    let mut big = Vec::new();
    let mut small = Vec::new();
    for _ in 0..4 {
        big.push(submit_testcard(&http, &d, json!({"steps": 3, "step_ms": 60, "vram_mib": 12288})).await);
        small.push(submit_testcard(&http, &d, json!({"steps": 3, "step_ms": 60, "vram_mib": 2048})).await);
    }
    let mut small_devices = HashSet::new();
    for id in &big {
        let job = wait_job(&http, &d, id, Duration::from_secs(60), is_final).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(devices_of(&job), HashSet::from(["cuda:1".to_string()]), "12 GiB job placed wrongly: {job}");
        assert_eq!(job["vram_mib"], 12288);
        let wh = job["energy_wh"].as_f64().expect("energy from the fake counter");
        // 100 W for at least the 180 ms of steps.
        assert!(wh >= 100.0 * 0.18 / 3600.0, "{job}");
        let cost = job["cost"].as_f64().expect("cost with a configured price");
        assert!((cost - wh / 1000.0 * 0.5).abs() < 1e-12, "{job}");
        for stage in job["stages"].as_array().expect("stages") {
            assert!(stage["energy_wh"].as_f64().is_some(), "every GPU stage has energy: {job}");
        }
    }
    for id in &small {
        let job = wait_job(&http, &d, id, Duration::from_secs(60), is_final).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        small_devices.extend(devices_of(&job));
    }
    assert!(!small_devices.contains("cpu"), "jobs needing GPU memory never run on the CPU of a GPU box");

    // A job no GPU here can ever hold is refused at the door instead of waiting forever.
    let resp = http
        .post(d.at("/api/v1/jobs"))
        .json(&json!({"kind": "testcard", "params": {"vram_mib": 30000}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("error json");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("24576 MiB"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_models_jobs_stay_on_the_gpu_that_holds_it_even_when_it_is_busier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[workers]\ngpu_concurrency = 2\n").expect("config");
    // GPU 0: 24 GiB (21 free, fakes hold an eighth); GPU 1: 16 GiB (14 free).
    let env = [("REELBOX_FAKE_GPUS", "24576,16384"), ("REELBOX_CONFIG", config.to_str().expect("utf-8 path"))];
    let d = DaemonProc::start(dir.path(), &env);
    let http = reqwest::Client::new();
    // Only GPU 0 can hold this first sd-turbo job, so the model is now warm there.
    let first =
        submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 10, "vram_mib": 20000, "model": "sd-turbo"})).await;
    let first = wait_job(&http, &d, &first, Duration::from_secs(30), is_final).await;
    assert_eq!(devices_of(&first), HashSet::from(["cuda:0".to_string()]), "{first}");
    // A long job that only fits on GPU 0 makes it the busier card.
    let blocker = submit_testcard(&http, &d, json!({"steps": 600, "step_ms": 100, "vram_mib": 17000})).await;
    wait_job(&http, &d, &blocker, Duration::from_secs(30), |j| j["state"] == "running").await;
    // Least-loaded alone would pick GPU 1; affinity keeps sd-turbo on GPU 0 (4.5 GiB left).
    let again =
        submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 10, "vram_mib": 2048, "model": "sd-turbo"})).await;
    let other =
        submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 10, "vram_mib": 2048, "model": "piper"})).await;
    let again = wait_job(&http, &d, &again, Duration::from_secs(30), is_final).await;
    let other = wait_job(&http, &d, &other, Duration::from_secs(30), is_final).await;
    assert_eq!(devices_of(&again), HashSet::from(["cuda:0".to_string()]), "affinity ignored: {again}");
    assert_eq!(devices_of(&other), HashSet::from(["cuda:1".to_string()]), "not the least loaded: {other}");
    let resp = http.post(d.at(&format!("/api/v1/jobs/{blocker}/cancel"))).send().await.expect("cancel");
    assert_eq!(resp.status(), 200);
}

/// A job that waits for GPU memory another job holds, or for a paused queue, says so in its
/// view (and the memory wait once on its event stream), and starts by itself when it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_short_of_gpu_memory_or_behind_a_paused_queue_says_why_it_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[workers]\ngpu_concurrency = 2\n").expect("config");
    // One 8 GiB GPU, 7 GiB free (fakes hold an eighth), with two slots.
    let env = [("REELBOX_FAKE_GPUS", "8192"), ("REELBOX_CONFIG", config.to_str().expect("utf-8 path"))];
    let d = DaemonProc::start(dir.path(), &env);
    let http = reqwest::Client::new();
    let holder = submit_testcard(&http, &d, json!({"steps": 30, "step_ms": 100, "vram_mib": 6144})).await;
    wait_job(&http, &d, &holder, Duration::from_secs(30), |j| j["state"] == "running").await;
    let short = submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 10, "vram_mib": 4096})).await;
    let memory = "no GPU has the 4096 MiB it needs free; it starts when running jobs release theirs";
    let j = wait_job(&http, &d, &short, Duration::from_secs(10), |j| j["waiting"].is_string()).await;
    assert_eq!(j["state"], "queued", "{j}");
    assert_eq!(j["waiting"], memory, "{j}");
    assert_eq!(j["progress"]["message"], format!("waiting: {memory}"), "{j}");
    let j = wait_job(&http, &d, &short, Duration::from_secs(30), is_final).await;
    assert_eq!(j["state"], "succeeded", "it starts once the holder releases its memory: {j}");
    assert!(j["waiting"].is_null(), "{j}");
    let resp = http.get(d.at(&format!("/api/v1/jobs/{short}/events"))).send().await.expect("sse");
    let events = common::sse::read_events(resp, |_| false).await;
    let waits: Vec<&str> =
        events.iter().filter_map(|(_, e)| e["message"].as_str().filter(|m| m.starts_with("waiting: "))).collect();
    assert_eq!(waits, [format!("waiting: {memory}")], "said once however often placement looked: {events:?}");

    let resp = http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    assert_eq!(resp.status(), 200);
    let paused = submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 10})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let j = common::daemon::get_json(&http, &d, &format!("/api/v1/jobs/{paused}")).await;
    assert_eq!(j["state"], "queued", "{j}");
    assert!(j["waiting"].as_str().is_some_and(|w| w.contains("queue is paused")), "{j}");
    // `reelbox jobs show` says it too, not only the JSON and the dashboard.
    let home = dir.path().join("cli");
    let shown = common::tools::run_ok(
        common::tools::reelbox_cli(&home, &home.join("models")).args(["jobs", "show", &paused, "--url", &d.url]),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.lines().any(|l| l.starts_with("waiting  the queue is paused")), "{shown}");
    let resp = http.post(d.at("/api/v1/queue/resume")).send().await.expect("resume");
    assert_eq!(resp.status(), 200);
    let j = wait_job(&http, &d, &paused, Duration::from_secs(30), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
}

/// Jobs loading a CUDA-only model (a manifest with `cuda_only = true`, as sd-turbo-cuda's)
/// queue for the GPUs and never take the idle CPU slot, however many wait at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_only_models_wait_for_a_gpu_and_never_run_on_the_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("fused")).expect("model dir");
    std::fs::write(models.join("fused/model.onnx"), b"x").expect("model file");
    let sha = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"; // sha256 of "x"
    let manifest = format!(
        "name = \"fused\"\nkind = \"diffusion\"\ncuda_only = true\n\n[[files]]\npath = \"model.onnx\"\nsize = 1\nsha256 = \"{sha}\"\n"
    );
    std::fs::write(models.join("fused.toml"), manifest).expect("manifest");
    let d =
        DaemonProc::start(&dir.path().join("data"), &[FAKE, ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8"))]);
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(submit_testcard(&http, &d, json!({"steps": 2, "step_ms": 40, "model": "fused"})).await);
    }
    let plain = submit_testcard(&http, &d, json!({"steps": 2, "step_ms": 40})).await;
    let mut used = HashSet::new();
    for id in &ids {
        let job = wait_job(&http, &d, id, Duration::from_secs(30), is_final).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        used.extend(devices_of(&job));
    }
    assert!(!used.is_empty() && used.iter().all(|d| d.starts_with("cuda:")), "a CUDA-only model ran on {used:?}");
    let plain = wait_job(&http, &d, &plain, Duration::from_secs(30), is_final).await;
    assert_eq!(plain["state"], "succeeded", "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_expose_fake_gpu_gauges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[FAKE]);
    let resp = reqwest::get(d.at("/metrics")).await.expect("metrics");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.expect("text");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let find = |name: &str, gpu: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("gpu") == Some(gpu))
            .unwrap_or_else(|| panic!("{name}{{gpu={gpu}}} missing in:\n{text}"))
    };
    let gauge = |s: &prometheus_parse::Sample| match s.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{} is not a gauge: {other:?}", s.metric),
    };
    assert_eq!(gauge(find("reelbox_gpu_memory_total_bytes", "0")), 8192.0 * 1048576.0);
    assert_eq!(gauge(find("reelbox_gpu_memory_total_bytes", "1")), 24576.0 * 1048576.0);
    assert_eq!(find("reelbox_gpu_memory_total_bytes", "1").labels.get("name"), Some("Fake GPU 24 GiB"));
    for name in ["reelbox_gpu_utilization_percent", "reelbox_gpu_power_watts", "reelbox_gpu_temperature_celsius"] {
        let v = gauge(find(name, "1"));
        assert!(v.is_finite() && v >= 0.0, "{name} = {v}");
    }
    assert!(matches!(find("reelbox_gpu_energy_joules_total", "0").value, prometheus_parse::Value::Counter(_)));
    // Fake GPU 1 is passively cooled: no fan sample rather than a made-up zero.
    assert!(!scrape.samples.iter().any(|s| s.metric == "reelbox_gpu_fan_percent" && s.labels.get("gpu") == Some("1")));
    assert!(scrape.samples.iter().any(|s| s.metric == "reelbox_host_memory_total_bytes"));
    // Every sample belongs to a family with a declared type.
    for s in &scrape.samples {
        let family = s.metric.trim_end_matches("_total");
        assert!(
            text.contains(&format!("# TYPE {} ", s.metric)) || text.contains(&format!("# TYPE {family} ")),
            "{} has no TYPE line",
            s.metric
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_stream_sends_history_then_a_sample_each_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[FAKE]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let resp = reqwest::get(d.at("/api/v1/telemetry")).await.expect("stream");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let t0 = std::time::Instant::now();
    let mut events: Vec<(String, Value)> = Vec::new();
    while events.len() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next()).await.expect("an event within 5 s");
        text.push_str(&String::from_utf8_lossy(&chunk.expect("stream open").expect("bytes")));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let name = block.lines().find_map(|l| l.strip_prefix("event:")).map(|s| s.trim().to_string());
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(|s| s.trim().to_string());
            if let (Some(name), Some(data)) = (name, data) {
                events.push((name, serde_json::from_str(&data).expect("event JSON")));
            }
        }
    }
    assert_eq!(events[0].0, "history");
    let history = events[0].1["samples"].as_array().expect("samples");
    assert!(history.len() >= 2, "at least the start sample and one more: {}", history.len());
    assert_eq!(events[1].0, "sample");
    assert_eq!(events[2].0, "sample");
    let (a, b) = (events[1].1["at_ms"].as_i64().expect("at"), events[2].1["at_ms"].as_i64().expect("at"));
    assert!((800..=2100).contains(&(b - a)), "samples {a} and {b} should be about a second apart");
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert_eq!(events[2].1["gpus"][0]["mem_total_mib"], 8192);
}

/// A card NVML sees with a runtime whose CUDA provider does not register (here the real
/// CPU build of ONNX Runtime, asked for real: `probe` in the fake list): the daemon offers
/// no GPU to placement, says why in `/api/v1/system`, and a picture job runs on the CPU
/// instead of failing on `cuda:0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_whose_cuda_provider_does_not_register_leave_every_job_to_the_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let runtime = common::provision::runtime();
    let d = DaemonProc::start(
        &dir.path().join("data"),
        &[
            ("REELBOX_FAKE_GPUS", "8192,probe"),
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
            ("ORT_DYLIB_PATH", runtime.to_str().expect("utf-8")),
        ],
    );
    let http = reqwest::Client::new();
    let system: Value = http.get(d.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    let ids: Vec<&str> =
        system["devices"].as_array().expect("devices").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, ["cpu"], "{system}");
    let why = system["gpus_unusable"].as_str().unwrap_or_else(|| panic!("no reason given: {system}"));
    assert!(why.contains("1 GPU(s) found, but every job runs on the CPU") && why.contains("CUDA"), "{why}");
    assert_eq!(system["telemetry"]["latest"]["gpus"].as_array().map(Vec::len), Some(1), "NVML still reports the card");

    let body = json!({"prompt": "a red circle", "model": "demo-shapes", "steps": 2, "seed": 1});
    let job: Value =
        http.post(d.at("/api/v1/images")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("no job id: {job}")).to_string();
    let j = wait_job(&http, &d, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(devices_of(&j), HashSet::from(["cpu".to_string()]), "{j}");
}

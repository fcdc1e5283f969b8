//! Pictures made on the CPU are held to the memory the box lets jobs use
//! (`limits.cpu_memory_mib`): one that cannot fit is refused when it is sent, on every route
//! that makes pictures, naming its size field and the largest size that fits; a job's
//! images are made one at a time, so its peak memory is one picture's whatever its `n`.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common;
use common::api::call;
use common::daemon::{DaemonProc, is_final, wait_job};

/// Memory the daemon may use for CPU jobs in these tests, MiB: a 384² demo picture
/// (~0.5 GiB measured) fits, a 512² one (~1.3 GiB) does not.
const BUDGET_MIB: &str = "1000";

fn start(dir: &std::path::Path) -> DaemonProc {
    let models = common::models_with_demo_shapes(dir);
    // A voice, so a render's request gets as far as its keyframes.
    let joe = common::provision::joe_voice();
    std::os::unix::fs::symlink(joe.parent().expect("voice dir"), models.join(common::provision::JOE))
        .expect("link voice");
    DaemonProc::start(
        &dir.join("data"),
        &[("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")), ("REELBOX_CPU_MEMORY_MIB", BUDGET_MIB)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_too_big_for_the_cpu_memory_is_refused_on_every_route_naming_its_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let routes = [
        ("/api/v1/images", json!({"prompt": "x", "model": "demo-shapes", "width": 512, "height": 512}), "width"),
        (
            "/api/v1/images",
            json!({"prompt": "x", "model": "demo-shapes", "width": 384, "height": 768, "n": 2}),
            "height",
        ),
        (
            "/api/v1/jobs",
            json!({"kind": "render", "params": {"script": "A red circle.", "model": "demo-shapes",
                "keyframe_width": 512, "keyframe_height": 512}}),
            "keyframe_width",
        ),
    ];
    for (path, body, field) in routes {
        let (status, answer) = call(None, Method::POST, d.at(path), Some(body.clone())).await;
        assert_eq!((status.as_u16(), answer["error"]["field"].as_str()), (400, Some(field)), "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("limits.cpu_memory_mib") && message.contains("that fits is"),
            "says the limit and what fits: {message}"
        );
    }
    // The OpenAI route names its own field, `size`, through the same check.
    let (status, answer) = call(
        None,
        Method::POST,
        d.at("/v1/images/generations"),
        Some(json!({"prompt": "x", "model": "demo-shapes", "size": "512x512"})),
    )
    .await;
    assert_eq!(status.as_u16(), 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or_default().contains("limits.cpu_memory_mib"), "{answer}");
    // The daemon is still up and nothing was queued.
    let (status, jobs) = call(None, Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_two_pictures_that_fit_makes_both_within_the_memory_of_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let body =
        json!({"prompt": "a red circle", "model": "demo-shapes", "width": 384, "height": 384, "n": 2, "steps": 2});
    let (status, job) = call(None, Method::POST, d.at("/api/v1/images"), Some(body)).await;
    assert_eq!(status.as_u16(), 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let http = reqwest::Client::new();
    let job = wait_job(&http, &d, id, Duration::from_secs(600), is_final).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    // Two steps make no previews: the stage's artifacts are the two images.
    assert_eq!(job["stages"][0]["artifacts"].as_array().map(Vec::len), Some(2), "{job}");
    // Both halves of the guidance pair of both images in one UNet run would take ~1.5 GiB
    // here; one at a time, the daemon stays within what it lets jobs use.
    let peak_mib = common::proc_status_kib(d.pid(), "VmHWM") / 1024;
    assert!(peak_mib < BUDGET_MIB.parse().expect("number"), "peak {peak_mib} MiB");
}

/// `reelbox image --local` holds its picture to the same memory as the daemon: one that
/// cannot fit is refused before the model loads, in the same words, and nothing is written
/// (it was made, or the kernel's OOM killer ended the command half-way).
#[test]
fn image_local_refuses_a_picture_too_big_for_the_cpu_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let out_png = dir.path().join("big.png");
    let out = common::tools::reelbox_cli(dir.path(), &models)
        .env("REELBOX_CPU_MEMORY_MIB", BUDGET_MIB)
        .args(["image", "a red circle", "--local", "--model", "demo-shapes"])
        .args(["--width", "512", "--height", "512", "--steps", "1", "-o"])
        .arg(&out_png)
        .output()
        .expect("reelbox image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("width: a 512×512 picture needs about")
            && stderr.contains(&format!("lets jobs use {BUDGET_MIB} MiB (limits.cpu_memory_mib)"))
            && stderr.contains("the largest square that fits is"),
        "{stderr}"
    );
    assert!(!out_png.exists());
}

/// A head with worker boxes takes a picture without checking it (it does not know a box's
/// memory); the box that would make it on its CPU holds it to its own
/// `limits.cpu_memory_mib`: the job fails at once in the daemon's words, not retried, and
/// the box stays up (the kernel's OOM killer ended it, or the box made it past its limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_box_refuses_a_picture_too_big_for_its_cpu_memory() {
    use crate::cluster_support::{Nats, WorkerProc, start_head, wait_boxes};
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::models_with_demo_shapes(dir.path());
    let nats = Nats::start(dir.path());
    let head = start_head(&dir.path().join("head"), &nats, false);
    let args = ["--models-dir", models.to_str().expect("utf-8")];
    let w1 = dir.path().join("w1");
    let _w1 = WorkerProc::start_env(&w1, &nats, "w1", &args, &[("REELBOX_CPU_MEMORY_MIB", BUDGET_MIB)]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;
    let body = json!({"prompt": "a red circle", "model": "demo-shapes", "width": 512, "height": 512, "steps": 1});
    let (status, job) = call(None, Method::POST, head.at("/api/v1/images"), Some(body)).await;
    assert_eq!(status.as_u16(), 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let job = wait_job(&http, &head, id, Duration::from_secs(300), is_final).await;
    assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("failed"), Some(1)), "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("on w1: width: a 512×512 picture needs about")
            && error.contains(&format!("lets jobs use {BUDGET_MIB} MiB (limits.cpu_memory_mib)")),
        "{job}"
    );
    // Still there for the next job.
    wait_boxes(&http, &head, &["w1"]).await;
}

/// ONNX Runtime's CPU arena keeps the most memory a session's run took for as long as the
/// session stays loaded. After pictures whose working memory outweighs their model (768² on
/// the tiny SD model, ~0.9 GiB), the daemon gives it back once the box sits idle, where it
/// held it for the keep-alive (5 minutes), or till the next job; a job queued behind
/// another still finds the sessions loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_pictures_memory_goes_back_to_the_system_once_the_box_is_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(common::fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    let d = DaemonProc::start(&dir.path().join("data"), &[("REELBOX_MODELS_DIR", models.to_str().expect("utf-8"))]);
    let http = reqwest::Client::new();
    let picture = |side: u32| {
        let body = json!({"prompt": "a red circle", "model": "tiny-sd", "width": side, "height": side, "steps": 2});
        let url = d.at("/api/v1/images");
        async move {
            let (status, job) = call(None, Method::POST, url, Some(body)).await;
            assert_eq!(status.as_u16(), 202, "{job}");
            job["id"].as_str().expect("id").to_string()
        }
    };
    let made = |id: String| {
        let (http, d) = (&http, &d);
        async move {
            let job = wait_job(http, d, &id, Duration::from_secs(300), is_final).await;
            assert_eq!(job["state"], "succeeded", "{job}");
        }
    };
    let rss_mib = || common::proc_status_kib(d.pid(), "VmRSS") / 1024;

    // A small picture loads the model's sessions: what the daemon holds with them loaded.
    made(picture(64).await).await;
    let loaded = rss_mib();
    let (first, second) = (picture(768).await, picture(768).await);
    made(first).await;
    made(second).await;
    let held = rss_mib();
    assert!(held > loaded + 400, "the pictures' memory: {loaded} MiB with the sessions loaded, {held} after");
    let text = http.get(d.at("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let unet_loads = text
        .lines()
        .find(|l| l.starts_with("reelbox_model_loads_total{") && l.contains("model=\"tiny-sd/unet/model.onnx\""));
    assert_eq!(unet_loads.and_then(|l| l.rsplit(' ').next()), Some("1"), "the second picture reused them: {text}");

    // Idle: the sessions go after `engine::RELEASE_IDLE` (10 s) and their memory with them.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while rss_mib() > loaded + 150 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let idle = rss_mib();
    assert!(idle <= loaded + 150, "{loaded} MiB with the sessions loaded, {held} after the pictures, {idle} idle");
}

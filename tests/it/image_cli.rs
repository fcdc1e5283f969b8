//! `reelbox image` as a user types it, against a real daemon: a refusal of a flag typed is
//! said with that flag (`--refine-steps: …`, not the API's `refine.steps: …`), and
//! `--sample-as` samples by A1111's arithmetic as the native `sample_as` does, on the daemon
//! and in this process alike. Before, refusals named the API's fields and the flag did not
//! exist.

use crate::common;

use std::path::Path;

use common::compat::{TINY_SD, start_daemon};
use common::tools::{reelbox_cli, run_ok};
use serde_json::json;

use crate::comfy_compat::http;
use crate::comfy_upscale::get;
use crate::hires_checkpoint::{TINY_SD_2, pixels, post, two_models};

/// `reelbox image` of 64² on tiny-sd with Euler, seed 7, writing `out`.
fn image(home: &Path, models: &Path, out: &Path) -> std::process::Command {
    let mut cmd = reelbox_cli(home, models);
    cmd.args(["image", "a red door", "--model", TINY_SD, "--scheduler", "euler", "--seed", "7"])
        .args(["--width", "64", "--height", "64", "-o"])
        .arg(out);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_flag_is_named_as_typed() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = two_models();
    let d = start_daemon(&home.path().join("data"), models.path());
    let out = home.path().join("x.png");
    for (more, said) in [
        (&["--steps", "4", "--refine-switch-at-step", "2", "--refine-steps", "100000"][..], "--refine-steps: "),
        (&["--steps", "4", "--refine-switch-at-step", "9"][..], "--refine-switch-at-step: "),
        (&["--steps", "4", "--refine-switch-at-step", "2", "--refine-model", "tiny-sdxl"][..], "--refine-model: "),
        (&["--steps", "100000"][..], "--steps: "),
    ] {
        let run = image(home.path(), models.path(), &out).args(more).args(["--url", &d.at("")]).output();
        let run = run.expect("runs");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(said), "{more:?}: {stderr}");
        // The API's own field names are gone.
        assert!(!stderr.contains(": refine.") && !stderr.contains(": steps:"), "{more:?}: {stderr}");
    }
    let jobs = get(&http(), &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "refused, nothing queued: {jobs}");
    // A second-pass model of the first's latent space (tiny-sdxl's is another) runs.
    let split = ["--steps", "4", "--refine-switch-at-step", "2", "--refine-model", TINY_SD_2, "--url", &d.at("")];
    run_ok(image(home.path(), models.path(), &out).args(split));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_as_a1111_samples_as_the_native_jobs_sample_as() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = two_models();
    let d = start_daemon(&home.path().join("data"), models.path());
    let at = |name: &str| home.path().join(name);
    // A1111's arithmetic is that of the sampling over a schedule's σs.
    let url = ["--steps", "4", "--schedule", "karras", "--url", &d.at("")];
    run_ok(image(home.path(), models.path(), &at("comfy.png")).args(url));
    run_ok(image(home.path(), models.path(), &at("a1111.png")).args(url).args(["--sample-as", "a1111"]));
    let read = |name: &str| pixels(&std::fs::read(at(name)).expect("a picture"));
    assert!(read("a1111.png") != read("comfy.png"), "--sample-as a1111 changed nothing");

    let body = json!({"prompt": "a red door", "model": TINY_SD, "scheduler": "euler", "schedule": "karras", "steps": 4,
        "seed": 7, "width": 64, "height": 64, "sample_as": "a1111", "preview_every": 0});
    let (status, job) = post(&http(), &d, "/api/v1/images", &body).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let c = http();
    let done =
        common::daemon::wait_job(&c, &d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let native = pixels(&common::render::artifact(&c, &d, id, "image.png").await);
    assert!(native == read("a1111.png"), "the CLI's a1111 picture is not the native job's");
    let jobs = get(&c, &d, "/api/v1/jobs").await;
    let sent: Vec<_> =
        jobs["jobs"].as_array().expect("jobs").iter().map(|j| j["params"]["sample_as"].clone()).collect();
    // ComfyUI's, the default, is left unsaid.
    assert_eq!(sent.iter().filter(|s| **s == json!("a1111")).count(), 2, "{sent:?}");
    assert_eq!(sent.len(), 3, "{sent:?}");

    // In this process too.
    let local = ["--steps", "4", "--schedule", "karras", "--local", "--sample-as", "a1111"];
    run_ok(image(home.path(), models.path(), &at("local.png")).args(local));
    assert!(read("local.png") == native, "--local --sample-as a1111 is not the daemon's picture");
    let wrong = image(home.path(), models.path(), &at("x.png")).args(["--sample-as", "forge"]).output();
    assert!(!wrong.expect("runs").status.success(), "--sample-as takes comfyui or a1111");
}

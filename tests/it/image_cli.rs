//! `reelbox image` as a user types it, against a real daemon: a refusal of a flag typed is
//! said with that flag (`--refine-steps: …`, not the API's `refine.steps: …`). Before,
//! refusals named the API's fields.

use crate::common;

use std::path::Path;

use common::compat::{TINY_SD, start_daemon};
use common::tools::{reelbox_cli, run_ok};

use crate::comfy_compat::http;
use crate::comfy_upscale::get;
use crate::hires_checkpoint::{TINY_SD_2, two_models};

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

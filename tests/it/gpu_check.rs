//! `packaging/gpu-check.sh --device cpu`: the whole GPU check as a dry run on a box
//! without a GPU, so the script a GPU owner (or a session with a lent GPU) runs is known
//! to work before it meets a card: every job of the comparison runs on both daemons with
//! identical outputs, a CUDA-only model is refused without CUDA, a worker box joins over
//! a real nats-server and takes a job, and the report ends saying every step ran.

use std::process::Command;

use crate::common;

use common::provision::{joe_wheel_dir, runtime};

#[test]
fn the_gpu_check_runs_end_to_end_as_a_cpu_dry_run() {
    let rt = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(runtime(), rt.path().join("libonnxruntime.so")).expect("link the runtime");
    let script = common::source_tree().join("packaging/gpu-check.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--bin", env!("CARGO_BIN_EXE_reelbox"), "--device", "cpu", "--runs", "1", "--runtime"])
        .arg(rt.path())
        .arg("--wheels")
        .arg(joe_wheel_dir())
        .env_remove("REELBOX_URL")
        .output()
        .expect("run gpu-check.sh");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.contains("gpu-check: every step ran"), "{report}");
    let row = |label: &str| {
        report
            .lines()
            // The table's row comes after any error line naming the same job.
            .rfind(|l| l.starts_with(label) && l[label.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no row for {label}:\n{report}"))
            .to_string()
    };
    for label in [
        "image demo-shapes",
        "speech joe",
        "upscale demo-upscaler",
        "render demo",
        "image tiny-sd fp32",
        "image tiny-sd f16 unet",
        "image tiny-sd int32 ids",
        "upscale nhwc fixed 32",
    ] {
        let r = row(label);
        // Both daemons ran it on the CPU: placed there, and the outputs agree exactly.
        assert!(r.contains(" cpu ") && !r.contains("did not run"), "{r}");
        let diffs = r.split("  ").last().unwrap_or_default();
        assert!(diffs.split(", ").all(|d| d.ends_with(" 0") || d.ends_with(" 0.00000")), "{label}: {r}");
    }
    assert!(row("image tiny-sd cuda-only").contains("did not run on both devices"), "{report}");
    assert!(report.contains("tiny-sd-cuda-only runs only with CUDA"), "{report}");
    assert!(report.contains("setup --models real picks (no GPU): en_US-joe-medium, sd-turbo,"), "{report}");
    assert!(report.contains(r#"placed: "device": "gpucheck/cpu""#), "a worker box took the job:\n{report}");
    assert!(report.contains("== systemd unit: DeviceAllow"), "{report}");
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod compat;
pub mod daemon;
pub mod palette;
pub mod provision;
pub mod sse;

use std::path::{Path, PathBuf};

/// A process's memory figure from `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A models dir under `root` with the bundled demo text-to-image model installed as
/// `demo-shapes`, as `reelbox setup` installs it.
pub fn models_with_demo_shapes(root: &Path) -> PathBuf {
    let models = root.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo/shapes"),
        models.join("demo-shapes"),
    )
    .expect("link demo-shapes");
    models
}

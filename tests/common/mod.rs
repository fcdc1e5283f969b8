//! Helpers shared by the integration tests: `tests/it/` (through `#[path]`) and the two
//! binaries that stand alone (`runtime_missing.rs`, `pull_pip.rs`) compile it in. Each of
//! those uses only part of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod api;
pub mod byo;
pub mod compat;
pub mod daemon;
pub mod hub;
pub mod media;
pub mod palette;
pub mod provision;
pub mod pyenv;
pub mod render;
pub mod sink;
pub mod sse;
pub mod tools;

use std::path::{Path, PathBuf};

/// The source tree's root (`CARGO_MANIFEST_DIR`).
pub fn source_tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies a directory tree (test models into a models dir).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    source_tree().join("tests/fixtures").join(rel)
}

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
    std::os::unix::fs::symlink(source_tree().join("models/demo/shapes"), models.join("demo-shapes"))
        .expect("link demo-shapes");
    models
}

//! Tools the test command (`.ci/test`) installs for the tests: the model converter's
//! Python environment, and running the `reelbox` binary as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The model converter's Python environment that `.ci/test` makes and names in
/// `REELBOX_CONVERT_PYENV`. Without it the tests fail and say how to make it: a test that
/// quietly skips in CI could never fail.
pub fn convert_pyenv() -> PathBuf {
    let dir = std::env::var_os("REELBOX_CONVERT_PYENV").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "REELBOX_CONVERT_PYENV is not set: run the tests through .ci/test, which makes the converter's \
             environment (reelbox models import --prepare-env) and sets it"
        )
    });
    assert!(
        dir.join("bin/python").exists(),
        "REELBOX_CONVERT_PYENV={} has no bin/python: make it with `REELBOX_CONVERT_PYENV={0} reelbox models import --prepare-env`",
        dir.display()
    );
    dir
}

/// Runs `cmd`, failing the test with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run reelbox");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

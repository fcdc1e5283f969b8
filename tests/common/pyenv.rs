//! Python packages the tests drive the daemon with (the `openai` SDK, Schemathesis), pinned
//! and installed once under `target/` (outside the checkout), each set in a directory of its
//! own name so that raising a pin makes a fresh one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `python` (with `pythonpath`) runs `code` successfully.
pub fn runs(python: &Path, pythonpath: Option<&Path>, code: &str) -> bool {
    let mut cmd = Command::new(python);
    cmd.args(["-c", code]);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    cmd.output().is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command, what: &str) -> bool {
    match cmd.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("{what} failed: {}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("{what} failed: {e}");
            false
        }
    }
}

/// A Python interpreter (and `PYTHONPATH`) with `packages` installed, as `works` checks
/// them: one installed before under `target/NAME`, else made there now — a venv
/// (`python3 -m venv`), or `pip install --target` where the venv module is missing.
pub fn installed(
    name: &str,
    packages: &[&str],
    works: impl Fn(&Path, Option<&Path>) -> bool,
) -> (PathBuf, Option<PathBuf>) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("..").join(name);
    let venv_python = base.join("venv/bin/python");
    if works(&venv_python, None) {
        return (venv_python, None);
    }
    let lib = base.join("pylib");
    if works(Path::new("python3"), Some(&lib)) {
        return (PathBuf::from("python3"), Some(lib));
    }
    let list = packages.join(" ");
    if run(Command::new("python3").args(["-m", "venv"]).arg(base.join("venv")), "python3 -m venv")
        && run(
            Command::new(&venv_python).args(["-m", "pip", "install", "--quiet"]).args(packages),
            &format!("pip install {list} (venv)"),
        )
        && works(&venv_python, None)
    {
        return (venv_python, None);
    }
    let done = run(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
            .arg(&lib)
            .args(packages),
        &format!("pip install --target {list}"),
    );
    assert!(
        done && works(Path::new("python3"), Some(&lib)),
        "cannot install the Python packages {list} under {}; fix: network to the Python package index \
         and python3 with pip (apt install python3-pip python3-venv)",
        base.display()
    );
    (PathBuf::from("python3"), Some(lib))
}

//! Tools the test command (`.ci/test`) installs for the tests: the model converter's
//! Python environment, and running the `reelbox` binary as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::daemon::DaemonProc;

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

/// What a running command writes to a pipe (its standard error), line by line as it comes:
/// a thread forwards each line, so a test can act on one while the command runs on.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts reading `pipe` (a child's `stderr.take()`).
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Reads until a line holding `needle` (true) or the end of the pipe (false).
    pub fn until(&mut self, needle: &str) -> bool {
        while let Ok(line) = self.rx.recv() {
            let found = line.contains(needle);
            self.seen.push(line);
            if found {
                return true;
            }
        }
        false
    }

    /// Reads to the end of the pipe; everything read, one line each.
    pub fn rest(&mut self) -> String {
        self.seen.extend(self.rx.iter());
        self.seen.join("\n")
    }
}

/// Installs the bare `model.onnx` folder `from` as model `name` of `kind`, as a user
/// bringing their own does (`reelbox models import --kind`: the file does not say whether it
/// upscales, lip-syncs or finds faces), so the box lists it and uses it by default.
pub fn import_bare(home: &Path, models: &Path, name: &str, kind: &str, from: &Path) {
    run_ok(reelbox_cli(home, models).args(["models", "import", "--name", name, "--kind", kind]).arg(from));
}

/// The CLI with a clean environment: no user config or daemon settings, the provisioned
/// runtime, `models` as the models dir, data under `home`.
pub fn reelbox_cli(home: &Path, models: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
    cmd.env_remove("REELBOX_CONFIG")
        .env_remove("REELBOX_URL")
        .env_remove("REELBOX_KEY")
        .env("XDG_CONFIG_HOME", home.join("no-config"))
        .env("REELBOX_DATA_DIR", home.join("cli-data"))
        .env("REELBOX_MODELS_DIR", models)
        .env("REELBOX_ONNXRUNTIME", super::provision::runtime())
        .env("REELBOX_LOG", "warn");
    cmd
}

/// `reelbox` as a user types it in `dir` beside daemon `d`: `--url` names the daemon, no
/// key, no user config, nothing on standard input. Arguments follow (`--url` is global).
pub fn reelbox_beside(d: &DaemonProc, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
    cmd.args(["--url", &d.at("")])
        .current_dir(dir)
        .env_remove("REELBOX_KEY")
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .stdin(Stdio::null());
    cmd
}

/// `reelbox ARGS…` run as [`reelbox_beside`] says, standard input from `stdin`: the
/// commands a filmmaker types after a render.
pub fn reelbox_at(d: &DaemonProc, dir: &Path, args: &[&str], stdin: Stdio) -> Output {
    reelbox_beside(d, dir).args(args).stdin(stdin).output().expect("reelbox")
}

/// Runs the fixture script `script` (in `tests/fixtures/`) with the converter's Python to
/// write its models into `out`; fails the test with its stderr.
pub fn make_fixture(env: &Path, script: &str, out: &Path) {
    let run = Command::new(env.join("bin/python"))
        .arg(super::fixture(script))
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(run.status.success(), "{script} failed: {}", String::from_utf8_lossy(&run.stderr));
}

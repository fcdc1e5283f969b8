//! The Python environment conversions run in: a venv reelbox creates itself on first use
//! (never the system Python's packages), with the pinned `assets/convert/requirements.txt`.
//! Its directory is named by a hash of that file, so a changed pin makes a new one and an
//! old reelbox keeps its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use super::{CANCEL_POLL, ConvertError, REQUIREMENTS};
use crate::config::Config;

/// What making the environment costs, said before pip starts: the pinned PyTorch is the
/// CUDA build from PyPI, its wheel and the `nvidia-*` ones about 3 GB, the finished venv
/// 5.8 GB (measured with the pins of `requirements.txt`).
const DOWNLOAD: &str = "pip downloads PyTorch with its CUDA libraries, about 3 GB (5.8 GB on disk once installed; \
                        minutes on a fast link)";

/// Written last into a finished environment; without it the directory is made again.
const READY_MARKER: &str = ".reelbox-ready";

/// An I/O error on `path` as a [`ConvertError`].
fn io(path: &Path) -> impl Fn(std::io::Error) -> ConvertError {
    let path = path.to_path_buf();
    move |source| ConvertError::Io { path: path.clone(), source }
}

/// A conversion environment's place on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyEnv {
    dir: PathBuf,
}

/// The first 16 hex digits of the requirements' sha256: the environment's name.
pub fn requirements_hash() -> String {
    hex::encode(Sha256::digest(REQUIREMENTS.as_bytes()))[..16].to_string()
}

impl PyEnv {
    /// `REELBOX_CONVERT_PYENV` when set, else `<data>/pyenv/convert-<hash>`.
    pub fn for_config(config: &Config) -> Self {
        let dir = crate::config::env::convert_pyenv()
            .unwrap_or_else(|| config.data_dir.join("pyenv").join(format!("convert-{}", requirements_hash())));
        Self { dir }
    }

    /// The environment's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// True when a finished environment is there.
    pub fn is_ready(&self) -> bool {
        self.dir.join(READY_MARKER).is_file() && self.python().exists()
    }

    /// Creates the environment unless it is ready; `log` gets pip's progress lines. Two
    /// processes creating it at once take turns on a lock file beside it. `canceled` is
    /// polled while a setup command runs: it is stopped, the half-made environment removed,
    /// and the result is [`ConvertError::Canceled`], whatever pip said as it stopped (a
    /// terminal's Ctrl-C reaches pip too).
    pub fn ensure(&self, log: &dyn Fn(&str), canceled: &dyn Fn() -> bool) -> Result<(), ConvertError> {
        if self.is_ready() {
            return Ok(());
        }
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let lock_path = self.dir.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
        fs4::FileExt::lock(&lock).map_err(io(&lock_path))?;
        if self.is_ready() {
            return Ok(());
        }
        // A half-made environment (interrupted install) is thrown away, not patched.
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))?;
        }
        let system_python = crate::config::env::python().unwrap_or_else(|| "python3".into());
        log(&format!("creating the conversion environment {} (first use): {DOWNLOAD}", self.dir.display()));
        let made = self.make(&system_python, log, canceled);
        if matches!(made, Err(ConvertError::Canceled)) {
            // Gigabytes, maybe; the next try starts over anyway.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        made
    }

    /// The venv and its pinned packages, then the ready mark.
    fn make(&self, system_python: &str, log: &dyn Fn(&str), canceled: &dyn Fn() -> bool) -> Result<(), ConvertError> {
        let venv = &mut Command::new(system_python);
        self.step(venv.arg("-m").arg("venv").arg(&self.dir), "python3 -m venv", log, canceled)?;
        let req = self.dir.join("requirements.txt");
        std::fs::write(&req, REQUIREMENTS).map_err(io(&req))?;
        let pip = || {
            let mut c = Command::new(self.python());
            // No wheel cache: PyTorch's wheels would stay in ~/.cache/pip beside the
            // environment, doubling its 5.8 GB for nothing (it is made once).
            c.args(["-m", "pip", "--disable-pip-version-check", "--no-input", "--no-cache-dir"]);
            c
        };
        // Old pips (Debian 12's 23.0) fail to resolve this set; a current one does.
        self.step(
            pip().args(["install", "--progress-bar", "off", "--upgrade", "pip"]),
            "pip install --upgrade pip",
            log,
            canceled,
        )?;
        self.step(
            pip().args(["install", "--progress-bar", "off", "-r"]).arg(&req),
            "pip install -r requirements.txt",
            log,
            canceled,
        )?;
        let marker = self.dir.join(READY_MARKER);
        std::fs::write(&marker, REQUIREMENTS).map_err(io(&marker))?;
        log("conversion environment ready");
        Ok(())
    }

    /// Runs one setup command, forwarding its output lines; fails with its last lines, or
    /// is stopped when `canceled` says so.
    fn step(
        &self,
        cmd: &mut Command,
        what: &str,
        log: &dyn Fn(&str),
        canceled: &dyn Fn() -> bool,
    ) -> Result<(), ConvertError> {
        let fail = |reason: String| ConvertError::Env { dir: self.dir.clone(), step: what.to_string(), reason };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let (tx, rx) = mpsc::channel();
        let mut tail = Vec::new();
        let status = std::thread::scope(|s| {
            let tx_out = tx.clone();
            if let Some(out) = out {
                s.spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        let _ = tx_out.send((false, line));
                    }
                });
            }
            if let Some(err) = err {
                s.spawn(move || {
                    for line in BufReader::new(err).lines().map_while(Result::ok) {
                        let _ = tx.send((true, line));
                    }
                });
            }
            // Until both pipes close; pip's stdout says what it fetches, its stderr why it failed.
            loop {
                match rx.recv_timeout(CANCEL_POLL) {
                    Ok((false, line)) if line.starts_with("Collecting") || line.starts_with("Successfully") => {
                        log(&line)
                    }
                    Ok((false, _)) => {}
                    Ok((true, line)) => tail.push(line),
                    Err(mpsc::RecvTimeoutError::Timeout) if canceled() => {
                        let _ = child.kill();
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            child.wait()
        });
        let status = status.map_err(|e| fail(e.to_string()))?;
        if canceled() {
            return Err(ConvertError::Canceled);
        }
        if status.success() {
            return Ok(());
        }
        let last: Vec<&str> = tail.iter().rev().take(5).rev().map(String::as_str).collect();
        Err(fail(format!("{status}: {}", last.join(" | "))))
    }
}

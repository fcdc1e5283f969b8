//! Converting the checkpoints people already have (upscaler and Wav2Lip `.pth` files, Stable
//! Diffusion folders and single files, with LoRAs fused in) into
//! the ONNX layouts reelbox runs. The converter is a Python script shipped inside the
//! binary (`assets/convert/`), written out at run time and run in the managed environment
//! ([`pyenv`]). It fills a staging directory and writes the inputs and PyTorch outputs of a
//! self-check; the caller runs the same inputs through reelbox's own pipeline and only
//! then calls [`Conversion::install`]. Dropping a conversion that was not installed
//! removes its staging directory, so a failed conversion installs nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::ModelKind;
use super::{Manifest, ModelError, ModelStore, import};
use crate::config::Config;

pub mod fused;
pub mod hashes;
pub mod pyenv;
pub mod rehash;

pub use fused::{fused_of, import_flags_in, import_flags_of};
pub use pyenv::PyEnv;

/// The pinned packages of the conversion environment.
pub const REQUIREMENTS: &str = include_str!("../../../assets/convert/requirements.txt");
/// The scripts written into a scratch directory for each conversion.
const SCRIPTS: [(&str, &str); 10] = [
    ("clip_vocab.py", include_str!("../../../assets/convert/clip_vocab.py")),
    ("convert.py", include_str!("../../../assets/convert/convert.py")),
    ("embedding.py", include_str!("../../../assets/convert/embedding.py")),
    ("sd.py", include_str!("../../../assets/convert/sd.py")),
    ("sd_single.py", include_str!("../../../assets/convert/sd_single.py")),
    ("sd_xl_single.py", include_str!("../../../assets/convert/sd_xl_single.py")),
    ("sd_xl_base.yaml", include_str!("../../../assets/convert/sd_xl_base.yaml")),
    ("v1-inference.yaml", include_str!("../../../assets/convert/v1-inference.yaml")),
    ("v2-inference.yaml", include_str!("../../../assets/convert/v2-inference.yaml")),
    ("wav2lip_arch.py", include_str!("../../../assets/convert/wav2lip_arch.py")),
];
/// The file in a converted model's directory that says what it was made from.
pub const CONVERSION_FILE: &str = "conversion.json";
/// How often a running conversion looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot prepare the conversion environment {} ({step}): {reason}", .dir.display())]
    Env { dir: PathBuf, step: String, reason: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The converter refused the input; the message names the file.
    #[error("{message}")]
    Refused { message: String },
    #[error("the converter failed on {}: {tail}", .input.display())]
    Crashed { input: PathBuf, tail: String },
    #[error("the converter's result for {} is not readable", .input.display())]
    BadResult {
        input: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("reference tensor {name}: {reason}")]
    BadTensor { name: String, reason: String },
    #[error("canceled")]
    Canceled,
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// What to convert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvertRequest {
    /// The checkpoint file (or folder) on this machine.
    pub input: PathBuf,
    /// The name to install it under.
    pub name: String,
    /// LoRAs to fuse, with their scales.
    pub loras: Vec<(PathBuf, f32)>,
    /// Export half-precision weights.
    pub fp16: bool,
    /// A single-file checkpoint's prediction type (`epsilon`, `v_prediction`); guessed when unset.
    #[serde(default)]
    pub prediction: Option<String>,
    /// The kind the user named: the converter refuses a checkpoint of another kind as soon
    /// as it knows, before the export.
    #[serde(default)]
    pub kind: Option<ModelKind>,
}

/// A reference tensor the converter wrote: a raw little-endian f32 file and its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRef {
    pub file: String,
    pub shape: Vec<usize>,
}

/// The converter's `RESULT` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Converted {
    /// The model kind, as manifests spell it.
    pub kind: String,
    /// The source format (spandrel's architecture name, `wav2lip`, ...).
    pub format: String,
    pub summary: String,
    /// Format facts worth keeping (an upscaler's scale, a model's base and LoRAs).
    pub details: serde_json::Value,
    /// Reference tensors of the self-check by role (`input`, `expected`, ...).
    pub check: BTreeMap<String, TensorRef>,
}

/// A converted model in its staging directory, not installed yet.
pub struct Conversion {
    pub request: ConvertRequest,
    pub result: Converted,
    pub kind: ModelKind,
    /// The A1111 hashes of the files it was made from, read beside the converter.
    pub hashes: hashes::SourceHashes,
    staging: PathBuf,
    check: tempfile::TempDir,
    installed: bool,
}

/// A line of converter progress.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertProgress {
    pub step: u64,
    pub total: u64,
    pub message: String,
}

impl Conversion {
    /// The directory the converted model's files are in until installed.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// A reference tensor by role: its values and shape.
    pub fn tensor(&self, role: &str) -> Result<(Vec<f32>, Vec<usize>), ConvertError> {
        let bad = |reason: String| ConvertError::BadTensor { name: role.to_string(), reason };
        let r = self.result.check.get(role).ok_or_else(|| bad("the converter wrote none".into()))?;
        let path = self.check.path().join(&r.file);
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let n: usize = r.shape.iter().product();
        if bytes.len() != n * 4 {
            return Err(bad(format!("{} bytes for shape {:?}", bytes.len(), r.shape)));
        }
        let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((data, r.shape.clone()))
    }

    /// Moves the checked model into place with a manifest; `check` (the self-check's
    /// report) is kept in the model's `conversion.json` beside the source, its A1111 hashes
    /// (`sha256` and `model_hash` of a checkpoint file, each LoRA's `a1111_hash`) and details.
    pub fn install(mut self, store: &ModelStore, check: &serde_json::Value) -> Result<Manifest, ConvertError> {
        let record = serde_json::json!({
            "source": self.request.input,
            "format": self.result.format,
            "details": self.result.details,
            "loras": self.request.loras.iter().enumerate().map(|(i, (f, s))| {
                let hash = self.hashes.loras.get(i).cloned().flatten();
                serde_json::json!({"file": f, "scale": s, "a1111_hash": hash})
            }).collect::<Vec<_>>(),
            "sha256": self.hashes.checkpoint.as_ref().map(|h| &h.sha256),
            "model_hash": self.hashes.checkpoint.as_ref().map(|h| &h.model_hash),
            "fp16": self.request.fp16,
            "self_check": check,
        });
        let path = self.staging.join(CONVERSION_FILE);
        let text = serde_json::to_string_pretty(&record)
            .map_err(|source| ConvertError::BadResult { input: self.request.input.clone(), source })?;
        std::fs::write(&path, text).map_err(|source| ConvertError::Io { path: path.clone(), source })?;
        store.unmark_import_staging(&self.staging)?;
        let summary = format!("{}{CONVERTED_FROM}{}", self.result.summary, self.request.input.display());
        let manifest = import::plan_converted(&self.staging, &self.request.name, self.kind, summary)?;
        // The manifest's sha256s were just read from these very files, and the self-check
        // passed: checked now, as a pull's or a copied import's files are at install.
        let marker = self.staging.join(super::VERIFIED_MARKER);
        std::fs::write(&marker, crate::time::now_ms().to_string())
            .map_err(|source| ConvertError::Io { path: marker.clone(), source })?;
        store.install_dir(&self.staging, &manifest)?;
        self.installed = true;
        Ok(manifest)
    }
}

impl Drop for Conversion {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// What a converted model's manifest summary says before its source's path
/// (`import::source_of` reads it back).
pub(crate) const CONVERTED_FROM: &str = " converted from ";

/// A name for an imported model from its file: the stem with other characters as `-`, one
/// `-` for a run of them and none at either end (`Realistic Vision V5.1 (fp16).safetensors`
/// → `Realistic-Vision-V5.1-fp16`).
pub fn default_name(input: &Path) -> String {
    let name = former_default_name(input);
    let parts: Vec<&str> = name.split('-').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() { "imported".into() } else { parts.join("-") }
}

/// The name [`default_name`] gave before it joined runs of `-` (`Realistic-Vision-V5.1--fp16-`):
/// models imported then keep it, and a client naming their file still finds them.
pub fn former_default_name(input: &Path) -> String {
    let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    if name.trim_matches('-').is_empty() { "imported".into() } else { name }
}

/// A model made here without the converter (an embedding read from its safetensors):
/// `write` puts its files in a staging directory as the converter would (removed unless
/// installed), `result` says what it is, and [`Conversion::install`] installs it.
pub fn staged(
    store: &ModelStore,
    req: &ConvertRequest,
    result: Converted,
    write: impl FnOnce(&Path) -> Result<(), ConvertError>,
) -> Result<Conversion, ConvertError> {
    let check = tempfile::tempdir().map_err(|source| ConvertError::Io { path: PathBuf::from("/tmp"), source })?;
    let kind = ModelKind::parse(&result.kind).ok_or_else(|| ConvertError::Crashed {
        input: req.input.clone(),
        tail: format!("unknown model kind {:?}", result.kind),
    })?;
    let staging = store.import_staging(&req.name)?;
    let mut conv = Conversion {
        request: req.clone(),
        result,
        kind,
        hashes: hashes::SourceHashes::default(),
        staging,
        check,
        installed: false,
    };
    write(&conv.staging)?;
    conv.hashes = hashes::SourceHashes::read(&req.input, &[], &AtomicBool::new(false));
    Ok(conv)
}

/// Converts `req.input` into a staging directory under the models dir, creating the
/// environment first if needed. `progress` gets the converter's steps and setup lines;
/// `canceled` is polled while it runs (the converter is killed when it says so).
pub fn convert(
    config: &Config,
    store: &ModelStore,
    req: &ConvertRequest,
    progress: &dyn Fn(ConvertProgress),
    canceled: &dyn Fn() -> bool,
) -> Result<Conversion, ConvertError> {
    let env = PyEnv::for_config(config);
    env.ensure(&|line| progress(ConvertProgress { step: 0, total: 0, message: line.to_string() }), canceled)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConvertError::Io { path: path.clone(), source }
    };
    let scripts = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
    for (name, text) in SCRIPTS {
        let p = scripts.path().join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    let check = tempfile::tempdir().map_err(io(Path::new("/tmp")))?;
    let staging = store.import_staging(&req.name)?;
    // From here the staging directory belongs to the conversion (removed on any error).
    let mut conv = Conversion {
        request: req.clone(),
        result: Converted {
            kind: String::new(),
            format: String::new(),
            summary: String::new(),
            details: serde_json::Value::Null,
            check: BTreeMap::new(),
        },
        kind: ModelKind::Upscale,
        hashes: hashes::SourceHashes::default(),
        staging,
        check,
        installed: false,
    };
    let mut cmd = Command::new(env.python());
    cmd.arg(scripts.path().join("convert.py"))
        .arg("--input")
        .arg(&req.input)
        .arg("--out")
        .arg(&conv.staging)
        .arg("--check")
        .arg(conv.check.path())
        // installed models' tokenizers serve single-file checkpoints, which ship none
        .arg("--models")
        .arg(store.models_dir())
        // the converter ends itself when this process dies (`exit_with_parent`)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for (file, scale) in &req.loras {
        cmd.arg("--lora").arg(format!("{}:{scale}", file.display()));
    }
    if req.fp16 {
        cmd.arg("--fp16");
    }
    if let Some(p) = &req.prediction {
        cmd.arg("--prediction").arg(p);
    }
    if let Some(k) = req.kind {
        cmd.arg("--kind").arg(k.as_str());
    }
    // The files are hashed for A1111 clients while the converter reads them too (the page
    // cache serves both), and the hashing stops when the converter does.
    let stop = AtomicBool::new(false);
    let lora_files: Vec<PathBuf> = req.loras.iter().map(|(f, _)| f.clone()).collect();
    let (result, hashes) = std::thread::scope(|s| {
        let hashing = s.spawn(|| hashes::SourceHashes::read(&req.input, &lora_files, &stop));
        let result = run_script(&mut cmd, &req.input, progress, canceled);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        (result, hashing.join())
    });
    let result = result?;
    conv.hashes = hashes.unwrap_or_default();
    for line in &conv.hashes.unread {
        progress(ConvertProgress { step: 0, total: 0, message: line.clone() });
    }
    conv.kind = ModelKind::parse(&result.kind).ok_or_else(|| ConvertError::Crashed {
        input: req.input.clone(),
        tail: format!("unknown model kind {:?} in its result", result.kind),
    })?;
    conv.result = result;
    Ok(conv)
}

/// What the converter printed, line by line.
enum Line {
    Out(String),
    Err(String),
}

/// Runs the converter: forwards `PROGRESS` lines, returns the `RESULT`, turns `ERROR` into
/// a refusal and anything else that ends it into a failure with the last lines of output.
fn run_script(
    cmd: &mut Command,
    input: &Path,
    progress: &dyn Fn(ConvertProgress),
    canceled: &dyn Fn() -> bool,
) -> Result<Converted, ConvertError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ConvertError::Io { path: PathBuf::from("python"), source })?;
    let (tx, rx) = mpsc::channel();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (mut result, mut refusal, mut tail) = (None, None, Vec::<String>::new());
    let status = std::thread::scope(|s| {
        let tx_err = tx.clone();
        if let Some(out) = out {
            s.spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(Line::Out(l));
                }
            });
        }
        if let Some(err) = err {
            s.spawn(move || {
                for l in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx_err.send(Line::Err(l));
                }
            });
        }
        loop {
            match rx.recv_timeout(CANCEL_POLL) {
                Ok(Line::Out(line)) => {
                    if let Some(rest) = line.strip_prefix("PROGRESS ") {
                        progress(parse_progress(rest));
                    } else if let Some(rest) = line.strip_prefix("RESULT ") {
                        result = Some(rest.to_string());
                    } else if let Some(rest) = line.strip_prefix("ERROR ") {
                        refusal = Some(rest.to_string());
                    } else {
                        push_tail(&mut tail, line);
                    }
                }
                Ok(Line::Err(line)) => push_tail(&mut tail, line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if canceled() {
                        let _ = child.kill();
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        child.wait()
    });
    let status = status.map_err(|source| ConvertError::Io { path: input.to_path_buf(), source })?;
    if canceled() {
        return Err(ConvertError::Canceled);
    }
    let failed = refusal.is_some() || !status.success() || result.is_none();
    if failed {
        // The converter's own words (a traceback) go to the log; the error stays one line.
        for line in &tail {
            progress(ConvertProgress { step: 0, total: 0, message: format!("converter: {line}") });
        }
    }
    if let Some(message) = refusal {
        return Err(ConvertError::Refused { message });
    }
    match (status.success(), result) {
        (true, Some(json)) => {
            serde_json::from_str(&json).map_err(|source| ConvertError::BadResult { input: input.to_path_buf(), source })
        }
        _ => {
            let last = tail.iter().rev().find(|l| !l.trim().is_empty()).map_or("no output", |l| l.trim());
            Err(ConvertError::Crashed { input: input.to_path_buf(), tail: format!("{status}: {last}") })
        }
    }
}

/// How many of the converter's last lines a failure passes to the log.
const TAIL_LINES: usize = 40;

/// Keeps the last [`TAIL_LINES`] lines of output for the log of a failure.
fn push_tail(tail: &mut Vec<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.remove(0);
    }
    tail.push(line);
}

/// `<step> <total> <message>`; a malformed line is shown as a message.
fn parse_progress(rest: &str) -> ConvertProgress {
    let mut parts = rest.splitn(3, ' ');
    let step = parts.next().and_then(|s| s.parse().ok());
    let total = parts.next().and_then(|s| s.parse().ok());
    match (step, total) {
        (Some(step), Some(total)) => {
            ConvertProgress { step, total, message: parts.next().unwrap_or_default().to_string() }
        }
        _ => ConvertProgress { step: 0, total: 0, message: rest.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read_and_odd_ones_kept_as_messages() {
        assert_eq!(
            parse_progress("2 3 exported ONNX"),
            ConvertProgress { step: 2, total: 3, message: "exported ONNX".into() }
        );
        assert_eq!(parse_progress("half a line").message, "half a line");
    }

    #[test]
    fn default_names_are_valid_model_names() {
        assert_eq!(default_name(Path::new("/x/4x-UltraSharp.pth")), "4x-UltraSharp");
        assert_eq!(default_name(Path::new("wav2lip gan (1).pth")), "wav2lip-gan-1");
        assert_eq!(default_name(Path::new("Realistic Vision V5.1 (fp16).safetensors")), "Realistic-Vision-V5.1-fp16");
        assert_eq!(default_name(Path::new("(v2) ink--wash.ckpt")), "v2-ink-wash");
        assert_eq!(former_default_name(Path::new("wav2lip gan (1).pth")), "wav2lip-gan--1-");
        assert_eq!(default_name(Path::new("/x/+++.pth")), "imported");
    }
}

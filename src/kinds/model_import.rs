//! `model_import`: brings a user's own model in. Ready ONNX layouts and Piper voices are
//! copied as they are; checkpoints (upscaler and Wav2Lip `.pth`) are converted in the
//! managed Python environment ([`crate::models::convert`]) and proven before they are
//! installed: the converter's PyTorch outputs are compared with reelbox's own pipeline on
//! the same inputs (a tile for upscalers, a batch of frames for Wav2Lip), and the model is
//! refused when they differ by more than [`FP32_TOLERANCE`] ([`FP16_TOLERANCE`] with `fp16`).
//!
//! Params ([`ImportRequest`] → [`ImportParams`]): `path` (on the daemon's machine), `name`,
//! `kind`, `loras` (`FILE[:SCALE]`), `fp16`. The one stage writes `import.json`
//! ([`ImportReport`]: the manifest's name and kind, and the self-check's largest difference).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fields::{reject_unknown, string_field};
use super::{Failure, ParamError, StageError, StageName, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::models::convert::{self, Conversion, ConvertError, ConvertProgress, ConvertRequest};
use crate::models::{ModelError, ModelKind, ModelStore, import, manifest};
use crate::pipelines::diffusion::DiffusionError;
use crate::pipelines::lipsync::{LipsyncError, model::Wav2Lip};
use crate::pipelines::upscale::{UpscaleError, Upscaler};

mod diffusion;

/// The `model_import` job kind.
pub struct ModelImport;

/// Largest difference allowed between PyTorch and reelbox's ONNX run of a float32 export.
pub const FP32_TOLERANCE: f32 = 1e-3;
/// The same with `--fp16`: weights rounded to float16 move outputs by up to ~2⁻¹¹ relative
/// per layer; through a 4-step image that stays well inside this bound (README).
pub const FP16_TOLERANCE: f32 = 2e-2;
const STAGE: StageName = StageName::Import;

/// `model_import` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The file or folder to import, on the daemon's machine.
    pub path: Option<String>,
    /// The name to install it under.
    pub name: Option<String>,
    /// The model kind, when the files do not tell.
    pub kind: Option<String>,
    /// LoRAs to fuse, `FILE[:SCALE]` (scale 1 when left out).
    pub loras: Vec<String>,
    /// Half-precision weights.
    pub fp16: Option<bool>,
    /// A single-file Stable Diffusion's prediction type: `epsilon` or `v` (guessed when left out).
    pub prediction: Option<String>,
}

/// Validated `model_import` parameters, as stored with the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportParams {
    pub path: PathBuf,
    pub name: Option<String>,
    pub kind: Option<ModelKind>,
    pub loras: Vec<(PathBuf, f32)>,
    pub fp16: bool,
    /// `epsilon` or `v_prediction`, as diffusers spells it.
    pub prediction: Option<String>,
}

impl ImportRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &["path", "name", "kind", "loras", "fp16", "prediction"])?;
        let loras = match params.get("loras") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ParamError::new("loras", "must be strings")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ParamError::new("loras", "must be a list of \"FILE[:SCALE]\"")),
        };
        let fp16 = match params.get("fp16") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ParamError::new("fp16", "must be true or false")),
        };
        Ok(Self {
            path: string_field(params, "path")?,
            name: string_field(params, "name")?,
            kind: string_field(params, "kind")?,
            loras,
            fp16,
            prediction: string_field(params, "prediction")?,
        })
    }

    /// Checks that the path exists, the name is a valid model name and LoRAs parse.
    pub fn resolve(self) -> Result<ImportParams, ParamError> {
        let path = self.path.as_deref().map(str::trim).unwrap_or_default();
        if path.is_empty() {
            return Err(ParamError::new("path", "required: the file or folder to import"));
        }
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(ParamError::new("path", format!("{}: no such file or directory", path.display())));
        }
        if import::is_foreign_file(&path) {
            return Err(ParamError::new(
                "path",
                format!(
                    "{} is not a model file reelbox can import (checkpoints: .{}; ONNX models and Piper voices: .onnx; or a model folder)",
                    path.display(),
                    import::CHECKPOINT_EXTENSIONS.join(", .")
                ),
            ));
        }
        let name = self.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
        if let Some(n) = &name
            && !manifest::valid_name(n)
        {
            return Err(ParamError::new("name", format!("{n:?} may only use letters, digits, '-', '_' and '.'")));
        }
        let kind = match self.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(ModelKind::parse(k).ok_or_else(|| {
                ParamError::new("kind", format!("{k:?} is not one of tts, diffusion, lipsync, upscale, face"))
            })?),
        };
        let loras: Vec<(PathBuf, f32)> = self.loras.iter().map(|l| parse_lora(l)).collect::<Result<_, _>>()?;
        let prediction = match self.prediction.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some("epsilon" | "eps") => Some("epsilon".to_string()),
            Some("v" | "v_prediction" | "v-prediction") => Some("v_prediction".to_string()),
            Some(other) => return Err(ParamError::new("prediction", format!("{other:?} is not epsilon or v"))),
        };
        if let Some(k) = kind {
            kind_fits(&path, k, !loras.is_empty() || prediction.is_some())?;
        }
        Ok(ImportParams { path, name, kind, loras, fp16: self.fp16.unwrap_or(false), prediction })
    }
}

/// Refuses a `kind` the files cannot be before anything is converted (a real Stable
/// Diffusion conversion takes minutes): a diffusers folder, LoRAs or a prediction type
/// mean a diffusion model, and checkpoints convert to diffusion, lip-sync or upscale models.
fn kind_fits(path: &Path, kind: ModelKind, stable_diffusion: bool) -> Result<(), ParamError> {
    let refuse = |why: &str| Err(ParamError::new("kind", format!("{}: {why}, not {}", path.display(), kind.as_str())));
    if kind != ModelKind::Diffusion && import::is_diffusers_folder(path) {
        return refuse("a Stable Diffusion folder makes a diffusion model");
    }
    if kind != ModelKind::Diffusion && stable_diffusion {
        return refuse("LoRAs and a prediction type make a diffusion model");
    }
    if matches!(kind, ModelKind::Tts | ModelKind::Face) && import::needs_conversion(path) {
        return refuse("a checkpoint converts to a diffusion, lipsync or upscale model");
    }
    Ok(())
}

/// "a diffusion", "an upscale": a kind in a sentence.
fn a_kind(kind: ModelKind) -> String {
    let k = kind.as_str();
    if k.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {k}") } else { format!("a {k}") }
}

/// The largest LoRA scale taken, either sign.
pub const MAX_LORA_SCALE: f32 = 100.0;

/// `FILE[:SCALE]` → the file and its scale (1 when left out); the file must exist.
pub fn parse_lora(text: &str) -> Result<(PathBuf, f32), ParamError> {
    let err = |message: String| ParamError::new("loras", message);
    // A colon is part of the file name when the whole text names a file.
    let (file, scale) = match text.rsplit_once(':') {
        Some((f, s)) if !Path::new(text).is_file() => match s.trim().parse::<f32>() {
            Ok(v) => (f, v),
            Err(_) if Path::new(f).is_file() => {
                return Err(err(format!("{text}: the scale {s:?} is not a number (FILE[:SCALE], e.g. {f}:0.8)")));
            }
            Err(_) => (text, 1.0),
        },
        _ => (text, 1.0),
    };
    if !scale.is_finite() {
        return Err(err(format!("{text}: the scale must be a finite number")));
    }
    // A scale far outside what LoRAs are trained for only draws noise (ComfyUI's range).
    if scale.abs() > MAX_LORA_SCALE {
        return Err(err(format!(
            "{text}: the scale {scale} is outside -{MAX_LORA_SCALE}..{MAX_LORA_SCALE} (1 is the LoRA as trained)"
        )));
    }
    let file = PathBuf::from(file);
    if !file.is_file() {
        return Err(err(format!("{}: no such file", file.display())));
    }
    Ok((file, scale))
}

/// What an import did: the job's result (`import.json`) and the CLI's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub name: String,
    pub kind: ModelKind,
    pub dir: PathBuf,
    pub files: usize,
    /// The source format when it was converted (`ESRGAN`, `wav2lip`, ...).
    pub converted_from: Option<String>,
    /// The self-check of a conversion.
    pub self_check: Option<SelfCheck>,
}

/// How a converted model compared with its PyTorch original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// What went through both (`a 32x32 tile`).
    pub compared: String,
    pub max_abs_diff: f32,
    pub tolerance: f32,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the converted model does not load in reelbox's pipeline")]
    Upscale(#[from] UpscaleError),
    #[error("the converted model does not load in reelbox's pipeline")]
    Lipsync(#[from] LipsyncError),
    #[error("the converted model does not run in reelbox's diffusion pipeline")]
    Diffusion(#[from] DiffusionError),
    #[error(
        "{}: the converted model differs from PyTorch by {max_abs_diff:e} on {compared} (allowed {tolerance:e}); nothing was installed",
        .input.display()
    )]
    Mismatch { input: PathBuf, compared: String, max_abs_diff: f32, tolerance: f32 },
    #[error("{}: {reason}", .input.display())]
    Refused { input: PathBuf, reason: String },
}

impl Failure for ImportError {
    // A conversion that failed once fails again; only a disk hiccup may pass.
    fn is_retriable(&self) -> bool {
        matches!(self, ImportError::Model(ModelError::Io { .. }) | ImportError::Convert(ConvertError::Io { .. }))
    }
    fn is_canceled(&self) -> bool {
        matches!(self, ImportError::Convert(ConvertError::Canceled))
    }
}

/// Imports `p` into the configured models dir: copies ready layouts, converts and checks
/// checkpoints. `progress` gets (step, total, message); `canceled` is polled.
pub fn import_model(
    config: &Config,
    engine: &Engine,
    device: DeviceId,
    p: &ImportParams,
    progress: &dyn Fn(u64, u64, &str),
    canceled: &dyn Fn() -> bool,
) -> Result<ImportReport, ImportError> {
    let store = ModelStore::new(config);
    if !import::needs_conversion(&p.path) && p.loras.is_empty() && !p.fp16 && p.prediction.is_none() {
        let m = store.import(&p.path, p.name.as_deref(), p.kind)?;
        let dir = store.model_dir(&m.name);
        return Ok(ImportReport {
            name: m.name,
            kind: m.kind,
            dir,
            files: m.files.len(),
            converted_from: None,
            self_check: None,
        });
    }
    let name = p.name.clone().unwrap_or_else(|| convert::default_name(&p.path));
    // Held until the model is installed (or the import fails): see `NameClaim`.
    let _claim = store.claim_name(&name, &p.path)?;
    let req = ConvertRequest {
        input: p.path.clone(),
        name,
        loras: p.loras.clone(),
        fp16: p.fp16,
        prediction: p.prediction.clone(),
    };
    let forward = |c: ConvertProgress| progress(c.step, c.total, &c.message);
    let conv = convert::convert(config, &store, &req, &forward, canceled)?;
    if let Some(k) = p.kind
        && k != conv.kind
    {
        return Err(ImportError::Refused {
            input: p.path.clone(),
            reason: format!("is {} model ({}), not {}", a_kind(conv.kind), conv.result.format, k.as_str()),
        });
    }
    progress(0, 0, "self-check: the same inputs through PyTorch and reelbox's pipeline");
    let check = self_check(engine, device, &conv);
    // The staged files move on install: no session may keep the staging path.
    engine.forget_model(&conv.staging().join("model.onnx"));
    for part in diffusion::PARTS {
        engine.forget_model(&conv.staging().join(part).join("model.onnx"));
    }
    let check = check?;
    if check.max_abs_diff.is_nan() || check.max_abs_diff > check.tolerance {
        return Err(ImportError::Mismatch {
            input: p.path.clone(),
            compared: check.compared,
            max_abs_diff: check.max_abs_diff,
            tolerance: check.tolerance,
        });
    }
    progress(0, 0, &format!("self-check passed: largest difference {:e} on {}", check.max_abs_diff, check.compared));
    let format = conv.result.format.clone();
    let report = serde_json::to_value(&check).unwrap_or_default();
    let m = conv.install(&store, &report)?;
    let dir = store.model_dir(&m.name);
    Ok(ImportReport {
        name: m.name,
        kind: m.kind,
        dir,
        files: m.files.len(),
        converted_from: Some(format),
        self_check: Some(check),
    })
}

/// Runs the converter's reference inputs through reelbox's own pipeline.
fn self_check(engine: &Engine, device: DeviceId, conv: &Conversion) -> Result<SelfCheck, ImportError> {
    let tolerance = if conv.request.fp16 { FP16_TOLERANCE } else { FP32_TOLERANCE };
    let (got, compared) = match conv.kind {
        ModelKind::Upscale => {
            let (input, shape) = conv.tensor("input")?;
            let up = Upscaler::load(engine, device, conv.staging())?;
            let (h, w) = (shape[2] as u32, shape[3] as u32);
            let (out, _) = up.run_tile(input, h, w)?;
            (out, format!("a {w}x{h} tile"))
        }
        ModelKind::Lipsync => {
            let (mel, shape) = conv.tensor("mel")?;
            let (faces, _) = conv.tensor("faces")?;
            let model = Wav2Lip::load(engine, device, conv.staging())?;
            let n = shape[0];
            (model.infer(n, mel, faces)?, format!("a batch of {n} frames"))
        }
        ModelKind::Diffusion => return diffusion::check(engine, device, conv, tolerance),
        other => {
            return Err(ImportError::Refused {
                input: conv.request.input.clone(),
                reason: format!("no self-check for {} models yet", other.as_str()),
            });
        }
    };
    let (expected, _) = conv.tensor("expected")?;
    let max_abs_diff = max_abs_diff(&expected, &got).ok_or_else(|| ImportError::Refused {
        input: conv.request.input.clone(),
        reason: format!("reelbox's pipeline gave {} values where PyTorch gave {}", got.len(), expected.len()),
    })?;
    Ok(SelfCheck { compared, max_abs_diff, tolerance })
}

/// The largest |a − b|, NaN when either has a NaN, `None` when the lengths differ.
fn max_abs_diff(expected: &[f32], got: &[f32]) -> Option<f32> {
    if expected.len() != got.len() {
        return None;
    }
    // f32::max would drop a NaN; a NaN anywhere must fail the check.
    Some(
        expected
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |m, d| if m.is_nan() || d.is_nan() { f32::NAN } else { m.max(d) }),
    )
}

impl TypedKind for ModelImport {
    type Params = ImportParams;
    const NAME: &'static str = "model_import";
    const FIRST_STAGE: StageName = STAGE;

    fn admin_only(&self) -> bool {
        true
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<ImportParams, ParamError> {
        let p = ImportRequest::from_json(params)?.resolve()?;
        // A name that is installed is refused now rather than by the job (the old model
        // stays either way); a copied folder's own name is known only once it is read.
        let name = p.name.clone().or_else(|| {
            if import::needs_conversion(&p.path) {
                Some(convert::default_name(&p.path))
            } else {
                p.path.is_file().then(|| p.path.file_stem().map(|s| s.to_string_lossy().into_owned())).flatten()
            }
        });
        if let Some(name) = name
            && ModelStore::new(ctx.config).name_taken(&name)
        {
            return Err(ParamError::new("name", import::taken(&name)));
        }
        Ok(p)
    }

    fn stages(&self, _p: &ImportParams) -> Vec<StageName> {
        vec![STAGE]
    }

    fn run_stage(&self, stage: StageName, p: &ImportParams, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("model_import has no stage {stage:?}")));
        }
        let progress = |step: u64, total: u64, message: &str| {
            if total == 0 {
                run.sink.log("info", message);
            } else {
                run.sink.progress(step, total, Some(message));
            }
        };
        let report = import_model(run.config, run.engine, run.device, p, &progress, &|| run.cancel.is_cancelled())?;
        run.sink.log("info", &format!("{} installed at {}", report.name, report.dir.display()));
        let bytes = serde_json::to_vec_pretty(&report)
            .map_err(|e| StageError::context("cannot encode the import report", e))?;
        run.sink.put_artifact("import.json", "application/json", &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_scales_default_to_one_and_missing_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("style.safetensors");
        std::fs::write(&f, b"x").expect("write");
        let text = f.display().to_string();
        assert_eq!(parse_lora(&text).expect("plain"), (f.clone(), 1.0));
        assert_eq!(parse_lora(&format!("{text}:0.5")).expect("scaled"), (f.clone(), 0.5));
        let err = parse_lora("/no/such.safetensors:1").expect_err("missing");
        assert_eq!(err.field, "loras");
        assert!(err.message.contains("/no/such.safetensors"), "{}", err.message);
        let err = parse_lora(&format!("{text}:strong")).expect_err("scale");
        assert!(err.message.contains("\"strong\" is not a number"), "{}", err.message);
        assert_eq!(parse_lora(&format!("{text}:-100")).expect("negative").1, -100.0);
        let err = parse_lora(&format!("{text}:1e9")).expect_err("too strong");
        assert!(err.message.contains("outside -100..100"), "{}", err.message);
    }

    #[test]
    fn requests_name_their_bad_fields() {
        let err = ImportRequest::from_json(&serde_json::json!({"path": "/", "fp16": 1})).expect_err("fp16");
        assert_eq!(err.field, "fp16");
        let err = ImportRequest::from_json(&serde_json::json!({"path": "/no/such/file.pth"}))
            .and_then(ImportRequest::resolve)
            .expect_err("missing path");
        assert_eq!(err.field, "path");
        assert!(err.message.contains("/no/such/file.pth"));
        let err = ImportRequest::from_json(&serde_json::json!({"path": "/", "name": "a b"}))
            .and_then(ImportRequest::resolve)
            .expect_err("bad name");
        assert_eq!(err.field, "name");
        let err = ImportRequest::from_json(&serde_json::json!({"path": "/", "prediction": "x0"}))
            .and_then(ImportRequest::resolve)
            .expect_err("bad prediction");
        assert_eq!(err.field, "prediction");
        let v = ImportRequest::from_json(&serde_json::json!({"path": "/", "prediction": "v"}))
            .and_then(ImportRequest::resolve)
            .expect("v");
        assert_eq!(v.prediction.as_deref(), Some("v_prediction"));
    }
}

//! `model_import`: brings a user's own model in. Ready ONNX layouts and Piper voices are
//! loaded through their kind's pipeline (`usable.rs`), then copied as they are; checkpoints (upscaler and Wav2Lip `.pth`) are converted in the
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

use super::{Failure, ParamError, StageError, StageName, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::models::convert::{self, Conversion, ConvertError, ConvertProgress, ConvertRequest};
use crate::models::import::{self, Via};
use crate::models::{ModelError, ModelKind, ModelStore};
use crate::pipelines::diffusion::DiffusionError;
use crate::pipelines::lipsync::{LipsyncError, model::Wav2Lip};
use crate::pipelines::upscale::{UpscaleError, Upscaler};

mod diffusion;
mod embedding;
mod request;
mod usable;

pub use request::{ImportParams, ImportRequest, MAX_LORA_SCALE, parse_lora};
pub use usable::{Unusable, check_loads};

/// The `model_import` job kind.
pub struct ModelImport;

/// Largest difference allowed between PyTorch and reelbox's ONNX run of a float32 export.
pub const FP32_TOLERANCE: f32 = 1e-3;
/// The same with `--fp16`: weights rounded to float16 move outputs by up to ~2⁻¹¹ relative
/// per layer; through a 4-step image that stays well inside this bound (README).
pub const FP16_TOLERANCE: f32 = 2e-2;
const STAGE: StageName = StageName::Import;

/// What a self-check failed with `--fp16` ends with: the rounding to float16 moved the model
/// too far (strong LoRAs fused in make weights it holds less closely); in float32 it is held
/// to the float32 bound instead.
fn fp16_mismatch(via: Via) -> String {
    let off = match via {
        Via::Cli => "without --fp16".to_string(),
        Via::Api => format!("with {}", via.set("fp16", "false")),
    };
    format!("; float16 weights move this model too far: import it {off}")
}

/// "a diffusion", "an upscale": a kind in a sentence.
fn a_kind(kind: ModelKind) -> String {
    format!("{} {}", kind.article(), kind.as_str())
}

/// What an import did: the job's result (`import.json`) and the CLI's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub name: String,
    pub kind: ModelKind,
    pub dir: PathBuf,
    pub files: usize,
    /// Files at the imported folder that are not part of the model, not copied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
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
        "{}: the converted model differs from PyTorch by {max_abs_diff:e} on {compared} (allowed {tolerance:e}); nothing was installed{}",
        .input.display(),
        .fp16.map(fp16_mismatch).unwrap_or_default()
    )]
    Mismatch {
        input: PathBuf,
        compared: String,
        max_abs_diff: f32,
        tolerance: f32,
        /// Where an import with float16 weights was asked for (`None`: float32).
        fp16: Option<Via>,
    },
    #[error("{}: {reason}", .input.display())]
    Refused { input: PathBuf, reason: String },
    /// Ready ONNX files that do not load as a model of the kind they were given as.
    #[error("{}: not usable as {} model: {source}; nothing was installed", .input.display(), a_kind(*.kind))]
    Unusable {
        input: PathBuf,
        kind: ModelKind,
        /// Boxed: the pipelines' errors are large and every import returns this type.
        #[source]
        source: Box<Unusable>,
    },
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
/// checkpoints. `via` is where it was asked for (its refusals name that one's options);
/// `progress` gets (step, total, message); `canceled` is polled.
pub fn import_model(
    config: &Config,
    engine: &Engine,
    device: DeviceId,
    p: &ImportParams,
    via: Via,
    progress: &dyn Fn(u64, u64, &str),
    canceled: &dyn Fn() -> bool,
) -> Result<ImportReport, ImportError> {
    let store = ModelStore::new(config);
    // An import killed before it could clean up (a crash, `kill -9`, a closed SSH session,
    // a daemon that died mid-conversion) left its staging folder, gigabytes for a real SD,
    // and nothing carries on from it (a re-run starts over). The next import is where it goes: the command
    // that needs the room, on the box where the crash happened, CLI or daemon alike.
    // Pulls' partial downloads and running imports (this daemon's too) stay.
    for stale in store.remove_stale_imports() {
        progress(0, 0, &stale.to_string());
    }
    if !import::needs_conversion(&p.path) && p.loras.is_empty() && !p.fp16 && p.prediction.is_none() {
        // Loaded where it lies before a byte is copied: installed means usable.
        let plan = store.import(&p.path, p.name.as_deref(), p.kind, via, |plan| {
            progress(0, 0, &format!("loading {} as {} model", plan.load_from.display(), a_kind(plan.manifest.kind)));
            check_loads(engine, device, plan.manifest.kind, &plan.load_from).map_err(|source| ImportError::Unusable {
                input: p.path.clone(),
                kind: plan.manifest.kind,
                source: Box::new(source),
            })
        })?;
        let m = plan.manifest;
        let dir = store.model_dir(&m.name);
        return Ok(ImportReport {
            name: m.name,
            kind: m.kind,
            dir,
            files: m.files.len(),
            left_out: plan.left_out,
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
        kind: p.kind,
    };
    let forward = |c: ConvertProgress| progress(c.step, c.total, &c.message);
    let conv = match embedding::safetensors_embedding(p, &req.name)? {
        Some(e) => embedding::stage(&store, &req, &e)?,
        None => convert::convert(config, &store, &req, &forward, canceled)?,
    };
    // The converter refuses another kind before exporting; this holds its result to it.
    if let Some(k) = p.kind
        && k != conv.kind
    {
        return Err(ImportError::Refused {
            input: p.path.clone(),
            reason: format!("is {} model ({}), not {}", a_kind(conv.kind), conv.result.format, k.as_str()),
        });
    }
    // An embedding read here from its safetensors has no PyTorch reading to compare with.
    let check = if conv.result.check.is_empty() && conv.kind == ModelKind::Embedding {
        progress(0, 0, &format!("read {}", conv.result.summary));
        None
    } else {
        Some(checked((engine, device), &conv, (p, via), progress)?)
    };
    let format = conv.result.format.clone();
    let report = check.as_ref().map(|c| serde_json::to_value(c).unwrap_or_default()).unwrap_or_default();
    // Canceled during the self-check: the staging folder goes with `conv`.
    if canceled() {
        return Err(ConvertError::Canceled.into());
    }
    let m = conv.install(&store, &report)?;
    let dir = store.model_dir(&m.name);
    Ok(ImportReport {
        name: m.name,
        kind: m.kind,
        dir,
        files: m.files.len(),
        left_out: Vec::new(),
        converted_from: Some(format),
        self_check: check,
    })
}

/// The self-check of `conv`: the converter's reference inputs through reelbox's own
/// pipeline, refused past the tolerance.
fn checked(
    (engine, device): (&Engine, DeviceId),
    conv: &Conversion,
    (p, via): (&ImportParams, Via),
    progress: &dyn Fn(u64, u64, &str),
) -> Result<SelfCheck, ImportError> {
    progress(0, 0, "self-check: the same inputs through PyTorch and reelbox's pipeline");
    let check = self_check(engine, device, conv);
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
            fp16: p.fp16.then_some(via),
        });
    }
    progress(0, 0, &format!("self-check passed: largest difference {:e} on {}", check.max_abs_diff, check.compared));
    Ok(check)
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
        ModelKind::Embedding => return embedding::check(conv, tolerance),
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

    fn runs_on_head(&self) -> bool {
        true
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<ImportParams, ParamError> {
        let request = ImportRequest::from_json(params)?;
        // A relative path would be read from wherever the daemon happens to run.
        let paths = request.path.iter().map(|p| ("path", p)).chain(request.loras.iter().map(|l| ("loras", l)));
        if let Some((field, file)) = paths.into_iter().find(|(_, f)| !f.trim().is_empty() && Path::new(f).is_relative())
        {
            return Err(ParamError::new(
                field,
                format!("{file}: give the absolute path on the daemon's machine (it starts with /)"),
            ));
        }
        let p = request.resolve()?;
        // A name that is installed is refused now rather than by the job (the old model
        // stays either way); a copied folder's own name is known only once it is read.
        let name = p.name.clone().or_else(|| {
            if import::needs_conversion(&p.path) {
                Some(convert::default_name(&p.path))
            } else {
                p.path.is_file().then(|| import::default_file_name(&p.path, p.kind))
            }
        });
        if let Some(name) = name {
            // Taken and let go at once: refused while installed or while another import
            // (or pull) of the name runs; one queued meanwhile is refused by its job.
            ModelStore::new(ctx.config)
                .claim_name(&name, &p.path)
                .map_err(|e| ParamError::new("name", e.to_string()))?;
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
        let canceled = || run.cancel.is_cancelled();
        let report = import_model(run.config, run.engine, run.device, p, Via::Api, &progress, &canceled)?;
        run.sink.log("info", &format!("{} installed at {}", report.name, report.dir.display()));
        if !report.left_out.is_empty() {
            run.sink.log("info", &format!("left out (not part of the model): {}", report.left_out.join(", ")));
        }
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
    fn a_float16_mismatch_says_to_import_without_fp16_as_the_asker_sets_it() {
        let mismatch = |fp16| ImportError::Mismatch {
            input: PathBuf::from("/m/sd"),
            compared: "a tile".into(),
            max_abs_diff: 2.2,
            tolerance: FP16_TOLERANCE,
            fp16,
        };
        let said = |fp16| mismatch(fp16).to_string();
        assert!(
            said(Some(Via::Cli))
                .ends_with("nothing was installed; float16 weights move this model too far: import it without --fp16")
        );
        assert!(said(Some(Via::Api)).ends_with(r#"import it with "fp16": false"#), "{}", said(Some(Via::Api)));
        assert!(said(None).ends_with("nothing was installed"), "{}", said(None));
    }
}

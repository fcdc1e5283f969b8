//! The `model_import` request: what a client sends ([`ImportRequest`]), checked into what
//! the job stores ([`ImportParams`]). Everything that can be refused before the converter
//! starts is refused here, naming the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::ParamError;
use super::super::fields::{reject_unknown, string_field};
use crate::models::{ModelKind, import, manifest};

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
            return Err(ParamError::new("name", format!("{n:?} {}", manifest::NAME_RULE)));
        }
        let kind = match self.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(
                ModelKind::parse(k)
                    .ok_or_else(|| ParamError::new("kind", format!("{k:?} is not one of {}", ModelKind::names())))?,
            ),
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
        let fp16 = self.fp16.unwrap_or(false);
        // They would send ONNX files to the converter, which reads PyTorch weights only.
        let conversion_only = [("loras", !loras.is_empty()), ("fp16", fp16), ("prediction", prediction.is_some())];
        if let Some((field, _)) = conversion_only.iter().find(|(_, set)| *set)
            && import::is_onnx(&path)
        {
            return Err(ParamError::new(
                *field,
                format!(
                    "{}: ONNX files are copied as they are; this applies to checkpoints that are converted \
                     (.safetensors, .ckpt, .pth, a diffusers folder)",
                    path.display()
                ),
            ));
        }
        if prediction.is_some() && import::is_diffusers_folder(&path) {
            return Err(ParamError::new(
                "prediction",
                format!(
                    "{}: a diffusers folder's scheduler/scheduler_config.json says its prediction type; \
                     this is for single files",
                    path.display()
                ),
            ));
        }
        // Last, so a flag that cannot apply is named first; before the converter's
        // environment (PyTorch, gigabytes on first use) is made for a file that is no
        // checkpoint at all.
        if path.is_file() && import::needs_conversion(&path) {
            import::check_checkpoint(&path).map_err(|e| ParamError::new("path", e.to_string()))?;
        }
        for (file, _) in &loras {
            import::check_checkpoint(file).map_err(|e| ParamError::new("loras", e.to_string()))?;
        }
        Ok(ImportParams { path, name, kind, loras, fp16, prediction })
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
        return refuse("a checkpoint converts to a diffusion, lipsync, upscale or embedding model");
    }
    if kind == ModelKind::Embedding && !(path.is_file() && super::embedding::is_embedding_file(path)) {
        return refuse("an embedding is one .safetensors, .pt or .bin file");
    }
    Ok(())
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

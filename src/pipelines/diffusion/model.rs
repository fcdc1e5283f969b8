//! A Stable Diffusion model directory in the optimum / diffusers ONNX layout: what it
//! contains (read cheaply from its JSON files, for validation) and its loaded parts with
//! their tensor interfaces (read from the sessions, for running).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::onnx::{Part, TensorInfo};
use super::samplers::{SchedulerChoice, SchedulerConfigFile};
use super::text_encoder::TextEncoder;
use super::text_encoder::clip_skip_refused;
use super::tokenizer::ClipTokenizer;
use super::{ConfigCause, DiffusionError};
use crate::engine::Engine;
use crate::gpu::DeviceId;

/// SD 1.x/2.x (one text encoder) or SDXL (two, plus pooled embeds and time ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Family {
    Sd,
    Sdxl,
}

impl Family {
    /// The clip skip its models read prompts at by their own: the last layer (1) for SD
    /// 1.x/2.x, the penultimate (2) for SDXL.
    pub fn own_clip_skip(self) -> u32 {
        match self {
            Family::Sd => 1,
            Family::Sdxl => 2,
        }
    }
}

/// What a model directory holds, read from its JSON files without loading any weights.
/// A worker box's heartbeat carries it (without `dir`, a path on that box), so a head that
/// lacks the model checks and fills a request with it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    pub name: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub family: Family,
    /// Side in pixels the model was trained at (UNet `sample_size` × VAE factor).
    pub native_size: u32,
    /// Pixels per latent cell (8 for every released SD VAE).
    pub vae_scale: u32,
    /// Channels of a latent cell (the VAE's `latent_channels`; 4 for SD 1.x/2.x and SDXL).
    #[serde(default = "four_channels")]
    pub latent_channels: u32,
    pub vae_scaling_factor: f32,
    pub scheduler_config: SchedulerConfigFile,
    /// The model's own scheduler when reelbox implements it.
    pub default_scheduler: Option<SchedulerChoice>,
    /// SDXL: an absent negative prompt means zero embeddings rather than `""`.
    pub force_zeros_for_empty_prompt: bool,
    pub has_vae_encoder: bool,
    /// LCM-distilled UNets take guidance as an embedding of this size.
    pub time_cond_proj_dim: Option<u64>,
    /// Layers of its (first) text encoder, as its config says them.
    #[serde(default)]
    pub text_layers: Option<u32>,
    /// Its text encoder exports every layer's output, so clip skip reads any: SDXL's always
    /// (it conditions on one before the last), SD 1.x/2.x's where reelbox's converter made it
    /// (its `conversion.json` says so).
    #[serde(default)]
    pub every_text_layer: bool,
    /// Its text encoders' widths (`hidden_size`), as their configs say them; empty where
    /// they say none.
    #[serde(default)]
    pub text_widths: Vec<usize>,
    /// Its text encoders take embeddings' vectors (reelbox's converter made them; its
    /// `conversion.json` says so).
    #[serde(default)]
    pub takes_embeddings: bool,
}

fn read_json(path: &Path) -> Result<Option<Value>, DiffusionError> {
    if !path.is_file() {
        return Ok(None);
    }
    let cfg = |source: ConfigCause| DiffusionError::Config { path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(|e| cfg(e.into()))?;
    parse_json_lenient(&text).map(Some).map_err(|e| cfg(e.into()))
}

/// Parses JSON as Python's `json` module writes it: diffusers saves configs with bare
/// `Infinity`, `-Infinity` and `NaN` (e.g. `"lambda_min_clipped": -Infinity`), which
/// strict JSON lacks. They become `null`, i.e. "use the default", which is what those
/// values mean in every config reelbox reads.
pub fn parse_json_lenient(text: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let mut out = String::with_capacity(text.len());
            let (mut in_string, mut escaped) = (false, false);
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if in_string {
                    in_string = escaped || c != '"';
                    escaped = !escaped && c == '\\';
                } else if c == '"' {
                    in_string = true;
                } else if let Some(word) = ["-Infinity", "Infinity", "NaN"].iter().find(|w| rest.starts_with(**w)) {
                    out.push_str("null");
                    rest = &rest[word.len()..];
                    continue;
                }
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
            serde_json::from_str(&out).map_err(|_| first)
        }
    }
}

/// The latent channels of a model whose VAE config says none (a worker's heartbeat from
/// before it did): every released SD VAE's.
fn four_channels() -> u32 {
    4
}

/// A tokenizer folder holds `vocab.json` + `merges.txt` or a `tokenizer.json`.
fn require_tokenizer(model: &str, dir: &Path, part: &'static str) -> Result<(), DiffusionError> {
    if dir.join(part).join("tokenizer.json").is_file() {
        return Ok(());
    }
    require(model, dir, part, "vocab.json")?;
    require(model, dir, part, "merges.txt").map(drop)
}

fn require(model: &str, dir: &Path, part: &'static str, file: &str) -> Result<PathBuf, DiffusionError> {
    let path = dir.join(part).join(file);
    if path.is_file() { Ok(path) } else { Err(DiffusionError::MissingPart { model: model.to_string(), part, path }) }
}

impl ModelInfo {
    /// Reads `dir`'s `model_index.json`, configs and file list; errors name the missing part.
    /// Web exports (`microsoft/sd-turbo-webnn`) ship only the ONNX files and a tokenizer:
    /// without `model_index.json` the family comes from the folders, without a scheduler
    /// config the defaults below apply.
    pub fn inspect(dir: &Path) -> Result<Self, DiffusionError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let index = read_json(&dir.join("model_index.json"))?.unwrap_or(Value::Null);
        let class = index.get("_class_name").and_then(Value::as_str).unwrap_or("");
        let family =
            if class.contains("XL") || index.get("text_encoder_2").is_some() || dir.join("text_encoder_2").is_dir() {
                Family::Sdxl
            } else {
                Family::Sd
            };
        require(&name, dir, "text_encoder", "model.onnx")?;
        require(&name, dir, "unet", "model.onnx")?;
        require(&name, dir, "vae_decoder", "model.onnx")?;
        require_tokenizer(&name, dir, "tokenizer")?;
        if family == Family::Sdxl {
            require(&name, dir, "text_encoder_2", "model.onnx")?;
            require_tokenizer(&name, dir, "tokenizer_2")?;
        }
        let sched_path = dir.join("scheduler/scheduler_config.json");
        let scheduler_config: SchedulerConfigFile = match read_json(&sched_path)? {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| DiffusionError::Config { path: sched_path.clone(), source: e.into() })?,
            // Euler with Stable Diffusion's training betas (every SD 1.x/2.x/XL config
            // says these; the samplers' own defaults are diffusers' class defaults, which
            // are not) and trailing timesteps: the spacing few-step distilled exports need
            // (1 step = t 999, as SD-Turbo's own config says), and the one diffusers
            // recommends for SD models since "Common Diffusion Noise Schedules and Sample
            // Steps Are Flawed".
            None => SchedulerConfigFile {
                class_name: Some("EulerDiscreteScheduler".into()),
                num_train_timesteps: Some(1000),
                beta_start: Some(0.00085),
                beta_end: Some(0.012),
                beta_schedule: Some("scaled_linear".into()),
                prediction_type: Some("epsilon".into()),
                timestep_spacing: Some("trailing".into()),
                ..SchedulerConfigFile::default()
            },
        };
        let default_scheduler =
            scheduler_config.class_name.as_deref().and_then(|c| SchedulerChoice::from_class_name(c, &scheduler_config));

        let vae_cfg = match read_json(&dir.join("vae_decoder/config.json"))? {
            Some(v) => Some(v),
            None => read_json(&dir.join("vae/config.json"))?,
        };
        let default_scaling = if family == Family::Sdxl { 0.13025 } else { 0.18215 };
        let vae_scaling_factor = vae_cfg
            .as_ref()
            .and_then(|v| v.get("scaling_factor"))
            .and_then(Value::as_f64)
            .map_or(default_scaling, |f| f as f32);
        let vae_scale = vae_cfg
            .as_ref()
            .and_then(|v| v.get("block_out_channels"))
            .and_then(Value::as_array)
            .map_or(8, |b| 1u32 << b.len().saturating_sub(1).min(6));
        let latent_channels = vae_cfg
            .as_ref()
            .and_then(|v| v.get("latent_channels"))
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or_else(four_channels);
        let unet_cfg = read_json(&dir.join("unet/config.json"))?;
        let conversion = read_json(&dir.join("conversion.json"))?;
        let detail = |key: &str| conversion.as_ref().and_then(|v| v.pointer(&format!("/details/{key}"))?.as_bool());
        let mut text_widths = Vec::new();
        for part in ["text_encoder", "text_encoder_2"].iter().take(if family == Family::Sdxl { 2 } else { 1 }) {
            let width = read_json(&dir.join(part).join("config.json"))?
                .and_then(|v| v.get("hidden_size").and_then(Value::as_u64))
                .and_then(|w| usize::try_from(w).ok());
            text_widths.extend(width);
        }
        let default_native = if family == Family::Sdxl { 1024 } else { 512 };
        let native_size = unet_cfg
            .as_ref()
            .and_then(|v| v.get("sample_size"))
            .and_then(Value::as_u64)
            .map_or(default_native, |s| s as u32 * vae_scale);
        Ok(Self {
            name,
            dir: dir.to_path_buf(),
            family,
            native_size,
            vae_scale,
            latent_channels,
            vae_scaling_factor,
            scheduler_config,
            default_scheduler,
            force_zeros_for_empty_prompt: index
                .get("force_zeros_for_empty_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            has_vae_encoder: dir.join("vae_encoder/model.onnx").is_file(),
            time_cond_proj_dim: unet_cfg.as_ref().and_then(|v| v.get("time_cond_proj_dim")).and_then(Value::as_u64),
            text_layers: read_json(&dir.join("text_encoder/config.json"))?
                .and_then(|v| v.get("num_hidden_layers").and_then(Value::as_u64))
                .and_then(|l| u32::try_from(l).ok()),
            every_text_layer: family == Family::Sdxl || detail("every_text_layer").unwrap_or(false),
            text_widths,
            takes_embeddings: detail("takes_embeddings").unwrap_or(false),
        })
    }
}

impl ModelInfo {
    /// The deepest clip skip its text encoder reads prompts at, as far as its files say: its
    /// own where it gives that layer only; none where its depth is not known.
    pub fn max_clip_skip(&self) -> Option<u32> {
        if self.every_text_layer { self.text_layers } else { Some(self.family.own_clip_skip()) }
    }

    /// Whether its text encoders take `e`, as far as its files say without loading them.
    pub fn takes(&self, e: &super::embedding::Embedding) -> bool {
        let encoders = if self.family == Family::Sdxl { 2 } else { 1 };
        self.takes_embeddings && self.text_widths.len() == encoders && e.fits(self.family, &self.text_widths)
    }

    /// Whether its text encoder reads prompts at clip skip `skip` ([`TextEncoder::hidden_for`]),
    /// as far as its files say without loading it.
    pub fn check_clip_skip(&self, skip: u32) -> Result<(), DiffusionError> {
        match self.max_clip_skip() {
            Some(most) if skip > most && skip != self.family.own_clip_skip() => {
                Err(clip_skip_refused("text_encoder", skip, self.every_text_layer.then_some(most)))
            }
            _ => Ok(()),
        }
    }

    /// Why a latent this model's VAE made is not one `other` can sample on, if it is not:
    /// their latent spaces differ when their cells have other channels, other pixels per cell
    /// or another scaling factor (SD 1.x and 2.x fine-tunes share one; SDXL's VAE has its own).
    pub fn latent_mismatch(&self, other: &ModelInfo) -> Option<String> {
        let (a, b) = (self, other);
        if a.latent_channels != b.latent_channels {
            return Some(format!(
                "{}'s latent cells have {} channels, {}'s {}",
                a.name, a.latent_channels, b.name, b.latent_channels
            ));
        }
        if a.vae_scale != b.vae_scale {
            return Some(format!("{}'s latent cells are {} pixels, {}'s {}", a.name, a.vae_scale, b.name, b.vae_scale));
        }
        if (a.vae_scaling_factor - b.vae_scaling_factor).abs() > 1e-6 {
            return Some(format!(
                "{}'s VAE scales its latents by {}, {}'s by {}: another latent space",
                a.name, a.vae_scaling_factor, b.name, b.vae_scaling_factor
            ));
        }
        None
    }
}

/// The UNet's interface.
pub struct Unet {
    pub part: Part,
    pub sample: TensorInfo,
    pub timestep: TensorInfo,
    pub hidden: TensorInfo,
    pub text_embeds: Option<TensorInfo>,
    pub time_ids: Option<TensorInfo>,
    /// LCM's guidance embedding input.
    pub timestep_cond: Option<TensorInfo>,
    pub output: usize,
    pub latent_channels: usize,
}

impl Unet {
    fn new(part: Part, family: Family) -> Result<Self, DiffusionError> {
        let bad = |reason: String| DiffusionError::Interface { part: "unet", reason };
        let find = |names: &[&str]| names.iter().find_map(|n| part.input(n)).cloned();
        let sample = find(&["sample"])
            .or_else(|| part.inputs.iter().find(|t| t.shape.len() == 4).cloned())
            .ok_or_else(|| bad("no sample input".into()))?;
        let timestep = find(&["timestep", "timesteps", "t"]).ok_or_else(|| bad("no timestep input".into()))?;
        let hidden = find(&["encoder_hidden_states"])
            .or_else(|| part.inputs.iter().find(|t| t.shape.len() == 3).cloned())
            .ok_or_else(|| bad("no encoder_hidden_states input".into()))?;
        let text_embeds = find(&["text_embeds"]);
        let time_ids = find(&["time_ids"]);
        if family == Family::Sdxl && (text_embeds.is_none() || time_ids.is_none()) {
            return Err(bad("SDXL UNet must take text_embeds and time_ids".into()));
        }
        let output = part.outputs.iter().position(|o| o.name == "out_sample" || o.name == "latent").unwrap_or(0);
        if part.outputs.is_empty() {
            return Err(bad("has no outputs".into()));
        }
        let latent_channels = sample.fixed(1).unwrap_or(4);
        Ok(Self {
            timestep_cond: find(&["timestep_cond"]),
            part,
            sample,
            timestep,
            hidden,
            text_embeds,
            time_ids,
            output,
            latent_channels,
        })
    }

    /// Largest batch one run takes (the export may fix it at 1).
    pub fn max_batch(&self) -> usize {
        self.sample.fixed(0).unwrap_or(usize::MAX)
    }
}

/// A loaded model: tokenizers, sessions and interfaces, shared between runs.
pub struct SdModel {
    pub info: ModelInfo,
    pub tokenizer: ClipTokenizer,
    pub tokenizer_2: Option<ClipTokenizer>,
    pub text_encoder: TextEncoder,
    pub text_encoder_2: Option<TextEncoder>,
    pub unet: Unet,
    pub vae_decoder: Part,
    pub vae_encoder: Option<Part>,
    /// Most items one UNet run takes. On the CPU, ONNX Runtime's attention holds every
    /// head's T×T scores (T = latent cells), so a run's memory grows with its batch: there
    /// each item (each image, each half of the guidance pair) runs alone and a job's peak
    /// is one item's whatever its `n` (`kinds::memory::cpu_picture_mib`). GPUs use
    /// memory-efficient attention and keep the export's batch.
    pub unet_batch: usize,
}

impl SdModel {
    /// Loads every part of `dir` on `device` through the engine's session cache.
    pub fn load(dir: &Path, engine: &Engine, device: DeviceId) -> Result<Self, DiffusionError> {
        let info = ModelInfo::inspect(dir)?;
        let session =
            |part: &'static str| -> Result<Part, DiffusionError> {
                let s = engine
                    .session(&dir.join(part).join("model.onnx"), device)
                    .map_err(|e| DiffusionError::Engine { model: info.name.clone(), part, source: Box::new(e) })?;
                Part::new(part, s)
            };
        let tokenizer = ClipTokenizer::load(&dir.join("tokenizer"))?;
        let text_encoder = TextEncoder::new(session("text_encoder")?, info.family, false)?;
        let (tokenizer_2, text_encoder_2) = if info.family == Family::Sdxl {
            (
                Some(ClipTokenizer::load(&dir.join("tokenizer_2"))?),
                Some(TextEncoder::new(session("text_encoder_2")?, info.family, true)?),
            )
        } else {
            (None, None)
        };
        let unet = Unet::new(session("unet")?, info.family)?;
        // An export with a fixed batch runs that many (padded) whatever it is given.
        let unet_batch = if device.is_gpu() { unet.max_batch() } else { unet.sample.fixed(0).unwrap_or(1) };
        let vae_decoder = session("vae_decoder")?;
        let vae_encoder = if info.has_vae_encoder { Some(session("vae_encoder")?) } else { None };
        tracing::debug!(model = %info.name, family = ?info.family, native = info.native_size, "loaded diffusion model");
        Ok(Self {
            info,
            tokenizer,
            tokenizer_2,
            text_encoder,
            text_encoder_2,
            unet,
            vae_decoder,
            vae_encoder,
            unet_batch,
        })
    }

    /// Checks an output size against the model: a multiple of the VAE factor, at least one
    /// latent cell of 8, at most `max_side`, and equal to the export's size where it is fixed.
    pub fn check_size(&self, width: u32, height: u32, max_side: u32) -> Result<(), DiffusionError> {
        check_size(&self.info, Some(&self.unet.sample), width, height, max_side)
    }
}

/// Size rules shared by validation (no sessions yet) and the pipeline (with the UNet's
/// fixed axes, when known).
pub fn check_size(
    info: &ModelInfo,
    sample: Option<&TensorInfo>,
    width: u32,
    height: u32,
    max_side: u32,
) -> Result<(), DiffusionError> {
    let f = info.vae_scale;
    let min = 8 * f;
    for (field, v, axis) in [("width", width, 3), ("height", height, 2)] {
        if v % f != 0 {
            return Err(DiffusionError::Request { field, message: format!("must be a multiple of {f}, got {v}") });
        }
        if v < min || v > max_side {
            return Err(DiffusionError::Request {
                field,
                message: format!("must be between {min} and {max_side}, got {v}"),
            });
        }
        if let Some(fixed) = sample.and_then(|s| s.fixed(axis))
            && fixed as u32 * f != v
        {
            return Err(DiffusionError::Request {
                field,
                message: format!("model {} is exported for {} pixels only, got {v}", info.name, fixed as u32 * f),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_infinities_read_as_defaults() {
        let v = parse_json_lenient(r#"{"a": -Infinity, "b": "NaN -Infinity \" x", "c": [NaN, 1.5]}"#).expect("lenient");
        assert_eq!(v["a"], Value::Null);
        assert_eq!(v["b"], "NaN -Infinity \" x");
        assert_eq!(v["c"][0], Value::Null);
        assert_eq!(v["c"][1], 1.5);
    }
}

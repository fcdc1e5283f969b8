//! GPU memory a job reserves on the GPU placement gives it: the weights its models load
//! plus room for activations, so a reservation is about what NVML then shows the job's
//! sessions take (measured on an H200: see README "GPU"). Kinds that run well on the CPU
//! (speech) reserve nothing and may spill there; the rest reserve their estimate and wait
//! for a GPU on boxes that have one.
//!
//! On the CPU a picture's memory is not linear: ONNX Runtime's CPU attention holds every
//! head's T×T scores (T = latent cells, `(w/8)·(h/8)`), so it grows with the square of the
//! pixels ([`cpu_picture_mib`]); a box making pictures there holds them to
//! [`cpu_budget_mib`] (`limits.cpu_memory_mib`) with [`check_on_cpu`]: the daemon when a job
//! is sent, every box (worker boxes too) before the stage that makes one on its CPU, and
//! `reelbox image --local`.

use std::path::Path;

use crate::config::Config;
use crate::kinds::{ParamError, StageName};

/// Working memory besides weights a session takes on a GPU at its first run (ONNX
/// Runtime's arena rounds allocations up; cuDNN and cuBLAS take workspaces), MiB.
pub const WORKSPACE_MIB: u64 = 256;

/// Activation memory of a Stable Diffusion UNet + VAE per megapixel of output, MiB
/// (attention over the latent grid dominates; SD 1.5 at 512² measures ~0.2 GiB).
const DIFFUSION_MIB_PER_MEGAPIXEL: f64 = 768.0;

const MIB: u64 = 1 << 20;

/// Bytes of ONNX weights under `dir` (graphs and their external data files).
pub fn weights_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                return weights_bytes(&path);
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let weights =
                name.ends_with(".onnx") || name.ends_with("_data") || name.ends_with(".data") || name.ends_with(".pb");
            if weights { e.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 }
        })
        .sum()
}

/// What one image job at `width`×`height` (`n` images) on diffusion model `model` reserves.
pub fn diffusion_mib(config: &Config, model: &str, width: u32, height: u32, n: u32) -> u64 {
    let megapixels = f64::from(width) * f64::from(height) / 1e6 * f64::from(n.max(1));
    model_weights_mib(config, model) + WORKSPACE_MIB + (megapixels * DIFFUSION_MIB_PER_MEGAPIXEL).ceil() as u64
}

/// The daemon's peak memory making one picture on the CPU besides the model's weights,
/// per latent cell and per latent cell squared (the attention scores: ~8 heads of f32,
/// the softmax's output beside them, as in Stable Diffusion 1.x, whose shape the demo
/// model has). Fitted to the daemon's VmHWM making one demo-shapes image (2 steps, 2
/// cores): 64² 84 MiB, 256² 181, 384² 503, 512² 1288, 640² 2994 (512² with n = 2: 1386,
/// one image at a time) → 108 MiB + 5982 B·T + 72.9 B·T²; rounded up, so these give
/// 5–15% more than measured.
const CPU_BYTES_PER_CELL: f64 = 8192.0;
const CPU_BYTES_PER_CELL_SQUARED: f64 = 76.0;
/// The daemon with ONNX Runtime loaded and a model's sessions open, before activations.
const CPU_BASE_MIB: u64 = 128;

/// What the system keeps of the box's memory when `limits.cpu_memory_mib` is 0: an eighth,
/// at least this much, MiB.
const CPU_SYSTEM_MIB: u64 = 1024;

/// Memory making one `width`×`height` picture with diffusion model `model` takes on the
/// CPU, MiB (a job makes its pictures one at a time there, so this is a job's whatever
/// its `n`).
pub fn cpu_picture_mib(config: &Config, model: &str, width: u32, height: u32) -> u64 {
    let (fixed, halvings) = cpu_model_terms(config, model);
    fixed + activations_mib(width, height, halvings)
}

/// What a picture's CPU memory takes from its model whatever its size: the weights and
/// base (MiB), and where the UNet's attention starts ([`attention_halvings`]). Each reads
/// the model's folder, so a caller sizing several pictures reads it once.
fn cpu_model_terms(config: &Config, model: &str) -> (u64, u32) {
    (model_weights_mib(config, model) + CPU_BASE_MIB, attention_halvings(config, model))
}

/// How many times the UNet halves the latent grid before its first attention: 0 for SD 1.x
/// and 2.x (attention at full size, what the figures above measure), 1 for SDXL, whose first
/// down block has none (`DownBlock2D`), so its scores are a sixteenth as many. Read from the
/// export's `unet/config.json` (diffusers' layout); 0 when it is not there.
fn attention_halvings(config: &Config, model: &str) -> u32 {
    if !crate::models::manifest::valid_name(model) {
        return 0;
    }
    let path = crate::models::model_dir(config, model).join("unet").join("config.json");
    let Ok(text) = std::fs::read_to_string(path) else { return 0 };
    let Ok(unet) = serde_json::from_str::<serde_json::Value>(&text) else { return 0 };
    let Some(blocks) = unet["down_block_types"].as_array() else { return 0 };
    let plain = blocks.iter().take_while(|b| b.as_str().is_some_and(|b| !b.contains("Attn"))).count();
    // A UNet with no attention at all has no quadratic term worth counting past its last level.
    u32::try_from(plain).unwrap_or(0).min(3)
}

/// Weights of installed model `model`, MiB. Placement asks this per queued job: the
/// model's directory is enough (no catalog scan); a missing one weighs nothing and the job
/// fails its own lookup.
fn model_weights_mib(config: &Config, model: &str) -> u64 {
    let named = crate::models::manifest::valid_name(model);
    let weights = if named { weights_bytes(&crate::models::model_dir(config, model)) } else { 0 };
    // On a head, a model only a worker box has weighs what that box said.
    let weights = if weights == 0 { super::box_models::weights_bytes(model) } else { weights };
    weights.div_ceil(MIB)
}

fn activations_mib(width: u32, height: u32, halvings: u32) -> u64 {
    let cells = f64::from(width / 8) * f64::from(height / 8);
    let attended = cells / f64::from(4u32.pow(halvings));
    ((cells * CPU_BYTES_PER_CELL + attended * attended * CPU_BYTES_PER_CELL_SQUARED) / MIB as f64).ceil() as u64
}

/// Memory jobs on this box's CPU may use together, MiB: `limits.cpu_memory_mib`, or
/// when that is 0 the box's total less an eighth (at least [`CPU_SYSTEM_MIB`]) for the
/// system and other programs.
pub fn cpu_budget_mib(config: &Config) -> u64 {
    match config.limits.cpu_memory_mib {
        0 => crate::gpu::host::mem_total_mib()
            .map_or(u64::MAX, |total| total.saturating_sub((total / 8).max(CPU_SYSTEM_MIB))),
        set => set,
    }
}

/// The largest picture a job makes with a diffusion model, and the request fields that set
/// its size (an error about it names them).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuPicture {
    pub model: String,
    pub width: u32,
    pub height: u32,
    /// The fields of the width and the height (`width`, `keyframe_width`, ...).
    pub fields: (&'static str, &'static str),
    /// The job's stage that makes it (`generate`, a render's `keyframes`): the one checked
    /// on the CPU of the box it runs on.
    pub stage: StageName,
}

impl CpuPicture {
    /// Memory it takes on the CPU, MiB.
    pub fn mib(&self, config: &Config) -> u64 {
        cpu_picture_mib(config, &self.model, self.width, self.height)
    }

    /// Whether the working memory making it takes on the CPU, which ONNX Runtime's arena
    /// keeps while its model's sessions stay loaded, outweighs the model's weights and
    /// passes [`KEPT_WORKING_MIB`]: its sessions then go once the box idles
    /// (`Engine::release_when_idle`), since holding that memory for the keep-alive costs
    /// more than loading the weights again takes (SD-Turbo's 512² keeps its sessions, its
    /// 1024² lets them go).
    pub fn outweighs_its_model(&self, config: &Config) -> bool {
        let (fixed, halvings) = cpu_model_terms(config, &self.model);
        let weights = fixed.saturating_sub(CPU_BASE_MIB);
        activations_mib(self.width, self.height, halvings) > weights.max(KEPT_WORKING_MIB)
    }
}

/// Working memory a model's idle sessions may keep for the keep-alive whatever its
/// weights, MiB: about a 336² picture's of SD 1.x's shape (below it, loading a small model
/// again would cost more than the memory is worth).
const KEPT_WORKING_MIB: u64 = 256;

/// Refuses a picture that needs more memory than jobs may use on this box's CPU
/// ([`cpu_budget_mib`]), naming its larger side's field and the largest size of the same
/// shape that fits. Past it, the kernel's OOM killer would end the whole process. The one
/// check: the daemon's at submission (`Scheduler::check_ram`), each box's before the stage
/// that makes the picture on its CPU (a worker box's memory is not known to the head that
/// placed it there), and `reelbox image --local`'s before it loads the model.
pub fn check_on_cpu(config: &Config, picture: &CpuPicture) -> Result<(), ParamError> {
    check_cpu_picture(config, picture, cpu_budget_mib(config))
}

/// Refuses a picture that needs more than `budget_mib` on the CPU (see [`check_on_cpu`]).
fn check_cpu_picture(config: &Config, picture: &CpuPicture, budget_mib: u64) -> Result<(), ParamError> {
    let CpuPicture { width, height, fields, .. } = *picture;
    let (fixed, halvings) = cpu_model_terms(config, &picture.model);
    let need = fixed + activations_mib(width, height, halvings);
    if need <= budget_mib {
        return Ok(());
    }
    // The largest picture of this shape that fits: sides in steps of 8, scaled together.
    let fits = |k: u32| {
        let (w, h) = scaled((width, height), k);
        w >= 8 && h >= 8 && fixed + activations_mib(w, h, halvings) <= budget_mib
    };
    let largest = (1..=1024u32).rev().find(|&k| fits(k)).map(|k| scaled((width, height), k));
    let room = match largest {
        Some((w, h)) => format!("the largest {} that fits is {w}×{h}", if w == h { "square" } else { "of this shape" }),
        None => "no picture of this model fits; raise limits.cpu_memory_mib or add a GPU".into(),
    };
    let field = if height > width { fields.1 } else { fields.0 };
    Err(ParamError::new(
        field,
        format!(
            "a {width}×{height} picture needs about {need} MiB of memory on this box's CPU, which lets jobs use \
             {budget_mib} MiB (limits.cpu_memory_mib); {room}"
        ),
    ))
}

/// `(width, height)` scaled so the larger side is `k`·8 pixels, each side a multiple of 8.
fn scaled((width, height): (u32, u32), k: u32) -> (u32, u32) {
    let long = width.max(height).max(1);
    let side = |v: u32| (u64::from(v) * u64::from(k) * 8 / u64::from(long)) as u32 / 8 * 8;
    (side(width), side(height))
}

/// What a job on one single-file model (upscaler, lip-sync) reserves.
pub fn single_model_mib(config: &Config, model: &str) -> u64 {
    let file = crate::models::model_file(config, model);
    crate::engine::model_bytes(&file).div_ceil(MIB) + WORKSPACE_MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_count_graphs_and_external_data_but_not_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("unet")).expect("mkdir");
        std::fs::write(dir.path().join("unet/model.onnx"), vec![0u8; 1000]).expect("write");
        std::fs::write(dir.path().join("unet/model.onnx_data"), vec![0u8; 5000]).expect("write");
        std::fs::write(dir.path().join("unet/config.json"), vec![0u8; 700]).expect("write");
        std::fs::write(dir.path().join("model_index.json"), b"{}").expect("write");
        assert_eq!(weights_bytes(dir.path()), 6000);
    }

    #[test]
    fn a_cpu_picture_grows_with_the_square_of_its_pixels_and_a_refusal_says_what_fits() {
        let config =
            Config { models_dir: Some(std::env::temp_dir().join("reelbox-no-models-here")), ..Config::default() };
        let mib = |side| cpu_picture_mib(&config, "missing", side, side);
        // Measured 1288 and 2994 MiB (module docs): the estimate is a little above.
        assert!((1288..1500).contains(&mib(512)), "{}", mib(512));
        assert!((2994..3400).contains(&mib(640)), "{}", mib(640));
        let picture = |w, h| CpuPicture {
            model: "missing".into(),
            width: w,
            height: h,
            fields: ("width", "height"),
            stage: StageName::Generate,
        };
        assert!(check_cpu_picture(&config, &picture(384, 384), 1000).is_ok());
        let e = check_cpu_picture(&config, &picture(512, 512), 1000).expect_err("too big");
        assert_eq!(e.field, "width");
        assert!(e.message.contains("the largest square that fits is 464×464"), "{}", e.message);
        let e = check_cpu_picture(&config, &picture(512, 1024), 1000).expect_err("too big");
        assert_eq!(e.field, "height");
        assert!(e.message.contains("the largest of this shape that fits is 328×664"), "{}", e.message);
    }

    /// SDXL's first attention is at half the latent grid: its scores are a sixteenth as many,
    /// so a 1024² picture is not refused as if it were SD 1.5's.
    #[test]
    fn a_unet_whose_attention_starts_lower_counts_fewer_scores() {
        let models = tempfile::tempdir().expect("tempdir");
        let config = Config { models_dir: Some(models.path().to_path_buf()), ..Config::default() };
        let unet = |name: &str, blocks: &str| {
            let dir = models.path().join(name).join("unet");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("config.json"), format!(r#"{{"down_block_types": {blocks}}}"#)).expect("write");
        };
        unet("sd15", r#"["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]"#);
        unet("sdxl", r#"["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]"#);
        let sd15 = cpu_picture_mib(&config, "sd15", 1024, 1024);
        assert_eq!(sd15, cpu_picture_mib(&config, "no-config", 1024, 1024));
        let sdxl = cpu_picture_mib(&config, "sdxl", 1024, 1024);
        assert!(sdxl * 8 < sd15, "{sdxl} {sd15}");
    }

    #[test]
    fn a_bigger_picture_reserves_more_and_an_unknown_model_only_activations() {
        let config =
            Config { models_dir: Some(std::env::temp_dir().join("reelbox-no-models-here")), ..Config::default() };
        let small = diffusion_mib(&config, "missing", 512, 512, 1);
        let big = diffusion_mib(&config, "missing", 1024, 1024, 1);
        assert_eq!(small, WORKSPACE_MIB + 202);
        assert!(big > 3 * (small - WORKSPACE_MIB), "{small} {big}");
        assert_eq!(diffusion_mib(&config, "missing", 512, 512, 2) - WORKSPACE_MIB, 2 * (small - WORKSPACE_MIB) - 1);
    }
}

//! GPU memory a job reserves on the GPU placement gives it: the weights its models load
//! plus room for activations, so a reservation is about what NVML then shows the job's
//! sessions take (measured on an H200: see README "GPU"). Kinds that run well on the CPU
//! (speech) reserve nothing and may spill there; the rest reserve their estimate and wait
//! for a GPU on boxes that have one.

use std::path::Path;

use crate::config::Config;

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
    // Placement asks this per queued job: the model's directory is enough (no catalog
    // scan); a missing one weighs nothing and the job fails its own lookup.
    let named = crate::models::manifest::valid_name(model);
    let weights = if named { weights_bytes(&crate::models::model_dir(config, model)) } else { 0 };
    let megapixels = f64::from(width) * f64::from(height) / 1e6 * f64::from(n.max(1));
    weights.div_ceil(MIB) + WORKSPACE_MIB + (megapixels * DIFFUSION_MIB_PER_MEGAPIXEL).ceil() as u64
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

//! `reelbox setup --models real`: a set of real models sized to the box, chosen by its
//! largest GPU's memory (or the CPU), shown with its download size and licences before
//! anything is pulled; once pulled, each becomes the default of its kind.

use serde::Serialize;

use crate::models::{ModelError, ModelStore};

/// The largest GPU (MiB) at which SDXL-Turbo's fp32 UNet (~10 GB of weights) fits with
/// room for activations; below it SD-Turbo.
const SDXL_MIN_MIB: u64 = 16 * 1024;
/// The smallest GPU SD-Turbo's CUDA export is chosen for.
const SD_TURBO_CUDA_MIN_MIB: u64 = 4 * 1024;

/// Names of the real set for a box whose largest GPU has `largest_gpu_mib` (None: no GPU).
pub fn real_set(largest_gpu_mib: Option<u64>) -> Vec<&'static str> {
    let diffusion = match largest_gpu_mib {
        Some(m) if m >= SDXL_MIN_MIB => "sdxl-turbo",
        Some(m) if m >= SD_TURBO_CUDA_MIN_MIB => "sd-turbo-cuda",
        _ => "sd-turbo",
    };
    vec![crate::pipelines::tts::DEFAULT_VOICE, diffusion, "wav2lip", "realesrgan-x4", "ultraface-320"]
}

/// One model of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedModel {
    pub name: String,
    pub kind: &'static str,
    /// Bytes the pull downloads (the catalog's estimate for whole folders); 0 when installed.
    pub download: u64,
    pub license: Option<String>,
    /// The licence forbids commercial use: pulling needs it accepted.
    pub noncommercial: bool,
    pub installed: bool,
}

/// What pulling `names` would download.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub models: Vec<PlannedModel>,
}

impl Plan {
    /// Looks up each model's manifest; an unknown name is an error naming the known ones.
    pub fn of(store: &ModelStore, names: &[&str]) -> Result<Self, ModelError> {
        let mut models = Vec::new();
        for name in names {
            let m = store.manifest(name)?;
            let installed = store.installed_dir(name).is_ok();
            models.push(PlannedModel {
                name: m.name.clone(),
                kind: m.kind.as_str(),
                download: if installed { 0 } else { m.download_size() },
                license: m.license.clone(),
                noncommercial: m.noncommercial,
                installed,
            });
        }
        Ok(Self { models })
    }

    /// Bytes all pulls download together.
    pub fn total_download(&self) -> u64 {
        self.models.iter().map(|m| m.download).sum()
    }

    /// Names in order.
    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diffusion_model_follows_the_largest_gpu() {
        assert_eq!(real_set(None)[1], "sd-turbo");
        assert_eq!(real_set(Some(2048))[1], "sd-turbo");
        assert_eq!(real_set(Some(8192))[1], "sd-turbo-cuda");
        assert_eq!(real_set(Some(24576))[1], "sdxl-turbo");
        assert!(real_set(None).contains(&"wav2lip") && real_set(None).contains(&"ultraface-320"));
    }

    #[test]
    fn every_real_model_has_a_shipped_manifest() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let store = ModelStore::with_dirs(dir.join("target/no-models"), vec![dir.join("models")], Vec::new());
        for gpu in [None, Some(8192), Some(24576)] {
            let plan = Plan::of(&store, &real_set(gpu)).expect("every name is shipped");
            assert!(plan.total_download() > 1_000_000_000, "{gpu:?}: {}", plan.total_download());
        }
    }
}

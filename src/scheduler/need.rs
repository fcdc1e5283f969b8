//! What a job needs from a device, and what one claim scan learns once for all the queued
//! jobs it looks at: the devices' state, and which models are CUDA-only. A scan runs inside
//! the store's write transaction and looks at every queued job until one is taken, so a
//! manifest read per job there would be paid by every submission waiting on that lock.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::Scheduler;
use super::placement::{Candidate, Need};
use crate::kinds::JobKind;
use crate::models::Catalog;
use crate::store::records::Job;

/// One claim scan's shared findings.
#[derive(Default)]
pub(super) struct ClaimPass {
    /// The devices as the scan found them (made on first use).
    pub candidates: OnceLock<Vec<Candidate>>,
    /// Model name → whether its installed manifest says `cuda_only`.
    cuda_only: Mutex<HashMap<String, bool>>,
}

impl ClaimPass {
    /// The first CUDA-only model of `models`; each model's manifest is read once per scan.
    fn cuda_only(&self, s: &Scheduler, models: &[String]) -> Option<String> {
        let mut known = self.cuda_only.lock().unwrap_or_else(|p| p.into_inner());
        models
            .iter()
            .find(|m| {
                *known
                    .entry((*m).clone())
                    .or_insert_with(|| Catalog::cuda_only_of(&s.config, std::slice::from_ref(*m)).is_some())
            })
            .cloned()
    }
}

impl Scheduler {
    /// What a job view shows of its needs: the GPU memory it reserves and the models it
    /// runs (its stored parameters hold the model a profile or default chose at
    /// submission). No manifest is read for it.
    pub fn view_needs(&self, job: &Job) -> (u64, Vec<String>) {
        self.kind_and_params(job)
            .map(|(kind, params)| (kind.vram_mib(&params, &self.config), kind.models(&params)))
            .unwrap_or_default()
    }

    /// What a job needs from a device within a claim scan, sharing the scan's manifest reads.
    pub(super) fn need_in(&self, job: &Job, pass: &ClaimPass) -> Need {
        let Some((kind, params)) = self.kind_and_params(job) else { return Need::default() };
        let models = kind.models(&params);
        Need {
            vram_mib: kind.vram_mib(&params, &self.config),
            cuda_only: pass.cuda_only(self, &models),
            models,
            ram_mib: 0,
        }
    }

    /// The memory a job's picture takes on the CPU, MiB (0: it makes none).
    pub(super) fn ram_need(&self, job: &Job) -> u64 {
        self.kind_and_params(job)
            .and_then(|(kind, params)| kind.cpu_picture(&params, &self.config))
            .map_or(0, |picture| picture.mib(&self.config))
    }

    fn kind_and_params(&self, job: &Job) -> Option<(&dyn JobKind, serde_json::Value)> {
        let kind = self.kinds.get(job.kind.as_str())?;
        Some((kind.as_ref(), serde_json::from_str(&job.params).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::placement::{Candidate, Need, choose, waiting_reason};
    use crate::gpu::DeviceId;
    use crate::kinds::JobKind;
    use crate::kinds::image::Image;

    /// A worker box's GPU with `installed` models.
    fn gpu_with(i: u32, installed: &[&str]) -> Candidate {
        Candidate {
            device: DeviceId::Cuda(i),
            idle_slots: 1,
            running: 0,
            free_mib: Some(24576),
            util: None,
            warm: vec![],
            installed: Some(installed.iter().map(|m| m.to_string()).collect()),
            held: None,
        }
    }

    #[test]
    fn a_second_pass_on_its_own_model_goes_only_to_a_box_that_has_both_models() {
        let stored = json!({"prompt": "a red door", "model": "tiny-sd", "width": 64, "height": 64, "steps": 2,
            "guidance": 7.0, "scheduler": "euler", "seed": 7, "n": 1, "init_image": null, "strength": null,
            "preset": null, "preview_every": 0, "refine": {"model": "tiny-sd-2", "width": 96, "height": 96,
            "strength": 0.6, "steps": 2, "seed": 7, "guidance": 7.0, "scheduler": "euler", "prompt": "a red door",
            "negative_prompt": null}});
        let models = Image.models(&stored);
        assert_eq!(models, ["tiny-sd", "tiny-sd-2"], "the second pass's model is the job's too");
        let need = Need { models, ..Need::default() };
        let first_only = gpu_with(0, &["tiny-sd"]);
        assert_eq!(
            choose(&need, &[first_only.clone(), gpu_with(1, &["tiny-sd", "tiny-sd-2"])]),
            Some(DeviceId::Cuda(1))
        );
        assert_eq!(choose(&need, std::slice::from_ref(&first_only)), None, "never a box without tiny-sd-2");
        let why = waiting_reason(&need, &[first_only]).unwrap_or_default();
        assert!(why.contains("tiny-sd-2"), "{why}");
    }
}

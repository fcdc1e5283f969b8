//! Submission-time refusals: jobs this box could never start (a CUDA-only model without a
//! CUDA device, more GPU memory than any GPU has) are refused before they are stored, so
//! they do not wait in the queue forever.

use super::placement::{self, Need};
use super::{Placement, Scheduler};
use crate::gpu::DeviceId;
use crate::kinds::{JobKind, ParamError, memory};
use crate::store::records::Job;

/// A job that needs more GPU memory than any GPU here has (it would wait forever).
#[derive(Debug, thiserror::Error)]
#[error("this job needs {want_mib} MiB of GPU memory; the largest GPU here has {largest_mib} MiB")]
pub struct TooBigForGpus {
    /// GPU memory the job reserves.
    pub want_mib: u64,
    /// The largest GPU's total memory.
    pub largest_mib: u64,
}

/// A job that loads a CUDA-only model, submitted to a box without a CUDA device.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsCuda(pub String);

impl Scheduler {
    /// Refuses up front a job loading a CUDA-only model on a box without a CUDA device
    /// (placement would never start it); the reason names the model.
    pub fn check_device(&self, kind: &dyn JobKind, params: &serde_json::Value) -> Result<(), NeedsCuda> {
        let models = kind.models(params);
        let cuda_only = crate::models::Catalog::cuda_only_of(&self.config, &models);
        let need = Need { models, cuda_only, ..Need::default() };
        let devices: Vec<DeviceId> = self.devices.iter().map(|(d, _)| *d).collect();
        placement::refusal(&need, &devices).map_or(Ok(()), |why| Err(NeedsCuda(why)))
    }

    /// Whether this box makes pictures on its CPU: it has no GPU to use and no worker boxes
    /// (whose memory it does not know) to hand them to.
    pub(super) fn pictures_on_cpu(&self) -> bool {
        self.gpus().is_empty() && !self.remote_expected
    }

    /// Refuses up front, where pictures are made on the CPU, a job whose one picture needs
    /// more memory than jobs there may use (`limits.cpu_memory_mib`): it would take the whole
    /// daemon down when the kernel's OOM killer ends it. The error names the size's field
    /// and the largest size that fits.
    pub fn check_ram(&self, kind: &dyn JobKind, params: &serde_json::Value) -> Result<(), ParamError> {
        match kind.cpu_picture(params, &self.config) {
            Some(picture) if self.pictures_on_cpu() => memory::check_on_cpu(&self.config, &picture),
            _ => Ok(()),
        }
    }

    /// Placement on a box whose only slots are CPU ones (no GPU, no worker boxes), where only
    /// idle workers claim: a job fits unless its picture and those of the CPU jobs running
    /// pass `limits.cpu_memory_mib` (one alone always fits: submission refused bigger).
    /// Skipping the rest of placement keeps the claim scan as cheap as on GPU-less boxes.
    pub(super) fn place_on_cpu_only(&self, device: DeviceId, job: &Job) -> (Placement, Option<DeviceId>) {
        let ram_mib = self.ram_need(job);
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let (running, held) = ledger.load(device);
        if ram_mib > 0 && running > 0 {
            let budget = memory::cpu_budget_mib(&self.config);
            if held + ram_mib > budget {
                self.waiting.note(job, Some(placement::cpu_memory_reason(ram_mib, budget)));
                return (Placement::Skip, None);
            }
        }
        ledger.reserve(job.id, device, Need { ram_mib, ..Need::default() });
        self.waiting.forget(job.id);
        (Placement::Take, Some(device))
    }

    /// Refuses up front a job that no GPU here could ever hold (it would wait forever).
    /// Boxes without GPUs run everything on the CPU.
    pub fn check_fits(&self, kind: &dyn JobKind, params: &serde_json::Value) -> Result<(), TooBigForGpus> {
        let want = kind.vram_mib(params, &self.config);
        let largest = self.gpus().iter().map(|g| g.memory_total >> 20).max();
        match largest {
            Some(max) if want > max => Err(TooBigForGpus { want_mib: want, largest_mib: max }),
            _ => Ok(()),
        }
    }
}

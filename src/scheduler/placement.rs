//! GPU placement: which device runs a job. Pure functions of a snapshot, so the rules are
//! tested with numbers, plus the ledger of what the scheduler has placed where.
//!
//! Rules, in order:
//! 1. A device needs an idle worker slot.
//! 2. A GPU needs free memory for the job's `vram_mib`. Free memory is the card's total
//!    minus what other processes hold minus what reelbox has reserved for jobs it placed
//!    there (a starting job has not allocated yet, so the driver's count alone would let
//!    two big jobs in at once).
//! 3. The CPU takes a job that needs GPU memory only on boxes with no GPU at all (CPU is
//!    always the fallback there); a job that needs none (`vram_mib` 0) goes to the CPU when
//!    no GPU slot is free. Kinds that are only practical on a GPU must declare `vram_mib`.
//!    A job loading a CUDA-only model (`cuda_only` in its manifest: kernels the CPU
//!    provider lacks) never goes to the CPU; on a box without a GPU it is refused at
//!    submission ([`refusal`]) rather than queued forever.
//! 4. Among the devices left: the one already holding most of the job's models (affinity,
//!    as InvokeAI keeps models where they were loaded), then a GPU before the CPU, then the
//!    fewest running jobs, then the lowest utilisation, then the most free memory.
//!
//! A job no device can take now stays queued; it is never started to crash out of memory.
//! When no device could take it even idle (no worker box connected, or none with its
//! models), [`waiting_reason`] says what is missing, and the job view shows it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ulid::Ulid;

use crate::gpu::{DeviceId, GpuSample};

/// What a job needs from a device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Need {
    /// GPU memory, MiB; 0 runs anywhere.
    pub vram_mib: u64,
    /// Models the job loads, for affinity.
    pub models: Vec<String>,
    /// The CUDA-only model the job loads, if any: the CPU cannot run it.
    pub cuda_only: Option<String>,
    /// Memory it takes on the CPU, MiB, where that is estimated (pictures); held to
    /// `limits.cpu_memory_mib` with the other CPU jobs' on boxes that make pictures there.
    pub ram_mib: u64,
}

/// A device as placement sees it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub device: DeviceId,
    /// Worker slots not running a job.
    pub idle_slots: usize,
    /// Jobs running there.
    pub running: usize,
    /// Memory free for a new job, MiB (`None` for the CPU).
    pub free_mib: Option<u64>,
    /// GPU utilisation, percent, when known.
    pub util: Option<u32>,
    /// Models loaded there recently (or in use now).
    pub warm: Vec<String>,
    /// Models installed there: a worker box's, and a head's own devices' once it has
    /// worker boxes (a request may name a model only they have); `None` on a box alone,
    /// which loads any model it has. A device lacking one of the job's models never takes it.
    pub installed: Option<Vec<String>>,
    /// Why a worker box's device takes no new job now (the box's disk is below its floor);
    /// never set here, where a low disk holds the whole queue before placement.
    pub held: Option<String>,
}

/// The device a job should run on now, or `None` when it must wait.
pub fn choose(need: &Need, devices: &[Candidate]) -> Option<DeviceId> {
    let eligible = |d: &&Candidate| d.idle_slots > 0 && fits(need, d, devices);
    // Larger is better; ties keep the first device (lowest index).
    let score = |d: &Candidate| {
        let affinity = need.models.iter().filter(|m| d.warm.contains(m)).count();
        let is_gpu = d.device.is_gpu();
        (
            affinity,
            is_gpu,
            std::cmp::Reverse(d.running),
            std::cmp::Reverse(d.util.unwrap_or(0)),
            d.free_mib.unwrap_or(0),
        )
    };
    let mut best: Option<&Candidate> = None;
    for d in devices.iter().filter(eligible) {
        if best.is_none_or(|b| score(d) > score(b)) {
            best = Some(d);
        }
    }
    best.map(|d| d.device)
}

/// Whether `d` could take the job were one of its slots idle (rules 2 and 3, the box's
/// models and disk), among `devices`.
fn fits(need: &Need, d: &Candidate, devices: &[Candidate]) -> bool {
    d.held.is_none()
        && d.installed.as_ref().is_none_or(|have| need.models.iter().all(|m| have.contains(m)))
        && if d.device.is_gpu() {
            d.free_mib.is_none_or(|f| f >= need.vram_mib)
        } else {
            need.cuda_only.is_none() && (!devices.iter().any(|d| d.device.is_gpu()) || need.vram_mib == 0)
        }
}

/// Why no device can take a job now, for a job [`choose`] found no device for, in the
/// words a user reads after `waiting: ` (`None` when it only waits for a free slot of this
/// box, its turn like any queued job). Said for a head whose work all goes to worker boxes
/// (no box connected, none with the job's models or a CUDA device for them, or every box
/// that could run it busy, named) and on any box for a job that waits for GPU memory other
/// jobs hold. The memory reason keeps its words while it holds, so it is said once.
pub fn waiting_reason(need: &Need, devices: &[Candidate]) -> Option<String> {
    if devices.is_empty() {
        return Some("no worker box is connected".into());
    }
    let has = |d: &Candidate, m: &String| d.installed.as_ref().is_none_or(|have| have.contains(m));
    let missing: Vec<String> =
        need.models.iter().filter(|m| !devices.iter().any(|d| has(d, m))).map(|m| format!("{m:?}")).collect();
    match missing.as_slice() {
        [] => {}
        [one] => return Some(format!("no box has model {one}")),
        many => return Some(format!("no box has models {}", many.join(", "))),
    }
    let with_models = |d: &&Candidate| need.models.iter().all(|m| has(d, m));
    if let Some(model) = &need.cuda_only {
        if !devices.iter().filter(with_models).any(|d| d.device.is_gpu()) {
            return Some(format!("no box with model {model:?} has a CUDA device"));
        }
    }
    if !devices.iter().any(|d| with_models(&d)) {
        return Some(format!(
            "no box has all of models {}",
            need.models.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
        ));
    }
    // Every box with the models says why it takes nothing new (a full disk): that, not
    // its turn, is what the job waits for.
    if let Some(held) = devices.iter().filter(with_models).map(|d| d.held.as_ref()).collect::<Option<Vec<_>>>() {
        return held.first().map(|why| format!("{why}; it takes them again once space is freed there"));
    }
    // A GPU with the models has a free slot, and none of them (free slot or not) has
    // the memory: memory is what it waits for, not only its turn.
    let gpus: Vec<&Candidate> = devices.iter().filter(with_models).filter(|d| d.device.is_gpu()).collect();
    if gpus.iter().any(|d| d.idle_slots > 0) && !gpus.iter().any(|d| d.free_mib.is_none_or(|f| f >= need.vram_mib)) {
        return Some(format!(
            "no GPU has the {} MiB it needs free; it starts when running jobs release theirs",
            need.vram_mib
        ));
    }
    // Only worker boxes could take it and all are busy: said, so a job on a head that hands
    // work out does not look stuck (a busy device here is a queue's turn, said by nothing).
    let mut hosts = (devices.iter().filter(|d| fits(need, d, devices)))
        .map(|d| match d.device {
            DeviceId::Remote { host, .. } if d.idle_slots == 0 => Some(host.to_string()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    hosts.sort();
    hosts.dedup();
    (!hosts.is_empty()).then(|| format!("every box that can run it is busy ({})", hosts.join(", ")))
}

/// Why a job waits on a box that makes pictures on its CPU: the CPU jobs running hold
/// so much of `limits.cpu_memory_mib` that its picture would pass it. The words stay the
/// same while it holds, so it is said once.
pub fn cpu_memory_reason(need_mib: u64, budget_mib: u64) -> String {
    format!(
        "its picture needs about {need_mib} MiB of the {budget_mib} MiB the CPU's jobs may use \
         (limits.cpu_memory_mib) and the jobs running there hold the rest; it starts when they end"
    )
}

/// Why a job can never run on a box with these devices, when it cannot: it loads a
/// CUDA-only model and the box has no CUDA device.
pub fn refusal(need: &Need, devices: &[DeviceId]) -> Option<String> {
    let model = need.cuda_only.as_deref()?;
    let has_cuda = devices.iter().any(|d| matches!(d, DeviceId::Cuda(_)));
    (!has_cuda).then(|| {
        format!(
            "model {model} runs only with CUDA (its fused kernels have no CPU version) and this box has no CUDA device; pick a CPU-capable model (`reelbox models list --available`, CPU column)"
        )
    })
}

/// Memory a GPU has for a new job, MiB: total minus other processes' memory minus
/// reelbox's reservations. When the driver does not list processes, reelbox's own use
/// is assumed to be at most what it reserved.
pub fn free_mib(sample: Option<&GpuSample>, inventory_total_mib: u64, reserved_mib: u64) -> u64 {
    let total = sample.and_then(|s| s.mem_total_mib).unwrap_or(inventory_total_mib);
    let used = sample.and_then(|s| s.mem_used_mib);
    let foreign = match (used, sample.and_then(GpuSample::ours_mib)) {
        (Some(u), Some(ours)) => u.saturating_sub(ours),
        (Some(u), None) => u.saturating_sub(reserved_mib),
        (None, _) => 0,
    };
    total.saturating_sub(foreign).saturating_sub(reserved_mib)
}

/// A job the scheduler placed, until it ends.
#[derive(Debug, Clone)]
pub(super) struct Placed {
    pub device: DeviceId,
    pub need: Need,
    /// The device's energy counter when the current stage started, mJ.
    pub stage_energy_start: Option<u64>,
}

/// What is placed where, and which models each device used recently.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    pub placed: HashMap<Ulid, Placed>,
    warm: HashMap<DeviceId, Vec<(String, Instant)>>,
}

/// Most remembered models per device.
const WARM_PER_DEVICE: usize = 16;

impl Ledger {
    /// Reserves a device for a job.
    pub fn reserve(&mut self, job: Ulid, device: DeviceId, need: Need) {
        self.placed.insert(job, Placed { device, need, stage_energy_start: None });
    }

    /// Ends a job's reservation; its models stay warm on the device.
    pub fn release(&mut self, job: Ulid, ran: bool) {
        let Some(p) = self.placed.remove(&job) else { return };
        if !ran {
            return;
        }
        let warm = self.warm.entry(p.device).or_default();
        let now = Instant::now();
        for m in p.need.models {
            warm.retain(|(name, _)| *name != m);
            warm.push((m, now));
        }
        let excess = warm.len().saturating_sub(WARM_PER_DEVICE);
        warm.drain(..excess);
    }

    /// Jobs running on a device and the memory reserved for them: GPU memory on a GPU,
    /// the host's on the CPU.
    pub fn load(&self, device: DeviceId) -> (usize, u64) {
        let mib = |need: &Need| if device.is_gpu() { need.vram_mib } else { need.ram_mib };
        self.placed.values().filter(|p| p.device == device).fold((0, 0), |(n, held), p| (n + 1, held + mib(&p.need)))
    }

    /// Models in use on a device or used there within `keep_alive`.
    pub fn warm(&self, device: DeviceId, keep_alive: Duration) -> Vec<String> {
        let mut out: Vec<String> =
            self.placed.values().filter(|p| p.device == device).flat_map(|p| p.need.models.iter().cloned()).collect();
        if let Some(recent) = self.warm.get(&device) {
            out.extend(recent.iter().filter(|(_, t)| t.elapsed() <= keep_alive).map(|(m, _)| m.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests;

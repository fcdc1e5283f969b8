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
    /// Models installed on a worker box (`None` here: this box loads any model it has).
    /// A box lacking one of the job's models never takes it.
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
mod tests {
    use super::*;

    fn gpu(i: u32, free_mib: u64) -> Candidate {
        Candidate {
            device: DeviceId::Cuda(i),
            idle_slots: 1,
            running: 0,
            free_mib: Some(free_mib),
            util: None,
            warm: vec![],
            installed: None,
            held: None,
        }
    }

    fn cpu() -> Candidate {
        Candidate {
            device: DeviceId::Cpu,
            idle_slots: 2,
            running: 0,
            free_mib: None,
            util: None,
            warm: vec![],
            installed: None,
            held: None,
        }
    }

    fn need(vram_mib: u64, models: &[&str]) -> Need {
        Need { vram_mib, models: models.iter().map(|m| m.to_string()).collect(), cuda_only: None, ram_mib: 0 }
    }

    #[test]
    fn a_cuda_only_model_never_lands_on_the_cpu_and_is_refused_without_a_gpu() {
        let fused = Need { cuda_only: Some("sd-turbo-cuda".into()), ..need(0, &["sd-turbo-cuda"]) };
        // Even needing no memory and with the GPU busy, it waits for the GPU.
        let busy = Candidate { idle_slots: 0, running: 1, ..gpu(0, 24576) };
        assert_eq!(choose(&fused, &[cpu(), busy]), None);
        assert_eq!(choose(&fused, &[cpu(), gpu(0, 100)]), Some(DeviceId::Cuda(0)));
        assert_eq!(choose(&fused, &[cpu()]), None, "no GPU: never the CPU");
        let why = refusal(&fused, &[DeviceId::Cpu]).expect("refused on a CPU-only box");
        assert!(why.contains("sd-turbo-cuda") && why.contains("CUDA"), "{why}");
        assert_eq!(refusal(&fused, &[DeviceId::Cpu, DeviceId::Cuda(0)]), None);
        assert_eq!(refusal(&need(0, &["sd-turbo"]), &[DeviceId::Cpu]), None);
    }

    #[test]
    fn a_12_gib_job_never_lands_on_the_8_gib_gpu() {
        let small = gpu(0, 8192);
        let mut big = gpu(1, 24576);
        assert_eq!(choose(&need(12288, &[]), &[cpu(), small.clone(), big.clone()]), Some(DeviceId::Cuda(1)));
        // The big card is busy: the job waits rather than trying the small one or the CPU.
        big.idle_slots = 0;
        big.running = 1;
        assert_eq!(choose(&need(12288, &[]), &[cpu(), small.clone(), big]), None);
        // Small jobs still flow to the small card meanwhile.
        assert_eq!(choose(&need(4096, &[]), &[cpu(), small]), Some(DeviceId::Cuda(0)));
    }

    #[test]
    fn affinity_keeps_a_models_jobs_on_the_gpu_that_holds_it() {
        let mut a = gpu(0, 20000);
        let mut b = gpu(1, 20000);
        b.warm = vec!["sd-turbo".into()];
        assert_eq!(choose(&need(4000, &["sd-turbo"]), &[a.clone(), b.clone()]), Some(DeviceId::Cuda(1)));
        // Affinity beats load: b already runs a job but has a free slot.
        b.idle_slots = 1;
        b.running = 1;
        a.util = Some(0);
        assert_eq!(choose(&need(4000, &["sd-turbo"]), &[a.clone(), b.clone()]), Some(DeviceId::Cuda(1)));
        // A job for another model goes to the less loaded card.
        assert_eq!(choose(&need(4000, &["piper"]), &[a.clone(), b.clone()]), Some(DeviceId::Cuda(0)));
        // Affinity never overrides memory.
        b.free_mib = Some(1000);
        assert_eq!(choose(&need(4000, &["sd-turbo"]), &[a, b]), Some(DeviceId::Cuda(0)));
    }

    #[test]
    fn least_loaded_gpu_wins_without_affinity() {
        let mut a = gpu(0, 20000);
        a.util = Some(90);
        let b = Candidate { util: Some(10), ..gpu(1, 10000) };
        assert_eq!(choose(&need(0, &[]), &[a.clone(), b]), Some(DeviceId::Cuda(1)));
        let c = Candidate { running: 1, idle_slots: 1, ..gpu(2, 30000) };
        assert_eq!(choose(&need(0, &[]), &[a, c]), Some(DeviceId::Cuda(0)), "fewer running jobs first");
    }

    #[test]
    fn cpu_is_the_fallback() {
        // No GPU at all: the CPU takes everything, whatever memory the job asks for.
        assert_eq!(choose(&need(12288, &[]), &[cpu()]), Some(DeviceId::Cpu));
        // GPUs present: a job that needs GPU memory never goes to the CPU...
        let busy = Candidate { idle_slots: 0, running: 1, ..gpu(0, 24576) };
        assert_eq!(choose(&need(1, &[]), &[cpu(), busy.clone()]), None);
        // ...one that needs none spills over when the GPUs are busy, and prefers a GPU otherwise.
        assert_eq!(choose(&need(0, &[]), &[cpu(), busy]), Some(DeviceId::Cpu));
        assert_eq!(choose(&need(0, &[]), &[cpu(), gpu(0, 100)]), Some(DeviceId::Cuda(0)));
    }

    #[test]
    fn a_worker_box_without_the_model_never_takes_the_job() {
        let host = crate::gpu::BoxName::new("attic").expect("valid");
        let remote = |gpu, installed: &[&str]| Candidate {
            device: DeviceId::Remote { host, gpu },
            installed: Some(installed.iter().map(|m| m.to_string()).collect()),
            ..gpu_or_cpu(gpu)
        };
        let lacking = remote(Some(0), &[]);
        assert_eq!(choose(&need(100, &["sd-turbo"]), std::slice::from_ref(&lacking)), None);
        let having = remote(Some(0), &["sd-turbo"]);
        assert_eq!(choose(&need(100, &["sd-turbo"]), &[lacking, having.clone()]), Some(having.device));
        // A remote CPU is a CPU: it takes GPU-less work when the GPUs are busy.
        let busy = Candidate { idle_slots: 0, running: 1, ..gpu(0, 24576) };
        let rcpu = remote(None, &[]);
        assert_eq!(choose(&need(0, &[]), &[busy.clone(), rcpu.clone()]), Some(rcpu.device));
        assert_eq!(choose(&need(1, &[]), &[busy, rcpu]), None);
    }

    #[test]
    fn a_job_no_box_can_take_says_what_is_missing_and_one_waiting_for_busy_boxes_names_them() {
        use crate::gpu::BoxName;
        let host = BoxName::new("attic").expect("valid");
        let remote = |installed: &[&str]| Candidate {
            device: DeviceId::Remote { host, gpu: None },
            installed: Some(installed.iter().map(|m| m.to_string()).collect()),
            ..cpu()
        };
        let sd = need(0, &["tiny-sd"]);
        assert_eq!(waiting_reason(&sd, &[]).as_deref(), Some("no worker box is connected"));
        assert_eq!(waiting_reason(&sd, &[remote(&[])]).as_deref(), Some("no box has model \"tiny-sd\""));
        let two = need(0, &["a", "b"]);
        assert_eq!(waiting_reason(&two, &[remote(&[])]).as_deref(), Some("no box has models \"a\", \"b\""));
        assert_eq!(
            waiting_reason(&two, &[remote(&["a"]), remote(&["b"])]).as_deref(),
            Some("no box has all of models \"a\", \"b\"")
        );
        let fused = Need { cuda_only: Some("tiny-sd".into()), ..sd.clone() };
        assert_eq!(
            waiting_reason(&fused, &[remote(&["tiny-sd"])]).as_deref(),
            Some("no box with model \"tiny-sd\" has a CUDA device")
        );
        // A box that has it but is busy: the job waits for it, and says which.
        let busy = Candidate { idle_slots: 0, running: 1, ..remote(&["tiny-sd"]) };
        assert_eq!(choose(&sd, std::slice::from_ref(&busy)), None);
        assert_eq!(
            waiting_reason(&sd, std::slice::from_ref(&busy)).as_deref(),
            Some("every box that can run it is busy (attic)")
        );
        // Each box named once (two busy devices of den); one lacking the model is not.
        let den = |installed| Candidate {
            device: DeviceId::Remote { host: BoxName::new("den").expect("ok"), gpu: None },
            ..remote(installed)
        };
        let den_busy = Candidate { idle_slots: 0, ..den(&["tiny-sd"]) };
        let all = [busy.clone(), den_busy.clone(), den_busy, den(&[])];
        assert_eq!(waiting_reason(&sd, &all).as_deref(), Some("every box that can run it is busy (attic, den)"));
        // A busy device of this box is a queue's ordinary turn: nothing to say.
        let busy_here = Candidate { idle_slots: 0, running: 2, ..cpu() };
        assert_eq!(waiting_reason(&sd, &[busy_here, busy]), None);
        assert_eq!(waiting_reason(&sd, &[cpu()]), None, "this box loads any model it has");
    }

    #[test]
    fn a_box_whose_disk_is_low_takes_nothing_and_a_job_only_it_could_take_says_why() {
        let host = |n| crate::gpu::BoxName::new(n).expect("valid");
        let remote = |name, held: Option<&str>| Candidate {
            device: DeviceId::Remote { host: host(name), gpu: None },
            installed: Some(vec!["tiny-sd".into()]),
            held: held.map(str::to_string),
            ..cpu()
        };
        let sd = need(0, &["tiny-sd"]);
        let low = remote("attic", Some("box attic takes no new stages: its disk is low"));
        assert_eq!(choose(&sd, std::slice::from_ref(&low)), None);
        assert_eq!(
            waiting_reason(&sd, std::slice::from_ref(&low)).as_deref(),
            Some("box attic takes no new stages: its disk is low; it takes them again once space is freed there")
        );
        // Another box with the model takes it; when it is busy, the job waits for it.
        let free = remote("den", None);
        assert_eq!(choose(&sd, &[low.clone(), free.clone()]), Some(free.device));
        let busy = Candidate { idle_slots: 0, running: 1, ..free };
        assert_eq!(waiting_reason(&sd, &[low, busy]).as_deref(), Some("every box that can run it is busy (den)"));
    }

    #[test]
    fn a_job_short_of_gpu_memory_says_so_and_one_short_of_a_slot_does_not() {
        let big = need(4096, &[]);
        let full = gpu(0, 2048);
        assert_eq!(choose(&big, &[cpu(), full.clone()]), None);
        assert_eq!(
            waiting_reason(&big, &[cpu(), full.clone()]).as_deref(),
            Some("no GPU has the 4096 MiB it needs free; it starts when running jobs release theirs")
        );
        let busy = Candidate { idle_slots: 0, running: 1, ..full.clone() };
        assert_eq!(waiting_reason(&big, &[cpu(), busy]), None);
        // A bigger card is only busy: the job waits for its slot, not for memory.
        let busy_big = Candidate { idle_slots: 0, running: 1, ..gpu(1, 20000) };
        assert_eq!(choose(&big, &[full.clone(), busy_big.clone()]), None);
        assert_eq!(waiting_reason(&big, &[full, busy_big]), None);
    }

    fn gpu_or_cpu(gpu_index: Option<u32>) -> Candidate {
        gpu_index.map_or_else(cpu, |i| gpu(i, 24576))
    }

    #[test]
    fn free_memory_counts_reservations_and_other_processes() {
        let sample = GpuSample {
            mem_total_mib: Some(24576),
            mem_used_mib: Some(3072),
            processes: vec![crate::gpu::GpuProcess { pid: 1, name: None, used_mib: Some(3072), ours: false }],
            ..Default::default()
        };
        // 3 GiB foreign, 12 GiB reserved for a job that has not allocated yet.
        assert_eq!(free_mib(Some(&sample), 0, 12288), 24576 - 3072 - 12288);
        // Our own allocation is not counted twice once the driver shows it.
        let mut ours = sample.clone();
        ours.mem_used_mib = Some(3072 + 12000);
        ours.processes.push(crate::gpu::GpuProcess { pid: 2, name: None, used_mib: Some(12000), ours: true });
        assert_eq!(free_mib(Some(&ours), 0, 12288), 24576 - 3072 - 12288);
        // No process list: reelbox's use is assumed to be what it reserved.
        let mut blind = ours.clone();
        blind.processes.clear();
        assert_eq!(free_mib(Some(&blind), 0, 12288), 24576 - (3072 + 12000 - 12288) - 12288);
        // No reading at all: the inventory total minus reservations.
        assert_eq!(free_mib(None, 8192, 1024), 7168);
    }

    #[test]
    fn ledger_remembers_models_after_the_job_ends() {
        let mut l = Ledger::default();
        let id = Ulid::new();
        l.reserve(id, DeviceId::Cuda(1), need(100, &["m"]));
        assert_eq!(l.load(DeviceId::Cuda(1)), (1, 100));
        assert_eq!(l.warm(DeviceId::Cuda(1), Duration::from_secs(60)), vec!["m".to_string()]);
        l.release(id, true);
        assert_eq!(l.load(DeviceId::Cuda(1)), (0, 0));
        assert_eq!(l.warm(DeviceId::Cuda(1), Duration::from_secs(60)), vec!["m".to_string()]);
        std::thread::sleep(Duration::from_millis(2));
        assert!(l.warm(DeviceId::Cuda(1), Duration::from_millis(1)).is_empty(), "expires after keep-alive");
    }
}

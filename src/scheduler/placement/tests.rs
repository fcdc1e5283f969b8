//! Placement's rules on made-up devices.

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

#[test]
fn a_model_only_a_worker_box_has_is_never_placed_on_the_head() {
    let host = crate::gpu::BoxName::new("attic").expect("valid");
    // The head's own CPU lists the head's models once it has worker boxes.
    let head = Candidate { installed: Some(vec!["voice".into()]), ..cpu() };
    let attic = Candidate {
        device: DeviceId::Remote { host, gpu: None },
        installed: Some(vec!["demo-shapes".into()]),
        ..cpu()
    };
    let shapes = need(0, &["demo-shapes"]);
    assert_eq!(choose(&shapes, &[head.clone(), attic.clone()]), Some(attic.device));
    // The box busy: it waits for the box, never runs on the head.
    let busy = Candidate { idle_slots: 0, running: 1, ..attic };
    assert_eq!(choose(&shapes, &[head.clone(), busy.clone()]), None);
    assert_eq!(
        waiting_reason(&shapes, &[head.clone(), busy]).as_deref(),
        Some("every box that can run it is busy (attic)")
    );
    assert_eq!(
        waiting_reason(&shapes, std::slice::from_ref(&head)).as_deref(),
        Some("no box has model \"demo-shapes\"")
    );
    // What the head has stays its own.
    assert_eq!(choose(&need(0, &["voice"]), std::slice::from_ref(&head)), Some(DeviceId::Cpu));
}

//! Snapshots of `reelbox top` drawn from fixed states at 80×24 and 160×48. The render
//! functions are pure, so a state and a size give exactly one screen. Review changes with
//! `INSTA_UPDATE=always cargo test --test it top_snapshots` and `git diff tests/it/snapshots`.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use reelbox::api::system::SystemView;
use reelbox::api::views::JobView;
use reelbox::gpu::fake::FakeGpus;
use reelbox::gpu::{GpuSample, HostSample, TelemetrySample};
use reelbox::tui::app::{App, Command, Detail, Link, Screen};
use reelbox::tui::event::{EventLine, Preview, Snapshot, Update};
use serde_json::{Value, json};

/// 2025-01-01T12:00:00Z
pub(crate) const NOW: i64 = 1_735_732_800_000;

pub(crate) fn at(offset_s: i64) -> String {
    reelbox::api::views::time(NOW + offset_s * 1000)
}

fn host(tick: i64) -> HostSample {
    HostSample {
        cpu_percent: Some(20.0 + (tick % 7) as f32 * 5.0),
        cpus: 16,
        mem_used_mib: Some(24_000 + (tick as u64 % 5) * 100),
        mem_total_mib: Some(64_000),
    }
}

/// Two minutes of samples from fake GPUs (none when `gpus` is empty).
pub(crate) fn history(gpus: &[u64]) -> Vec<TelemetrySample> {
    history_with_boxes(gpus, &[])
}

/// As [`history`], with worker boxes' fake GPUs (box name, MiB per GPU) folded in.
fn history_with_boxes(gpus: &[u64], boxes: &[(&str, &[u64])]) -> Vec<TelemetrySample> {
    let fake = FakeGpus::new(gpus.to_vec());
    let remote: Vec<(&str, FakeGpus, usize)> =
        boxes.iter().map(|(name, g)| (*name, FakeGpus::new(g.to_vec()), g.len())).collect();
    (0..120)
        .map(|tick| TelemetrySample {
            at_ms: NOW - (120 - tick) * 1000,
            host: host(tick),
            gpus: (0..gpus.len()).map(|i| fake.reading(i, tick as u64, Some(tick as u64 * 100_000))).collect(),
            remote_gpus: remote
                .iter()
                .flat_map(|(name, f, n)| {
                    (0..*n)
                        .map(move |i| GpuSample { host: Some(name.to_string()), ..f.reading(i, tick as u64 + 7, None) })
                })
                .collect(),
        })
        .collect()
}

pub(crate) fn system(gpus: &[u64], queued: u64, running: u64, failed: u64, paused: bool) -> SystemView {
    let source = if gpus.is_empty() { "none" } else { "fake" };
    let mut devices = vec![json!({"id": "cpu", "workers": 2, "running": 0})];
    for (i, mib) in gpus.iter().enumerate() {
        devices.push(
            json!({"id": format!("cuda:{i}"), "workers": 1, "running": 0, "name": "Fake", "memory_total_mib": mib}),
        );
    }
    serde_json::from_value(json!({
        "version": "0.1.0", "uptime_s": 3725, "paused": paused, "devices": devices,
        "queue": {"by_state": {"queued": queued, "running": running, "succeeded": 40, "failed": failed, "canceled": 1}, "max_queued": 10000},
        "kinds": ["testcard"],
        "telemetry": {"source": source, "interval_ms": 1000, "latest": history(gpus).last()},
        "energy": {"price_per_kwh": 0.3, "currency": "EUR"},
    }))
    .expect("system view")
}

pub(crate) fn job(id: &str, kind: &str, state: &str, priority: i32, extra: Value) -> JobView {
    let mut v = json!({
        "id": format!("01JGQ4Z8{id:0>18}"), "kind": kind, "owner": "local", "state": state, "priority": priority,
        "progress": {"fraction": 0.0, "stage": null, "step": 0, "total": 0, "message": null},
        "stages": [
            {"name": "card", "state": "pending", "artifacts": [], "device": null, "started_at": null, "finished_at": null, "error": null, "energy_wh": null},
            {"name": "summary", "state": "pending", "artifacts": [], "device": null, "started_at": null, "finished_at": null, "error": null, "energy_wh": null},
        ],
        "attempts": 0, "error": null, "params": {"steps": 50, "step_ms": 100}, "device": null,
        "created_at": at(-300), "enqueued_at": null, "started_at": null, "finished_at": null,
        "energy_wh": null, "cost": null, "vram_mib": 0,
    });
    if let (Some(o), Value::Object(more)) = (v.as_object_mut(), extra) {
        o.extend(more);
    }
    serde_json::from_value(v).expect("job view")
}

pub(crate) fn running(id: &str, device: &str, fraction: f64, step: u64, started: i64, wh: f64) -> JobView {
    job(
        id,
        "testcard",
        "running",
        0,
        json!({
            "device": device, "attempts": 1, "started_at": at(started), "enqueued_at": at(started - 5),
            "progress": {"fraction": fraction, "stage": "card", "step": step, "total": 50, "message": null},
            "stages": [
                {"name": "card", "state": "running", "artifacts": [], "device": device, "started_at": at(started), "finished_at": null, "error": null, "energy_wh": null},
                {"name": "summary", "state": "pending", "artifacts": [], "device": null, "started_at": null, "finished_at": null, "error": null, "energy_wh": null},
            ],
            "energy_wh": wh, "cost": wh / 1000.0 * 0.3, "vram_mib": 12288,
        }),
    )
}

pub(crate) fn failed(id: &str, error: &str) -> JobView {
    job(
        id,
        "image",
        "failed",
        0,
        json!({
            "attempts": 3, "error": error, "started_at": at(-200), "finished_at": at(-170),
            "stages": [
                {"name": "keyframe", "state": "failed", "artifacts": [], "device": null, "started_at": at(-200), "finished_at": at(-170), "error": error, "energy_wh": 0.42},
            ],
            "energy_wh": 0.42, "cost": 0.000126,
        }),
    )
}

pub(crate) fn succeeded(id: &str, ran_s: i64, wh: Option<f64>) -> JobView {
    job(
        id,
        "speech",
        "succeeded",
        0,
        json!({
            "attempts": 1, "started_at": at(-100 - ran_s), "finished_at": at(-100),
            "progress": {"fraction": 1.0, "stage": null, "step": 0, "total": 0, "message": null},
            "stages": [
                {"name": "speak", "state": "done", "artifacts": ["01JGQ4Z8000000000000000ART"], "device": "cuda:1", "started_at": at(-100 - ran_s), "finished_at": at(-100), "error": null, "energy_wh": wh},
            ],
            "energy_wh": wh,
        }),
    )
}

pub(crate) fn app(gpus: &[u64], jobs: Snapshot) -> App {
    let mut app = App::new("http://127.0.0.1:8470", false, Duration::from_secs(1), true, NOW);
    app.apply(Update::Snapshot(Box::new(jobs)));
    app.apply(Update::History(history(gpus)));
    app
}

pub(crate) fn quiet(gpus: &[u64]) -> App {
    app(
        gpus,
        Snapshot {
            system: system(gpus, 0, 1, 0, false),
            running: vec![running("R1", "cuda:0", 0.4, 20, -30, 0.12)],
            queued: vec![],
            recent: vec![succeeded("S1", 12, Some(0.05))],
            admin: None,
        },
    )
}

pub(crate) fn busy(gpus: &[u64]) -> App {
    let queued = (0..12)
        .map(|i| {
            let vram: u64 = [0, 4096, 12288][i % 3];
            let kind = if i % 3 == 0 { "render" } else { "image" };
            job(
                &format!("Q{i}"),
                kind,
                "queued",
                [0, 5, -2, 10][i % 4],
                // Q4 waits for memory the running jobs hold, and says so.
                json!({"enqueued_at": at(-60 + i as i64), "vram_mib": vram,
                       "waiting": (i == 4).then_some("no GPU has the 4096 MiB it needs free")}),
            )
        })
        .collect();
    let running = vec![
        running("R1", "cuda:1", 0.62, 31, -95, 2.31),
        running("R2", "cuda:0", 0.05, 2, -4, 0.01),
        job(
            "R3",
            "speech",
            "running",
            0,
            json!({"device": "cpu", "attempts": 1, "started_at": at(-2),
            "progress": {"fraction": 0.0, "stage": "speak", "step": 0, "total": 0, "message": null}}),
        ),
    ];
    let recent = vec![
        succeeded("S1", 42, Some(1.25)),
        failed("F1", "stage keyframe: out of memory allocating 1.5 GiB on cuda:0"),
        succeeded("S2", 3725, None),
        job(
            "C1",
            "render",
            "canceled",
            0,
            json!({"finished_at": at(-50), "error": "canceled because the key \"kid\" was revoked"}),
        ),
    ];
    app(gpus, Snapshot { system: system(gpus, 12, 3, 1, true), running, queued, recent, admin: None })
}

pub(crate) fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| reelbox::tui::draw::draw(f, app)).expect("draw");
    t
}

macro_rules! snap {
    ($name:expr, $app:expr) => {{
        let app = $app;
        insta::assert_snapshot!(concat!($name, "_80x24"), draw(&app, 80, 24).backend());
        insta::assert_snapshot!(concat!($name, "_160x48"), draw(&app, 160, 48).backend());
    }};
}

#[test]
fn no_gpu_shows_host_cpu_and_ram() {
    snap!("no_gpu", quiet(&[]));
}

#[test]
fn two_fake_gpus_show_gauges_and_sparklines() {
    snap!("two_gpus", quiet(&[8192, 24576]));
}

#[test]
fn worker_boxes_gpus_follow_this_boxs_as_name_cuda_n() {
    let mut app = quiet(&[8192]);
    app.apply(Update::History(history_with_boxes(&[8192], &[("attic", &[24576]), ("rig2", &[12288, 12288])])));
    snap!("worker_box_gpus", app);
}

/// NVML sees a card but ONNX Runtime's CUDA provider does not register: the daemon runs
/// every job on the CPU (no GPU device to place on) and the header says what to fix.
#[test]
fn gpus_the_cuda_provider_cannot_use_are_called_out() {
    let mut app = quiet(&[8192]);
    if let Some(s) = app.system.as_mut() {
        s.devices.retain(|d| d.id == "cpu");
        s.gpus_unusable = Some("1 GPU(s) found, but every job runs on the CPU: …".into());
    }
    snap!("gpus_unusable", app);
}

/// The data dir's disk is below `limits.min_free_disk_bytes`: new jobs are refused until
/// someone frees space, and the header says so before anything else; otherwise it shows
/// the free space quietly.
#[test]
fn a_full_disk_is_called_out_and_free_space_shown() {
    let with_free = |free: u64| {
        let mut app = quiet(&[8192]);
        let space = Some(reelbox::disk::Space { free_bytes: free, total_bytes: 512_000_000_000 });
        if let Some(s) = app.system.as_mut() {
            s.disk = reelbox::api::system::DiskView {
                data: space,
                models: space,
                min_free_bytes: 1 << 30,
                ..Default::default()
            };
        }
        app
    };
    snap!("disk_low", with_free(412_000_000));
    snap!("disk_free", with_free(231_400_000_000));
}

#[test]
fn busy_queue_lists_running_queued_by_priority_and_recent() {
    let app = busy(&[8192, 24576]);
    // Highest priority first, FIFO within one.
    let prios: Vec<i32> = app.queued.iter().map(|j| j.priority).collect();
    assert_eq!(prios, [10, 10, 10, 5, 5, 5, 0, 0, 0, -2, -2, -2]);
    snap!("busy_queue", app);
}

#[test]
fn failed_job_shows_its_error_when_selected_and_filtered() {
    let mut app = busy(&[8192, 24576]);
    for c in "/fail".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!(app.selected_job().map(|j| j.state.as_str()), Some("failed"));
    snap!("failed_job", app);
}

/// A job on a worker box's GPU names the box and the GPU whole (it showed `garage/` on any
/// terminal, so nobody could tell which GPU of which box); a terminal too narrow for it
/// leaves the column out rather than cut it.
#[test]
fn a_worker_boxs_device_is_shown_whole() {
    let app = app(
        &[8192],
        Snapshot {
            system: system(&[8192], 0, 2, 0, false),
            running: vec![running("R1", "garage/cuda:1", 0.4, 20, -30, 0.12), running("R2", "cuda:0", 0.1, 5, -3, 0.0)],
            queued: vec![],
            recent: vec![],
            admin: None,
        },
    );
    let wide = draw(&app, 140, 40).backend().to_string();
    assert!(wide.lines().any(|l| l.contains("garage/cuda:1") && l.contains("testcard")), "{wide}");
    let narrow = draw(&app, 80, 24).backend().to_string();
    assert!(!narrow.contains("garage/") || narrow.contains("garage/cuda:1"), "cut rather than left out: {narrow}");
}

#[test]
fn a_canceled_job_says_why_in_the_list_and_its_detail() {
    let why = "canceled because the key \"kid\" was revoked";
    let mut app = busy(&[8192, 24576]);
    for c in "/revoked".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let listed = draw(&app, 160, 48).backend().to_string();
    assert!(listed.lines().any(|l| l.contains("canceled") && l.contains(why)), "{listed}");
    let job = app.selected_job().cloned().expect("the canceled job is selected");
    assert_eq!(job.state.as_str(), "canceled");
    let cmd = app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(matches!(cmd, Some(Command::Follow(_))), "{cmd:?}");
    app.apply(Update::Detail(Box::new(job), Vec::new()));
    let detail = draw(&app, 160, 48).backend().to_string();
    assert!(detail.lines().any(|l| l.contains(&format!("why {why}"))), "{detail}");
}

fn gradient() -> Preview {
    let (w, h) = (64u32, 36u32);
    let mut rgb = Vec::new();
    for y in 0..h {
        for x in 0..w {
            rgb.extend_from_slice(&[(x * 4) as u8, (y * 7) as u8, 128]);
        }
    }
    Preview { artifact: "01JGQ4Z8000000000000000ART".into(), width: w, height: h, rgb }
}

pub(crate) fn detail_app(color: bool) -> App {
    let mut app = busy(&[8192, 24576]);
    app.color = color;
    // Enter on the first row (the running job on cuda:1) opens its detail.
    let cmd = app.on_key(KeyEvent::from(KeyCode::Enter));
    assert!(matches!(cmd, Some(Command::Follow(_))), "{cmd:?}");
    assert_eq!(app.screen, Screen::Detail);
    let id = app.detail.as_ref().map(|d| d.id.clone()).expect("detail");
    let artifacts = serde_json::from_value(json!([{
        "id": "01JGQ4Z8000000000000000ART", "job": id, "stage": "card", "name": "keyframe-000.png",
        "media_type": "image/png", "size": 48213, "sha256": "ab", "url": "/api/v1/artifacts/01JGQ4Z8000000000000000ART",
        "created_at": at(-20),
    }]))
    .expect("artifacts");
    let job = app.detail.as_ref().and_then(|d| d.job.clone()).expect("job");
    app.apply(Update::Detail(Box::new(job), artifacts));
    for (seq, text, progress) in [
        (1, "state → queued", false),
        (2, "state → running", false),
        (3, "stage card → running", false),
        (4, "progress card 30/50", true),
        (5, "progress card 31/50", true),
        (6, "[info] sampler euler_a, 50 steps, cfg 7.0", false),
    ] {
        app.apply(Update::JobEvent(
            id.clone(),
            EventLine { seq, at: at(-95 + seq as i64), text: text.into(), progress },
        ));
    }
    app.apply(Update::Preview(id, gradient()));
    app
}

#[test]
fn detail_view_shows_stages_events_artifacts_and_a_preview() {
    let app = detail_app(true);
    let events = &app.detail.as_ref().expect("detail").events;
    assert_eq!(events.len(), 5, "progress lines replace each other");
    snap!("detail", app);
}

#[test]
fn no_color_detail_preview_falls_back_to_ascii_brightness() {
    snap!("detail_no_color", detail_app(false));
}

#[test]
fn lost_daemon_shows_a_reconnect_status_line_and_keeps_the_last_data() {
    let mut app = quiet(&[8192, 24576]);
    app.apply(Update::Down("connection refused".into()));
    app.now = NOW + 7_000;
    app.apply(Update::Down("connection refused".into()));
    assert_eq!(app.link, Link::Down { since: NOW, error: "connection refused".into() });
    snap!("daemon_down", app);
}

#[test]
fn readonly_refuses_actions_and_says_so() {
    let mut app = quiet(&[]);
    app.readonly = true;
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('c'))), None);
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('p'))), None);
    assert!(app.flash_text().is_some_and(|m| m.contains("read-only")));
    app.readonly = false;
    let id = app.selected_job().map(|j| j.id.clone()).expect("a job");
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('c'))), None, "asks first");
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('y'))), Some(Command::Cancel(id.clone())));
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('+'))), Some(Command::SetPriority(id, 1)));
    assert_eq!(app.on_key(KeyEvent::from(KeyCode::Char('p'))), Some(Command::SetPaused(true)));
    app.readonly = true;
    app.help = true;
    snap!("help_readonly", app);
}

#[test]
fn selection_follows_the_job_across_refreshes() {
    let mut app = busy(&[8192, 24576]);
    app.on_key(KeyEvent::from(KeyCode::Down));
    app.on_key(KeyEvent::from(KeyCode::Char('j')));
    let picked = app.selected_job().map(|j| j.id.clone()).expect("selected");
    // The running job above it finishes: the cursor stays on the same job.
    let mut next = Snapshot {
        system: app.system.clone().expect("system"),
        running: app.running[1..].to_vec(),
        queued: app.queued.clone(),
        recent: app.recent.clone(),
        admin: app.admin,
    };
    next.recent.insert(0, succeeded("R1", 10, None));
    app.apply(Update::Snapshot(Box::new(next)));
    assert_eq!(app.selected_job().map(|j| j.id.clone()), Some(picked));
    let _ = Detail::default();
}

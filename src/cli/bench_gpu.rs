//! `reelbox bench gpu`: the same jobs on a GPU and on the CPU, side by side. Two daemons
//! are started in this process over the installed models (one with `workers.use_gpus`
//! off), each job is run on both, and the report gives per job the wall time cold and warm,
//! the speedup, where placement put it, its energy, its GPU memory reservation beside what
//! NVML saw the daemon hold, and the largest difference between the CUDA and the CPU
//! output. It ends with NVML's reading beside `nvidia-smi`'s and whether TensorRT registers.
//! Lip-sync runs at pipeline level (its job writes an MP4 through ffmpeg, which a GPU box
//! may lack); a render without ffmpeg runs its stages up to the first one that encodes video.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use reelbox::api::views::{ArtifactView, JobView};
use reelbox::config::Config;
use reelbox::engine::{Engine, GpuProvider};
use reelbox::gpu::DeviceId;
use reelbox::media::diff;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Global;
use super::backend::Reach;
use super::client::Client;
use super::follow::{Follow, follow};
use super::render::{DemoInputs, demo_inputs, demo_request};

mod models;
mod telemetry;
use models::{bench_models, fixture_specs, image_body};
use telemetry::{held_now, telemetry, watch_memory};

/// Arguments of `reelbox bench gpu`.
#[derive(Debug, Args)]
pub struct BenchGpuArgs {
    /// The GPU to set beside the CPU.
    #[arg(long, default_value = "cuda:0")]
    pub device: String,
    /// Runs of each job per device: the first also loads the models (cold), the last is warm.
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// The test fixtures' models folder (tiny-sd, tiny-sd-unet-f16io.onnx); default
    /// tests/fixtures/models under the current directory when it is there.
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
}

/// One job of the comparison: where it is posted and which outputs are compared.
struct Spec {
    label: &'static str,
    route: &'static str,
    body: Value,
}

/// A job's outcome on one device.
struct Outcome {
    cold_s: f64,
    warm_s: f64,
    view: JobView,
    outputs: Vec<PathBuf>,
    /// Most GPU memory NVML saw this process hold while the job ran, MiB.
    nvml_peak_mib: Option<u64>,
    /// How much that grew during the first (cold) run: what loading and running took.
    nvml_grew_mib: Option<u64>,
}

/// Runs `reelbox bench gpu`.
pub async fn run(g: &Global, a: BenchGpuArgs) -> anyhow::Result<ExitCode> {
    // `--device cpu` sets the CPU beside itself: a dry run of the whole check on a box
    // without a GPU (every speedup ~1, every difference 0).
    let target = DeviceId::parse(&a.device).ok_or_else(|| anyhow!("--device {}: give cuda:N (or cpu)", a.device))?;
    let gpu = match target {
        DeviceId::Cuda(i) => i,
        DeviceId::Cpu | DeviceId::Remote { .. } => 0,
    };
    let mut config = Config::load(g.config.as_deref())?;
    let runtime = reelbox::engine::runtime::find(&config, reelbox::config::env::ort_dylib_path())?;
    println!("ONNX Runtime {} at {}", runtime.version, runtime.path.display());
    config.runtime.onnxruntime = Some(runtime.path);
    let scratch = tempfile::tempdir().context("cannot make a temporary dir")?;
    config.models_dir = Some(bench_models(&config, scratch.path(), a.fixtures.as_deref())?);
    let inputs = demo_inputs()?;
    let quiet = Global { json: true, ..g.clone() };

    let engine = Engine::new(&config);
    if target != DeviceId::Cpu
        && let Err(e) = engine.probe_provider(GpuProvider::Cuda, gpu)
    {
        return Err(anyhow!("the CUDA provider does not register, so nothing can run on {}: {e}", a.device));
    }
    let mut results: Vec<(String, Option<Outcome>, Option<Outcome>)> = Vec::new();
    let mut report = json!({"device": a.device});
    for (side, device) in [(0, DeviceId::Cpu), (1, target)] {
        let mut c = config.clone();
        c.data_dir = scratch.path().join(format!("daemon-{side}"));
        c.workers.use_gpus = device != DeviceId::Cpu;
        c.workers.gpus = vec![gpu];
        let reach = Reach::start(&quiet, c).await?;
        let specs = specs(&reach.client, &inputs).await?;
        for (i, spec) in specs.iter().enumerate() {
            let dir = scratch.path().join(format!("out-{side}")).join(spec.label.replace(' ', "_"));
            let outcome = run_spec(&reach.client, spec, &dir, a.runs, gpu).await;
            let outcome = match outcome {
                Ok(o) => Some(o),
                Err(e) => {
                    println!("{} on {device}: {e:#}", spec.label);
                    None
                }
            };
            if results.len() <= i {
                results.push((spec.label.to_string(), None, None));
            }
            match side {
                0 => results[i].1 = outcome,
                _ => results[i].2 = outcome,
            }
        }
        if device != DeviceId::Cpu {
            report["telemetry"] = telemetry(&reach.client, gpu).await;
        }
        reach.close().await;
    }
    report["jobs"] = print_jobs(&results);
    if target != DeviceId::Cpu && config.runtime.cuda_tf32 {
        report["without_tf32"] = without_tf32(&quiet, &config, scratch.path(), gpu, &inputs, &results).await?;
    }
    let cpu_speech =
        results.iter().find(|r| r.0 == "speech joe").and_then(|r| r.1.as_ref()).and_then(|o| o.outputs.first());
    report["lipsync"] = match cpu_speech {
        Some(wav) => lipsync_pipeline(&config, &inputs, wav, target, a.runs).await?,
        None => json!({"skipped": "no speech output to lip-sync"}),
    };
    report["tensorrt"] = match engine.probe_provider(GpuProvider::TensorRt, gpu) {
        Ok(()) => {
            println!("\nTensorRT: registers on cuda:{gpu}; set runtime.tensorrt = true to use it");
            json!({"registers": true})
        }
        Err(e) => {
            println!("\nTensorRT: not run ({e})");
            json!({"registers": false, "reason": e.to_string()})
        }
    };
    // What `reelbox setup --models real` would pull here: the same choice by NVML's memory.
    let (gpus, _) = reelbox::setup::detect_gpus();
    let largest = gpus.iter().map(|gpu| gpu.memory_total >> 20).max();
    let real = reelbox::setup::real::real_set(largest);
    let size = largest.map_or_else(|| "no GPU".to_string(), |m| format!("largest GPU {m} MiB"));
    println!("setup --models real picks ({size}): {}", real.join(", "));
    report["real_set"] = json!({"largest_gpu_mib": largest, "models": real});
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs compared, in order; `image` jobs on the fixtures only when they are there.
async fn specs(c: &Client, inputs: &DemoInputs) -> anyhow::Result<Vec<Spec>> {
    let models: Value = c.get("/api/v1/models").await?;
    let installed = |name: &str| models["models"].as_array().is_some_and(|m| m.iter().any(|x| x["name"] == name));
    let mut out =
        vec![Spec { label: "image demo-shapes", route: "/api/v1/images", body: image_body("demo-shapes", 256) }];
    out.push(Spec {
        label: "speech joe",
        route: "/api/v1/speech",
        body: json!({"text": "This is a test of the narration. The box speaks on its own card.",
                     "voice": inputs.voice, "noise_scale": 0.0, "noise_w": 0.0}),
    });
    let portrait = tokio::fs::read(&inputs.portrait).await?;
    let form = Form::new().part("file", Part::bytes(portrait).file_name("portrait.png"));
    let art: Value = c.send(c.request(Method::POST, "/api/v1/artifacts").multipart(form)).await?;
    out.push(Spec {
        label: "upscale demo-upscaler",
        route: "/api/v1/upscale",
        body: json!({"input": art["id"], "model": "demo-upscaler"}),
    });
    out.push(Spec { label: "render demo", route: "/api/v1/renders", body: demo_request(c, inputs).await? });
    out.extend(fixture_specs(installed, &art["id"]));
    Ok(out)
}

/// Runs one job `runs` times and keeps the last run's image and sound outputs.
async fn run_spec(c: &Client, spec: &Spec, dir: &Path, runs: usize, gpu: u32) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let mut times = Vec::new();
    let mut last = None;
    let mut peak = None;
    let mut grew = None;
    for run in 0..runs.max(1) {
        let before = held_now(c, gpu).await;
        let job: JobView = c.send(c.request(Method::POST, spec.route).json(&spec.body)).await?;
        let stop = CancellationToken::new();
        let held = Arc::new(AtomicU64::new(0));
        let poller = tokio::spawn(watch_memory(c.clone(), gpu, held.clone(), stop.clone()));
        let view = follow(c, &job.id, Follow { events_to_stdout: false, progress: false }).await?;
        stop.cancel();
        let _ = poller.await;
        let seen = held.load(Ordering::Relaxed);
        peak = (seen > 0).then_some(seen).max(peak);
        if run == 0 {
            grew = before.zip((seen > 0).then_some(seen)).map(|(b, s)| s.saturating_sub(b));
        }
        times.push(job_seconds(&view));
        last = Some(view);
    }
    let view = last.ok_or_else(|| anyhow!("no run"))?;
    if view.state != "succeeded" && spec.route != "/api/v1/renders" {
        return Err(anyhow!("job {} {}: {}", view.id, view.state, view.error.clone().unwrap_or_default()));
    }
    let all: Vec<ArtifactView> = c.get(&format!("/api/v1/jobs/{}/artifacts", view.id)).await?;
    let mut outputs = Vec::new();
    for art in all
        .iter()
        .filter(|x| (x.media_type == "image/png" && !x.name.starts_with("preview")) || x.media_type == "audio/wav")
    {
        let dest = dir.join(&art.name);
        c.download(&art.url, &dest).await?;
        outputs.push(dest);
    }
    Ok(Outcome {
        cold_s: times[0],
        warm_s: *times.last().unwrap_or(&times[0]),
        view,
        outputs,
        nvml_peak_mib: peak,
        nvml_grew_mib: grew,
    })
}

/// Seconds from the job's start to its end, as the daemon recorded them.
fn job_seconds(view: &JobView) -> f64 {
    seconds_between(&view.started_at, &view.finished_at).unwrap_or(f64::NAN)
}

/// Seconds between two RFC 3339 times of a view, when both are set.
fn seconds_between(start: &Option<String>, end: &Option<String>) -> Option<f64> {
    let t = |s: &Option<String>| s.as_deref().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    Some((t(end)? - t(start)?).num_milliseconds() as f64 / 1000.0)
}

/// Prints the per-job table and returns it as JSON.
fn print_jobs(results: &[(String, Option<Outcome>, Option<Outcome>)]) -> Value {
    println!("\nthe same jobs on the CPU and on the GPU (seconds from job start to end; cold loads the models)");
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8}  {:<8} {:>9} {:>8} {:>9} {:>9}  max |gpu-cpu|",
        "job",
        "cpu cold",
        "cpu warm",
        "gpu cold",
        "gpu warm",
        "speedup",
        "placed",
        "energy Wh",
        "reserved",
        "nvml grew",
        "nvml held"
    );
    println!(
        "(reserved: the job's GPU memory reservation, MiB; nvml grew: how much the daemon's GPU memory grew in the \
         cold run; nvml held: the most it held)"
    );
    let mut rows = Vec::new();
    for (label, cpu, gpu) in results {
        if let (None, Some(gpu)) = (cpu, gpu) {
            // A CUDA-only model: the CPU daemon refuses it, the GPU one must place it.
            let placed = dedup(gpu.view.stages.iter().filter_map(|s| s.device.clone()).collect());
            println!(
                "{label:<24} {:>8} {:>8} {:>8.3} {:>8.3} {:>8}  {:<8} {:>9.5} {:>8}  (GPU only: {})",
                "-",
                "-",
                gpu.cold_s,
                gpu.warm_s,
                "-",
                placed.join(","),
                gpu.view.energy_wh.unwrap_or(0.0),
                gpu.view.vram_mib,
                gpu.view.state
            );
            rows.push(json!({"job": label, "gpu_only": true, "gpu_warm_s": gpu.warm_s, "placed": placed,
                "gpu_state": gpu.view.state, "vram_reserved_mib": gpu.view.vram_mib}));
            continue;
        }
        let (Some(cpu), Some(gpu)) = (cpu, gpu) else {
            println!("{label:<24} did not run on both devices");
            rows.push(json!({"job": label, "ran": false}));
            continue;
        };
        let diffs = output_diffs(cpu, gpu);
        let placed: Vec<String> = gpu.view.stages.iter().filter_map(|s| s.device.clone()).collect::<Vec<_>>();
        let placed = dedup(placed);
        println!(
            "{label:<24} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7.2}x  {:<8} {:>9.5} {:>8} {:>9} {:>9}  {}",
            cpu.cold_s,
            cpu.warm_s,
            gpu.cold_s,
            gpu.warm_s,
            cpu.warm_s / gpu.warm_s,
            placed.join(","),
            gpu.view.energy_wh.unwrap_or(0.0),
            gpu.view.vram_mib,
            gpu.nvml_grew_mib.map_or("-".into(), |m| m.to_string()),
            gpu.nvml_peak_mib.map_or("-".into(), |m| m.to_string()),
            diffs.iter().map(|(n, d)| format!("{n} {d}")).collect::<Vec<_>>().join(", ")
        );
        if gpu.view.state != "succeeded" {
            println!("{:<24} gpu: {} ({})", "", gpu.view.state, gpu.view.error.clone().unwrap_or_default());
        }
        if gpu.view.stages.len() > 1 {
            for s in &gpu.view.stages {
                let secs = stage_seconds(s);
                let watts = s.energy_wh.zip(secs).filter(|(_, t)| *t > 0.0).map(|(e, t)| e * 3600.0 / t);
                println!(
                    "  stage {:<16} {:<10} {:<8} {:>8} s {:>10} Wh {:>8} W avg",
                    s.name,
                    s.state,
                    s.device.clone().unwrap_or_default(),
                    secs.map_or("-".into(), |t| format!("{t:.3}")),
                    s.energy_wh.map_or("-".into(), |e| format!("{e:.5}")),
                    watts.map_or("-".into(), |w| format!("{w:.0}")),
                );
            }
        }
        rows.push(json!({"job": label, "cpu_cold_s": cpu.cold_s, "cpu_warm_s": cpu.warm_s, "gpu_cold_s": gpu.cold_s,
            "gpu_warm_s": gpu.warm_s, "speedup": cpu.warm_s / gpu.warm_s, "placed": placed, "gpu_state": gpu.view.state,
            "energy_wh": gpu.view.energy_wh, "vram_reserved_mib": gpu.view.vram_mib, "nvml_peak_mib": gpu.nvml_peak_mib, "nvml_grew_mib": gpu.nvml_grew_mib,
            "max_abs_diff": diffs.iter().map(|(n, d)| json!({"output": n, "diff": d})).collect::<Vec<_>>()}));
    }
    println!("(images: 8-bit levels 0-255; sounds: samples on the -1..1 scale)");
    Value::Array(rows)
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.dedup();
    v
}

fn stage_seconds(s: &reelbox::api::views::StageView) -> Option<f64> {
    seconds_between(&s.started_at, &s.finished_at)
}

/// The image jobs once more on the GPU with TF32 off, beside the CPU's outputs: how much
/// of the GPU/CPU difference TF32 accounts for, and what turning it off costs.
async fn without_tf32(
    g: &Global,
    config: &Config,
    scratch: &Path,
    gpu: u32,
    inputs: &DemoInputs,
    results: &[(String, Option<Outcome>, Option<Outcome>)],
) -> anyhow::Result<Value> {
    let mut c = config.clone();
    c.data_dir = scratch.join("daemon-no-tf32");
    c.workers.gpus = vec![gpu];
    c.runtime.cuda_tf32 = false;
    let reach = Reach::start(g, c).await?;
    println!("\nimage jobs on cuda:{gpu} with TF32 off (runtime.cuda_tf32 = false)");
    let mut rows = Vec::new();
    for spec in specs(&reach.client, inputs).await?.iter().filter(|s| s.route == "/api/v1/images") {
        let Some((_, Some(cpu), tf32)) = results.iter().find(|r| r.0 == spec.label) else { continue };
        let dir = scratch.join("out-no-tf32").join(spec.label.replace(' ', "_"));
        let run = run_spec(&reach.client, spec, &dir, 2, gpu).await?;
        let diffs = output_diffs(cpu, &run);
        let with = tf32.as_ref().map(|t| output_diffs(cpu, t));
        println!(
            "{:<24} warm {:.3} s (with TF32 {}), max |gpu-cpu| {} (with TF32 {})",
            spec.label,
            run.warm_s,
            tf32.as_ref().map_or("-".into(), |t| format!("{:.3} s", t.warm_s)),
            diffs.iter().map(|(n, d)| format!("{n} {d}")).collect::<Vec<_>>().join(", "),
            with.map_or("-".into(), |w| w.iter().map(|(n, d)| format!("{n} {d}")).collect::<Vec<_>>().join(", "))
        );
        rows.push(json!({"job": spec.label, "warm_s": run.warm_s, "max_abs_diff": diffs.iter().map(|(n, d)| json!({"output": n, "diff": d})).collect::<Vec<_>>()}));
    }
    reach.close().await;
    Ok(Value::Array(rows))
}

/// The largest difference per output both devices wrote.
fn output_diffs(cpu: &Outcome, gpu: &Outcome) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for a in &cpu.outputs {
        let Some(name) = a.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        let Some(b) = gpu.outputs.iter().find(|b| b.file_name().is_some_and(|n| n.to_string_lossy() == name)) else {
            continue;
        };
        let d = if name.ends_with(".wav") {
            diff::audio_max_abs(a, b).map(|d| format!("{d:.5}"))
        } else {
            diff::image_max_abs(a, b).map(|d| d.to_string())
        };
        out.push((name, d.unwrap_or_else(|e| e.to_string())));
    }
    out
}

/// Lip-sync of the CPU's narration onto the demo portrait, on the CPU and the GPU, frame
/// by frame (the job itself writes MP4 through ffmpeg).
async fn lipsync_pipeline(
    config: &Config,
    inputs: &DemoInputs,
    wav: &Path,
    target: DeviceId,
    runs: usize,
) -> anyhow::Result<Value> {
    use reelbox::pipelines::lipsync::{FaceBox, FaceTrack, Wav2Lip, lipsync_frames};
    let audio = reelbox::media::decode_file(wav)?.mono_at(16_000)?;
    let portrait = image::open(&inputs.portrait)?.to_rgb8();
    let model = config.models_dir().join("demo-presenter/model.onnx");
    let face = FaceBox::from_xywh(inputs.face_box);
    let engine = Arc::new(Engine::new(config));
    let mut out = Vec::new();
    for device in [DeviceId::Cpu, target] {
        let (engine, audio, portrait, model) = (engine.clone(), audio.clone(), portrait.clone(), model.clone());
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<f64>, Vec<image::RgbImage>)> {
            let mut times = Vec::new();
            let mut frames = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                let m = Wav2Lip::load(&engine, device, &model)?;
                let track = FaceTrack::still(&portrait, face)?;
                let cancel = CancellationToken::new();
                let clip = lipsync_frames(&m, track, &audio, 25, 16, &cancel, &|_| {})?;
                frames = clip.collect::<Result<Vec<_>, _>>()?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok((times, frames))
        })
        .await??;
        out.push(result);
    }
    let (cpu, gpu_run) = (&out[0], &out[1]);
    let diff = cpu
        .1
        .iter()
        .zip(&gpu_run.1)
        .flat_map(|(a, b)| a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)))
        .max();
    let (cw, gw) = (cpu.0.last().copied().unwrap_or(f64::NAN), gpu_run.0.last().copied().unwrap_or(f64::NAN));
    println!(
        "\nlip-sync demo-presenter (pipeline, {} frames): cpu cold {:.3} s warm {:.3} s, gpu cold {:.3} s warm {:.3} s, speedup {:.2}x, max |gpu-cpu| {} levels",
        cpu.1.len(),
        cpu.0[0],
        cw,
        gpu_run.0[0],
        gw,
        cw / gw,
        diff.map_or("-".into(), |d| d.to_string())
    );
    Ok(json!({"frames": cpu.1.len(), "cpu_s": cpu.0, "gpu_s": gpu_run.0, "speedup": cw / gw, "max_abs_diff": diff}))
}

//! What the daemon's GPU telemetry says during the bench: the memory its process holds
//! (polled while jobs run), and NVML's reading beside `nvidia-smi`'s with the energy
//! counter against the reported power.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reelbox::gpu::{GpuSample, smi};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cli::client::Client;

/// GPU memory the daemon's process holds now, MiB (after the sampler's next reading).
pub(super) async fn held_now(c: &Client, gpu: u32) -> Option<u64> {
    let system: Value = c.get("/api/v1/system").await.ok()?;
    gpu_sample(&system, gpu)?.ours_mib()
}

/// Polls the daemon's telemetry and keeps the most GPU memory its own process held.
pub(super) async fn watch_memory(c: Client, gpu: u32, held: Arc<AtomicU64>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if let Ok(system) = c.get::<Value>("/api/v1/system").await
            && let Some(s) = gpu_sample(&system, gpu)
            && let Some(ours) = s.ours_mib()
        {
            held.fetch_max(ours, Ordering::Relaxed);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// The daemon's latest sample of GPU `gpu`, from a `GET /api/v1/system` answer.
fn gpu_sample(system: &Value, gpu: u32) -> Option<GpuSample> {
    let gpus = system["telemetry"]["latest"]["gpus"].as_array()?;
    gpus.iter().filter_map(|g| serde_json::from_value::<GpuSample>(g.clone()).ok()).find(|g| g.index == gpu)
}

/// GET /api/v1/system's NVML reading beside nvidia-smi's, and the energy counter against
/// the power the driver reports over a few seconds.
pub(super) async fn telemetry(c: &Client, gpu: u32) -> Value {
    println!("\nNVML through GET /api/v1/system beside nvidia-smi (cuda:{gpu})");
    let first: Option<Value> = c.get("/api/v1/system").await.ok();
    let smi = tokio::task::spawn_blocking(move || smi::read(gpu).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let Some(sample) = first.as_ref().and_then(|s| gpu_sample(s, gpu)) else {
        println!("the daemon's telemetry has no reading of GPU {gpu}");
        return json!({"error": "no NVML reading"});
    };
    let rows = match &smi {
        Ok(r) => smi::compare(&sample, r),
        Err(e) => {
            println!("{e}");
            Vec::new()
        }
    };
    println!("{:<20} {:>12} {:>12} {:>10}  agrees", "field", "nvml", "nvidia-smi", "tolerance");
    for r in &rows {
        let f = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.1}"));
        println!(
            "{:<20} {:>12} {:>12} {:>10.1}  {}",
            r.field,
            f(r.nvml),
            f(r.smi),
            r.tolerance,
            if r.agrees { "yes" } else { "NO" }
        );
    }
    // The energy counter over a quiet stretch, against the power readings in between.
    let started = Instant::now();
    let mut powers = Vec::new();
    let e0 = sample.energy_mj;
    let mut e1 = None;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(s) = c.get::<Value>("/api/v1/system").await
            && let Some(g) = gpu_sample(&s, gpu)
        {
            powers.extend(g.power_w);
            e1 = g.energy_mj.or(e1);
        }
    }
    let mean_reported = (!powers.is_empty()).then(|| powers.iter().sum::<f64>() / powers.len() as f64);
    let from_counter = e0.zip(e1).and_then(|(a, b)| smi::mean_power_w(a, b, started.elapsed().as_secs_f64()));
    println!(
        "energy counter: {} mJ; mean power from the counter {} W, from power readings {} W",
        e1.map_or("n/a".into(), |e| e.to_string()),
        from_counter.map_or("n/a".into(), |w| format!("{w:.1}")),
        mean_reported.map_or("n/a".into(), |w| format!("{w:.1}"))
    );
    json!({"nvml": sample, "nvidia_smi": smi.ok(), "agreement": rows, "energy_mj": e1,
           "mean_power_from_counter_w": from_counter, "mean_power_reported_w": mean_reported})
}

//! `reelbox status`: the box on one screen, from the daemon (`GET /api/v1/system` and
//! `/api/v1/models`), for an admin who types it as they would `systemctl status`.

use std::process::ExitCode;

use reelbox::api::models::ModelList;
use reelbox::api::system::SystemView;
use reelbox::disk::human_bytes;
use reelbox::tui::format;

use super::Global;
use super::client::Client;
use super::hint::Hint;

/// Prints the summary; a daemon that does not answer is the usual error (exit 1).
pub async fn run(g: &Global) -> anyhow::Result<ExitCode> {
    let c = Client::new(g)?;
    let system: SystemView = c.get("/api/v1/system").await?;
    let models: ModelList = c.get("/api/v1/models").await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"system": system, "models": models}))?);
    } else {
        print!("{}", summary(&c.place(), c.hint(), &system, &models));
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary's lines: each a label and what the box says about it.
fn summary(place: &str, hint: &Hint, s: &SystemView, models: &ModelList) -> String {
    let mut lines =
        vec![("reelbox", format!("{} at {place}, up {}", s.version, format::duration(s.uptime_s as i64 * 1000)))];
    for d in &s.devices {
        let what = match (&d.name, d.memory_total_mib) {
            (Some(name), Some(mib)) => format!("{} {name} ({})", d.id, format::mib(mib)),
            _ => d.id.clone(),
        };
        lines.push(("device", format!("{what}: {} of {} workers busy", d.running, d.workers)));
    }
    if let Some(why) = &s.gpus_unusable {
        lines.push(("gpus", format!("found but unused, jobs run on the CPU: {why}")));
    }
    let q = &s.queue.by_state;
    let paused =
        if s.paused { format!("; the queue is PAUSED ({})", hint.command("queue resume")) } else { String::new() };
    lines.push((
        "jobs",
        format!(
            "{} running, {} queued (at most {}); {} succeeded, {} failed, {} canceled{paused}",
            q.running, q.queued, s.queue.max_queued, q.succeeded, q.failed, q.canceled
        ),
    ));
    for (what, space) in [("data dir", s.disk.data), ("models dir", s.disk.models)] {
        let Some(space) = space else { continue };
        let low = if space.is_low(s.disk.min_free_bytes) {
            format!("; LOW: {}", reelbox::disk::stops(what))
        } else {
            String::new()
        };
        let free = format!("{} free of {}", human_bytes(space.free_bytes), human_bytes(space.total_bytes));
        lines.push(("disk", format!("{what}: {free}{low}")));
    }
    let installed: Vec<String> = models
        .models
        .iter()
        .filter(|m| m.state != "not_installed")
        .map(|m| match (m.state.as_str(), m.default) {
            ("damaged", _) => format!("{} (DAMAGED)", m.name),
            (_, true) => format!("{} (default {})", m.name, m.kind),
            _ => m.name.clone(),
        })
        .collect();
    let list = if installed.is_empty() { "none (reelbox pull NAME)".into() } else { installed.join(", ") };
    lines.push(("models", format!("{} installed: {list}", installed.len())));
    lines.iter().map(|(label, text)| format!("{label:8} {text}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_devices_jobs_disk_and_models_in_one_screen() {
        let system: SystemView = serde_json::from_value(serde_json::json!({
            "version": "0.1.0", "uptime_s": 3725, "paused": true, "kinds": [],
            "devices": [
                {"id": "cpu", "workers": 2, "running": 1},
                {"id": "cuda:0", "workers": 1, "running": 0, "name": "RTX 4090", "memory_total_mib": 24564}
            ],
            "queue": {"by_state": {"queued": 2, "running": 1, "succeeded": 5, "failed": 1, "canceled": 0},
                      "max_queued": 100},
            "disk": {"data": {"free_bytes": 1_000_000, "total_bytes": 100_000_000_000u64}, "models": null,
                     "min_free_bytes": 2_000_000}
        }))
        .expect("system");
        let models: ModelList = serde_json::from_value(serde_json::json!({"models_dir": "/m", "models": [
            {"name": "joe", "kind": "tts", "demo": false, "test": false, "summary": "", "size": 1,
             "state": "installed", "verified_at": null, "path": "/m/joe", "sources": [], "origin": "manifest",
             "default": true},
            {"name": "far", "kind": "upscale", "demo": false, "test": false, "summary": "", "size": 1,
             "state": "not_installed", "verified_at": null, "path": null, "sources": [], "origin": "manifest"}
        ]}))
        .expect("models");
        let text = summary("http://127.0.0.1:8470", &Hint::default(), &system, &models);
        assert!(text.starts_with("reelbox  0.1.0 at http://127.0.0.1:8470, up 1h02m\n"), "{text}");
        assert!(text.contains("device   cpu: 1 of 2 workers busy\n"), "{text}");
        assert!(text.contains("device   cuda:0 RTX 4090 (24.0G): 0 of 1 workers busy\n"), "{text}");
        assert!(
            text.contains(
                "jobs     1 running, 2 queued (at most 100); 5 succeeded, 1 failed, 0 canceled; the queue is PAUSED"
            ),
            "{text}"
        );
        assert!(text.contains("disk     data dir: 1.0 MB free of 100.0 GB; LOW: jobs wait"), "{text}");
        assert!(text.contains("models   1 installed: joe (default tts)\n"), "{text}");
    }
}

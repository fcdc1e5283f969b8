//! How `reelbox jobs show`, `cancel`, `retry` and `watch` print a job: on one screen of 80
//! columns, a stage's files as a count (their ids are in `--json`), and a render with what a
//! filmmaker asks of it: its script, picture, the models that made it and its profile, how
//! long it took, the film's length and size, its files by name, and how to save it; a
//! picture job with its prompt, size, steps and seed, and the models each pass ran.

use reelbox::api::views::{ArtifactView, JobView, ProfileView};
use reelbox::store::records::JobStatus;
use reelbox::tui::format::{duration, fit, parse_time};
use serde_json::Value;
use unicode_width::UnicodeWidthStr;

use super::super::client::Client;
use super::super::models::human_bytes;
use super::super::{Global, table};

/// The screen's width a job is printed for.
const COLUMNS: usize = 80;

/// How much of the script's first line is shown, in display columns (a CJK character
/// takes two): what an 80-column line leaves beside its label and `… (+999 lines)`.
const SCRIPT_COLUMNS: usize = 56;

/// Prints the job (its JSON with `--json`).
pub(in crate::cli) fn print_job(g: &Global, job: &JobView) -> anyhow::Result<()> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(job)?);
        return Ok(());
    }
    head(job);
    stages(job);
    Ok(())
}

/// Prints the job as `jobs show` does: a render also with its film (what the box is asked
/// for besides the job: its files, its narration's length, the profile of its presenter).
pub(in crate::cli) async fn show(c: &Client, g: &Global, job: &JobView) -> anyhow::Result<()> {
    if !g.json && job.kind == "image" {
        head(job);
        for (label, text) in image_lines(&job.params) {
            println!("{label:<8} {text}");
        }
        stages(job);
        return Ok(());
    }
    if g.json || job.kind != "render" {
        return print_job(g, job);
    }
    head(job);
    let artifacts: Vec<ArtifactView> = c.get(&format!("/api/v1/jobs/{}/artifacts", job.id)).await?;
    for (label, text) in render_lines(c, job, &artifacts).await {
        println!("{label:<8} {text}");
    }
    stages(job);
    if job.state == JobStatus::Succeeded {
        let save = c.command(&format!("jobs get {}", job.id));
        let line = format!("save it  {save} (-o DIR: into that folder)");
        // With a `--url` the command no longer fits beside its note: it goes whole on a line
        // of its own, to be copied as it is.
        if line.width() <= COLUMNS {
            println!("{line}");
        } else {
            println!("save it  (-o DIR: into that folder)\n  {save}");
        }
    }
    Ok(())
}

/// The lines every job has: its id, kind, state and why it waits or ended.
fn head(job: &JobView) {
    println!("job      {}", job.id);
    println!("kind     {}", job.kind);
    println!("state    {}", job.state);
    println!("priority {}", job.priority);
    println!("attempts {}", job.attempts);
    println!("progress {:.0}%", job.progress.fraction * 100.0);
    if let Some(w) = &job.waiting {
        println!("waiting  {w}");
    }
    if let Some(e) = &job.error {
        // A canceled job's `error` is why it was canceled, not a fault.
        let label = if job.state == JobStatus::Canceled { "reason" } else { "error" };
        println!("{label:<8} {e}");
    }
}

/// The stages, each with how long it took and how many files it made.
fn stages(job: &JobView) {
    let rows: Vec<Vec<String>> = job
        .stages
        .iter()
        .map(|s| {
            let took = parse_time(s.started_at.as_deref())
                .zip(parse_time(s.finished_at.as_deref()))
                .map(|(a, b)| duration(b - a))
                .unwrap_or_default();
            let files = if s.artifacts.is_empty() { String::new() } else { s.artifacts.len().to_string() };
            vec![s.name.clone(), s.state.to_string(), s.device.clone().unwrap_or_default(), took, files]
        })
        .collect();
    table::print(&["STAGE", "STATE", "DEVICE", "TOOK", "FILES"], &rows);
}

/// A render's own lines: label and text.
async fn render_lines(c: &Client, job: &JobView, artifacts: &[ArtifactView]) -> Vec<(&'static str, String)> {
    let p = &job.params;
    let mut lines = Vec::new();
    if let Some(script) = p["script"].as_str() {
        lines.push(("script", first_line(script)));
    }
    let mut look = Vec::new();
    if let (Some(w), Some(h)) = (p["width"].as_u64(), p["height"].as_u64()) {
        look.push(format!("{w}x{h}"));
    }
    if let Some(fps) = p["fps"].as_u64() {
        look.push(format!("{fps} fps"));
    }
    if !look.is_empty() {
        lines.push(("picture", look.join(", ")));
    }
    for (i, text) in wrapped(&models_used(p)).into_iter().enumerate() {
        lines.push((if i == 0 { "models" } else { "" }, text));
    }
    if let Some(id) = p["profile"].as_str() {
        lines.push(("profile", submitted_profile(c, id).await));
    } else if let Some(portrait) = p["presenter"]["portrait"].as_str() {
        lines.push(("profile", presenter_profile(c, portrait).await));
    }
    // The job view's own start (its first, across crashes) and end: what `reelbox top` says.
    if let Some(ms) =
        parse_time(job.started_at.as_deref()).zip(parse_time(job.finished_at.as_deref())).map(|(a, b)| b - a)
    {
        lines.push(("took", duration(ms)));
    }
    if let Some(film) = artifacts.iter().find(|a| a.name == "film.mp4") {
        let length = film_seconds(c, artifacts).await.map(|s| format!("{}, ", duration((s * 1000.0) as i64)));
        lines.push(("film", format!("{}{}", length.unwrap_or_default(), human_bytes(film.size))));
    }
    let mut results = super::super::jobs_get::results(job, artifacts.to_vec(), false);
    results.sort_by(|a, b| a.name.cmp(&b.name));
    if !results.is_empty() {
        let named: Vec<String> = results.iter().map(|a| format!("{} {}", a.name, human_bytes(a.size))).collect();
        lines.push(("files", named.join(", ")));
    }
    lines
}

/// The models a render's stages ran, by what each made: the pictures' diffusion model, the
/// voice, and the lip-sync (a presenter shown), face detector (one found the face) and
/// upscale (`upscale`) models only where the film used them. Its `--json` lists the
/// same names as `models`, without saying which made what (a default that no stage ran too).
fn models_used(p: &Value) -> Vec<String> {
    let presenting = p["presenter"].is_object() && p["layout"] != "none";
    let used = [
        ("pictures", p["model"].as_str(), true),
        ("voice", p["voice"].as_str(), true),
        ("lip-sync", p["lipsync_model"].as_str(), presenting),
        ("face detector", p["presenter"]["face_model"].as_str(), presenting),
        ("upscale", p["upscale_model"].as_str(), p["upscale"] == true),
    ];
    used.into_iter()
        .filter_map(|(what, name, ran)| Some(format!("{what} {}", name.filter(|n| ran && !n.is_empty())?)))
        .collect()
}

/// A picture job's own lines: its prompt, the pictures asked for (size, count, steps, seed: what
/// draws the same again) and the models each pass ran.
fn image_lines(p: &Value) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if let Some(prompt) = p["prompt"].as_str() {
        lines.push(("prompt", first_line(prompt)));
    }
    if let (Some(w), Some(h)) = (p["width"].as_u64(), p["height"].as_u64()) {
        let mut picture = format!("{w}x{h}");
        if let Some(n) = p["n"].as_u64().filter(|n| *n > 1) {
            picture.push_str(&format!(" ×{n}"));
        }
        if let Some(steps) = p["steps"].as_u64() {
            picture.push_str(&format!(", {steps} steps"));
        }
        if let Some(seed) = p["seed"].as_u64() {
            picture.push_str(&format!(", seed {seed}"));
        }
        lines.push(("picture", picture));
    }
    for (i, text) in wrapped(&image_models(p)).into_iter().enumerate() {
        lines.push((if i == 0 { "models" } else { "" }, text));
    }
    lines
}

/// The models a picture job's stages ran, by what each did: the first pass's, the second
/// pass's where it had its own model and its upscale model, the last upscale's.
fn image_models(p: &Value) -> Vec<String> {
    let model = p["model"].as_str();
    let refine = &p["refine"];
    let used = [
        ("pictures", model),
        ("second pass", refine["model"].as_str().filter(|m| Some(*m) != model)),
        ("second pass upscale", refine["upscale_model"].as_str()),
        ("upscale", p["upscale_model"].as_str()),
    ];
    used.into_iter().filter_map(|(what, name)| Some(format!("{what} {}", name.filter(|n| !n.is_empty())?))).collect()
}

/// `items` joined by commas into lines that fit beside an 8-column label on 80 columns.
fn wrapped(items: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for item in items {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 2 + item.chars().count() <= 80 - 9 => {
                line.push_str(", ");
                line.push_str(item);
            }
            _ => lines.push(item.clone()),
        }
    }
    lines
}

/// The script's first line, cut to fit the screen, with how many more it has.
fn first_line(script: &str) -> String {
    let mut lines = script.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    // Cut by columns with its `…`: 56 Japanese characters took 111 columns.
    let cut = fit(first, SCRIPT_COLUMNS + 1);
    let more = lines.count();
    if more == 0 { cut } else { format!("{cut} (+{more} lines)") }
}

/// The name of the profile the render was submitted with (it keeps the id), or the id of
/// one since deleted.
async fn submitted_profile(c: &Client, id: &str) -> String {
    let profile: Option<ProfileView> = c.get(&format!("/api/v1/profiles/{id}")).await.ok();
    profile.map_or_else(|| format!("{id} (deleted)"), |p| p.name)
}

/// For a render from before it kept its profile: the profile whose portrait the presenter
/// is, or what the presenter is when no profile of the caller's has it.
async fn presenter_profile(c: &Client, portrait: &str) -> String {
    let profiles: Vec<ProfileView> = c.get("/api/v1/profiles").await.unwrap_or_default();
    profiles
        .into_iter()
        .find(|p| p.portrait.as_deref() == Some(portrait))
        .map_or_else(|| format!("none (presenter portrait {portrait})"), |p| p.name)
}

/// The film's length: its narration's, which the narration stage writes in `timeline.json`
/// (the film is cut to it). `None` when the job has none (a render from before).
async fn film_seconds(c: &Client, artifacts: &[ArtifactView]) -> Option<f64> {
    let timeline = artifacts.iter().find(|a| a.name == "timeline.json")?;
    let v: Value = c.get(&timeline.url).await.ok()?;
    v["duration"].as_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_shows_its_first_line_cut_to_the_screen() {
        assert_eq!(first_line("\n  Hello there.  \n"), "Hello there.");
        let long = "word ".repeat(30);
        let shown = first_line(&format!("{long}\n\nSecond.\nThird."));
        assert!(shown.ends_with("… (+2 lines)"), "{shown}");
        let many = first_line(&format!("{long}{}", "\nMore.".repeat(999)));
        assert!(format!("script   {many}").width() <= 80, "{many}");
        let kyoto = first_line(&"今日はとても良い天気ですね。".repeat(8));
        assert_eq!(format!("script   {kyoto}").width(), 9 + 56 + 1, "{kyoto}");
        assert!(kyoto.ends_with('…'), "{kyoto}");
    }

    #[test]
    fn the_models_line_names_what_each_stage_ran_and_fits_the_screen() {
        let film = serde_json::json!({"model": "Realistic-Vision-V5.1-fp16", "voice": "en_US-joe-medium",
            "lipsync_model": "wav2lip_gan", "upscale_model": "4x-UltraSharp", "upscale": true, "layout": "inset",
            "presenter": {"portrait": "01J", "face_box": [1, 2, 3, 4]}});
        let used = models_used(&film);
        assert_eq!(
            used,
            [
                "pictures Realistic-Vision-V5.1-fp16",
                "voice en_US-joe-medium",
                "lip-sync wav2lip_gan",
                "upscale 4x-UltraSharp"
            ]
        );
        let lines = wrapped(&used);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| format!("models   {l}").chars().count() <= 80), "{lines:?}");
        // Without a presenter shown or upscaling, their defaults ran no stage.
        let plain = serde_json::json!({"model": "sd", "voice": "joe", "lipsync_model": "wav2lip_gan",
            "upscale_model": "x4", "upscale": false, "layout": "none", "presenter": {"portrait": "01J"}});
        assert_eq!(models_used(&plain), ["pictures sd", "voice joe"]);
    }

    #[test]
    fn a_picture_job_says_its_prompt_size_seed_and_each_passs_models() {
        let job = serde_json::json!({"prompt": "a red door\non a hill", "width": 512, "height": 768, "n": 2,
            "steps": 20, "seed": 42, "model": "dreamshaper-8",
            "refine": {"model": "realistic-vision", "upscale_model": "4x-UltraSharp"}, "upscale_model": "x2"});
        let lines = image_lines(&job);
        assert_eq!(lines[0], ("prompt", "a red door (+1 lines)".to_string()));
        assert_eq!(lines[1], ("picture", "512x768 ×2, 20 steps, seed 42".to_string()));
        let models: Vec<&str> = lines[2..].iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            models.join(", "),
            "pictures dreamshaper-8, second pass realistic-vision, second pass upscale 4x-UltraSharp, upscale x2"
        );
        assert!(lines.iter().all(|(_, l)| format!("models   {l}").chars().count() <= 80), "{lines:?}");
        // A second pass on the first's model says none of its own.
        let same = serde_json::json!({"model": "sd", "refine": {"model": "sd"}});
        assert_eq!(image_models(&same), ["pictures sd"]);
    }
}

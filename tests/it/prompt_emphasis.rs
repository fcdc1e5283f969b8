//! A prompt's emphasis and length on the real daemon with the tiny SD model, as ComfyUI and
//! A1111 read them: `(red:1.5)` weighs the word (another picture than `red`), `(red:1)` is
//! `red` to the pixel; A1111's reading (`sample_as: a1111`, its own route's) weighs another
//! way and reads `[ ]` too; and the words past a prompt's first 75 tokens change the picture,
//! as they do there. Before, brackets and numbers were drawn as words, and a prompt was cut at
//! 75 tokens with a warning in the job's log.

use crate::common;

use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use image::RgbImage;
use reqwest::StatusCode;
use serde_json::json;

use crate::comfy_denoise::totals_and_log;
use crate::hires_checkpoint::post;

/// Runs a 64² tiny-sd picture of `prompt` by `rule`'s arithmetic: its pixels and its log.
async fn drawn(c: &reqwest::Client, d: &DaemonProc, prompt: &str, rule: &str) -> (RgbImage, Vec<String>) {
    drawn_against(c, d, (prompt, "blurry"), rule).await
}

/// [`drawn`] with a negative prompt of its own.
pub(crate) async fn drawn_against(
    c: &reqwest::Client,
    d: &DaemonProc,
    (prompt, negative): (&str, &str),
    rule: &str,
) -> (RgbImage, Vec<String>) {
    let body = json!({"prompt": prompt, "negative_prompt": negative, "model": TINY_SD, "width": 64,
        "height": 64, "steps": 4, "guidance": 7, "seed": 11, "scheduler": "euler", "schedule": "normal",
        "sample_as": rule, "preview_every": 0});
    let (status, job) = post(c, d, "/api/v1/images", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(c, d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let png = common::render::artifact(c, d, id, "image.png").await;
    let log = totals_and_log(c, d, id).await.1;
    (image::load_from_memory(&png).expect("a picture").to_rgb8(), log)
}

fn warned(log: &[String]) -> bool {
    log.iter().any(|l| l.contains("longer than"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emphasis_weighs_words_as_comfyui_and_a1111_read_it() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    for rule in ["comfyui", "a1111"] {
        let (plain, _) = drawn(&c, &d, "a red door", rule).await;
        let (one, _) = drawn(&c, &d, "a (red:1) door", rule).await;
        assert!(one == plain, "{rule}: a weight of 1 is the word as it is");
        let (more, _) = drawn(&c, &d, "a (red:1.5) door", rule).await;
        assert!(more != plain, "{rule}: a weight of 1.5 draws another picture");
        let (escaped, _) = drawn(&c, &d, "a \\(red\\) door", rule).await;
        assert!(escaped != plain, "{rule}: escaped brackets are words");
    }
    // Each its own way: ComfyUI moves a weighed word from the empty prompt's, A1111 scales
    // and keeps the chunk's mean.
    let (comfy, _) = drawn(&c, &d, "a (red:1.5) door", "comfyui").await;
    let (a1111, _) = drawn(&c, &d, "a (red:1.5) door", "a1111").await;
    assert!(comfy != a1111, "the two readings weigh alike");
    // `[red]` is A1111's ÷1.1; ComfyUI draws the brackets.
    let (square, _) = drawn(&c, &d, "a [red] door", "a1111").await;
    let (divided, _) = drawn(&c, &d, "a (red:0.9090909090909091) door", "a1111").await;
    assert!(square == divided, "A1111's [red] is (red:1/1.1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_past_75_tokens_goes_on_in_another_chunk() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let long = |tail: &str| format!("a red door, {}, {tail}", "photo ".repeat(90).trim_end());
    for rule in ["comfyui", "a1111"] {
        let (cat, log) = drawn(&c, &d, &long("cat"), rule).await;
        assert!(!warned(&log), "{rule}: nothing dropped: {log:?}");
        let (door, _) = drawn(&c, &d, &long("red"), rule).await;
        assert!(cat != door, "{rule}: the words past 75 tokens change nothing");
        let (short, _) = drawn(&c, &d, "a red door", rule).await;
        assert!(cat != short);
    }
}

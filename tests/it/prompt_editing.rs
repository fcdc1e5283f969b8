//! A1111's prompt editing and alternation on the real daemon with the tiny SD model, under
//! A1111's reading (its `/sdapi` routes, `sample_as: a1111`): `[red:blue:N]` draws `red` up
//! to step N and `blue` after, as A1111's step counter counts (`red` to the pixel where N is
//! past the last step, `blue` where it is 0), `[red|blue]` changes every step, a negative
//! prompt is edited alike, and in a hires fix's second pass a whole N counts on from the
//! first pass's steps (the picture of `[red:blue:4]` after a 4-step first pass is the one of
//! `red` with a `blue` hires prompt). ComfyUI's reading draws the brackets as words. Before,
//! every reading drew `[`, `:` and the numbers as words.

use crate::common;

use common::compat::{TINY_SD, models_dir, start_daemon};
use common::daemon::DaemonProc;
use image::RgbImage;
use serde_json::{Value, json};

use crate::a1111_hires::{pixels, txt2img_info};
use crate::prompt_emphasis::drawn_against;

/// A 64², 4-step tiny-sd picture of `prompt` (and `negative`) by `rule`'s reading.
async fn drawn(c: &reqwest::Client, d: &DaemonProc, prompt: &str, negative: &str, rule: &str) -> RgbImage {
    drawn_against(c, d, (prompt, negative), rule).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111s_prompt_editing_changes_the_prompt_at_its_step() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let a1111 = |prompt: &'static str, negative: &'static str| {
        let (c, d) = (&c, &d);
        async move { drawn(c, d, prompt, negative, "a1111").await }
    };
    let red = a1111("a red door", "blurry").await;
    let blue = a1111("a blue door", "blurry").await;
    assert!(red != blue, "the words draw other pictures");
    assert!(a1111("a [red:blue:9] door", "blurry").await == red, "edited past the last step: red throughout");
    assert!(a1111("a [red:blue:0] door", "blurry").await == blue, "edited before the first: blue throughout");
    let edited = a1111("a [red:blue:2] door", "blurry").await;
    assert!(edited != red && edited != blue, "red for the first steps, blue after");
    assert!(a1111("a [red:blue:0.5] door", "blurry").await == edited, "a share of the steps: half of 4 is 2");
    let alternated = a1111("a [red|blue] door", "blurry").await;
    assert!(alternated != red && alternated != blue && alternated != edited, "red and blue step by step");
    assert!(a1111("a [red|red] door", "blurry").await == red, "alternating one word is the word");
    // The negative prompt is edited too.
    let sharp = a1111("a red door", "sharp").await;
    assert!(sharp != red);
    assert!(a1111("a red door", "[blurry:sharp:0]").await == sharp, "the negative prompt edited");
    // ComfyUI's reading has no editing: the brackets, colons and number are words.
    let comfy = drawn(&c, &d, "a [red:blue:0] door", "blurry", "comfyui").await;
    assert!(comfy != drawn(&c, &d, "a blue door", "blurry", "comfyui").await, "ComfyUI edits nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hires_fixs_second_pass_counts_whole_steps_on_from_the_first() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let hires = |prompt: &str, more: Value| {
        let mut body = json!({"prompt": prompt, "seed": 7, "steps": 4, "cfg_scale": 7, "width": 64, "height": 64,
            "sampler_name": "Euler", "enable_hr": true, "hr_scale": 1.5, "hr_upscaler": "Latent",
            "denoising_strength": 0.6, "hr_second_pass_steps": 4,
            "override_settings": {"sd_model_checkpoint": TINY_SD}});
        body.as_object_mut().expect("object").extend(more.as_object().cloned().unwrap_or_default());
        body
    };
    let two_prompts = txt2img_info(&c, &d, &hires("a red door", json!({"hr_prompt": "a blue door"}))).await.0;
    // Step 4 ends the first pass: red through it, blue through the second.
    let edited = txt2img_info(&c, &d, &hires("a [red:blue:4] door", json!({}))).await.0;
    assert!(pixels(&edited) == pixels(&two_prompts), "the second pass counts on from the first's 4 steps");
    // A share past 1 is of the second pass: 1.5 is its step 2.
    let shared = txt2img_info(&c, &d, &hires("a [red:blue:1.5] door", json!({}))).await.0;
    assert!(pixels(&shared) != pixels(&two_prompts), "blue from the second pass's step 2 on");
}

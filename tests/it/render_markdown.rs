//! A script written in Markdown (`story.md`), rendered by the real daemon: `reelbox render
//! story.md` reads it as Markdown by its name, so the voice never says the heading's `#`
//! and the subtitles never show `*cold*` with its asterisks; a heading is a title scene of
//! its own and an image's alt text draws its scene. The API takes `script_format`, and
//! refuses a format it does not know, or Markdown with nothing to narrate, naming the field.
//! `POST /api/v1/renders/plan` previews the plan the render makes, queueing nothing.

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::render::models_dir;
use common::tools::reelbox_beside;
use serde_json::{Value, json};

const STORY: &str = "---\ntitle: draft 3\n---\n\n# My trip\n\nWe went to the *sea*. It was **cold**.\n\n\
                     ## Day two\n![a lighthouse on a cliff](cliff.jpg)\nThe sun came out.\n\n\
                     <!-- ask Sam about the photos -->\n";

fn start(dir: &std::path::Path) -> DaemonProc {
    let models = models_dir(dir);
    common::render::daemon(dir, &models)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_markdown_script_is_narrated_without_its_marks_and_its_headings_are_title_scenes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    std::fs::write(dir.path().join("story.md"), STORY).expect("script");
    // The preview (New film's) plans it as the render will, queueing nothing.
    let body = json!({"script": STORY, "script_format": "markdown", "model": "tiny-sd", "width": 128, "height": 96});
    let (status, preview) = post_json(&c, &d, "/api/v1/renders/plan", body).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["title"], "My trip", "{preview}");
    assert!(preview["estimated_seconds"].as_f64().is_some_and(|s| s > 1.0 && s < 10.0), "{preview}");
    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "a preview queues nothing: {jobs}");
    let out = reelbox_beside(&d, dir.path())
        .args(["render", "story.md", "--model", "tiny-sd", "--width", "128", "--height", "96"])
        .output()
        .expect("reelbox render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let srt = std::fs::read_to_string(dir.path().join("story.srt")).expect("subtitles beside the film");
    let cues: Vec<&str> = srt.split("\n\n").filter_map(|cue| cue.lines().nth(2)).collect();
    assert_eq!(cues, ["My trip", "We went to the sea.", "It was cold.", "Day two", "The sun came out."], "{srt}");

    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    let id = jobs["jobs"][0]["id"].as_str().expect("the render");
    let plan: Value = serde_json::from_slice(&common::render::artifact(&c, &d, id, "plan.json").await).expect("plan");
    let prompts: Vec<&str> =
        plan["scenes"].as_array().expect("scenes").iter().filter_map(|s| s["prompt"].as_str()).collect();
    // The image's alt text is the last scene's picture, as a `[direction]` is.
    assert_eq!(
        prompts,
        ["My trip", "We went to the sea. It was cold.", "Day two", "a lighthouse on a cliff"],
        "{plan}"
    );
    for (previewed, planned) in
        preview["scenes"].as_array().expect("scenes").iter().zip(plan["scenes"].as_array().expect("scenes"))
    {
        assert_eq!(
            (&previewed["sentences"], &previewed["prompt"]),
            (&planned["sentences"], &planned["prompt"]),
            "{preview}"
        );
    }
    assert_eq!(preview["scenes"].as_array().map(Vec::len), Some(4), "{preview}");

    // The same script as text (the API's default) keeps its marks: the format is asked for.
    let body = json!({"script": STORY, "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
    let (status, job) = post_json(&c, &d, "/api/v1/renders", body).await;
    assert_eq!(status, 202, "{job}");
    assert!(job["params"]["script"].as_str().is_some_and(|s| s.contains("# My trip")), "{job}");
    let done = wait_job(&c, &d, job["id"].as_str().expect("id"), Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "a plain script with a `#` still renders: {done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_format_and_markdown_with_nothing_to_narrate_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    for (body, field, says) in [
        (json!({"script": "Hello.", "script_format": "rst"}), "script_format", "not text or markdown"),
        (
            json!({"script": "```\nfn main() {}\n```\n\n<!-- todo -->", "script_format": "markdown"}),
            "script",
            "nothing to narrate",
        ),
    ] {
        // The preview refuses it as the submission does.
        for path in ["/api/v1/renders", "/api/v1/renders/plan"] {
            let (status, answer) = post_json(&c, &d, path, body.clone()).await;
            assert_eq!((status, answer["error"]["field"].as_str()), (400, Some(field)), "{path} {body}: {answer}");
            assert!(answer["error"]["message"].as_str().unwrap_or("").contains(says), "{answer}");
        }
    }
    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {jobs}");
}

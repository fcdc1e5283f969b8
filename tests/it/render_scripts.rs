//! Scripts and options of every shape against the real daemon: what cannot make a film is
//! refused at submission naming the field (nothing queued), and a presenter profile is
//! found by the name `reelbox profiles list` shows (one of its owner's, never two) as well
//! as by its id.

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::provision;
use common::render::{models_dir, portrait_png};
use serde_json::{Value, json};

fn start(dir: &std::path::Path) -> DaemonProc {
    let models = models_dir(dir);
    common::render::daemon(dir, &models)
}

async fn profile(c: &reqwest::Client, d: &DaemonProc, name: &str) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("name", name.to_string())
        .text("face_box", "24,12,80,96")
        .part("portrait", reqwest::multipart::Part::bytes(portrait_png()).file_name("portrait.png"));
    c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile").json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_that_cannot_make_a_film_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    for (params, field, says) in [
        // A film of nothing failed at its last stage ("has no video stream"), after the rest.
        (json!({"script": "[a lighthouse at dusk]\n\n[the sea]"}), "script", "no words to speak"),
        (json!({"script": "...\n\n!? --"}), "script", "no words to speak"),
        (json!({"script": "😊 🌊\n\n✨"}), "script", "emoji, symbols and punctuation alone are not spoken"),
        (json!({"prompt": "[only a picture]"}), "prompt", "no words to speak"),
        // Both were taken, the prompt silently dropped.
        (json!({"script": "Hello.", "prompt": "a cat"}), "prompt", "not both"),
        // The keyframe's own size was reported as the film's `width`.
        (json!({"script": "Hello.", "keyframe_width": 100}), "keyframe_width", "multiple of 8"),
        (json!({"script": "Hello.", "keyframe_height": 9}), "keyframe_height", "multiple of 8"),
        // An odd size says which sizes would do.
        (json!({"script": "Hello.", "width": 100}), "width", "(96 or 104), got 100"),
        (json!({"script": "Hello.", "height": 70}), "height", "(64 or 72), got 70"),
    ] {
        let mut body = params.clone();
        body["model"] = json!("tiny-sd");
        let (status, answer) = post_json(&c, &d, "/api/v1/renders", body).await;
        assert_eq!(status, 400, "{params}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{params}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{params}: {message}");
    }
    let jobs = get_json(&c, &d, "/api/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_found_by_its_name_as_well_as_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    let anna = profile(&c, &d, "anna").await;
    let body = json!({"script": "Hello there.", "profile": "anna", "model": "tiny-sd", "steps": 2,
                      "width": 128, "height": 96, "lipsync_model": "tiny-wav2lip"});
    let (status, job) = post_json(&c, &d, "/api/v1/renders", body.clone()).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["params"]["presenter"]["portrait"], anna["portrait"], "the profile's presenter: {job}");
    let id = job["id"].as_str().expect("id");
    let done = wait_job(&c, &d, id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    // A name nobody has is refused naming the field; a second "anna" cannot be made, so
    // the name stays hers (two that an older version let in: `family_profiles`).
    let mut unknown = body.clone();
    unknown["profile"] = json!("bob");
    let (status, answer) = post_json(&c, &d, "/api/v1/renders", unknown).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (400, Some("profile")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or("").contains("profiles list"), "{answer}");
    let twin = profile(&c, &d, "anna").await;
    assert_eq!((twin["error"]["code"].as_str(), twin["error"]["field"].as_str()), (Some("name_taken"), Some("name")));
    assert!(twin["error"]["message"].as_str().unwrap_or("").contains(anna["id"].as_str().expect("id")), "{twin}");
    let (status, job) = post_json(&c, &d, "/api/v1/renders", body).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["params"]["presenter"]["portrait"], anna["portrait"], "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blank_line_of_spaces_separates_scenes_as_the_web_studio_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();
    // Editors leave indentation on blank lines; Windows ones end lines with \r\n.
    let script = "A red circle on a blue background.\r\n    \r\nA yellow square.\n\t\nA green triangle.";
    let body = json!({"script": script, "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
    let (status, job) = post_json(&c, &d, "/api/v1/renders", body).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id");
    let done = wait_job(&c, &d, id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let plan: Value = serde_json::from_slice(&common::render::artifact(&c, &d, id, "plan.json").await).expect("plan");
    let prompts: Vec<&str> =
        plan["scenes"].as_array().expect("scenes").iter().filter_map(|s| s["prompt"].as_str()).collect();
    assert_eq!(prompts, ["A red circle on a blue background.", "A yellow square.", "A green triangle."], "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_count_as_the_words_they_take_to_say_when_a_film_s_length_is_estimated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let runtime = provision::runtime();
    // A small max_frames: 150 frames, six seconds at 25 fps.
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[limits]\nmax_frames = 150\n").expect("config");
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
        ("REELBOX_CONFIG", config.to_str().expect("utf8")),
    ];
    let d = DaemonProc::start(&dir.path().join("data"), &env);
    let c = reqwest::Client::new();
    // Thirteen written words, but the years take more than six seconds to say: it was
    // taken as four seconds, and failed at its narration after its keyframes were drawn.
    let years = "They met in 1876, 1999, 2001, 2024, 1492, 1815, 1969 and 1066 again.";
    let body = json!({"script": years, "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
    let (status, answer) = post_json(&c, &d, "/api/v1/renders", body).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (400, Some("script")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap_or("").contains("limits.max_frames"), "{answer}");
    // The same length in words still fits: words are not counted more than they were.
    let words = "They met in spring, summer, autumn, winter, dawn, dusk, noon and night again.";
    let body = json!({"script": words, "model": "tiny-sd", "steps": 2, "width": 64, "height": 64});
    let (status, job) = post_json(&c, &d, "/api/v1/renders", body).await;
    assert_eq!(status, 202, "{job}");
    let done = wait_job(&c, &d, job["id"].as_str().expect("id"), Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

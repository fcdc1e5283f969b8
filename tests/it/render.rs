//! The render against the real daemon: tiny diffusion, lip-sync and upscale models with
//! the real interfaces, the real joe voice, real ffmpeg.

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, is_final, wait_job};
use common::provision;
use common::render::{artifact, check_film, demo_models_dir, models_dir, portrait_png, render_request};
use reelbox::media::ffprobe::probe_with;
use serde_json::{Value, json};

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    env: Vec<(String, String)>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let env = vec![
        ("REELBOX_MODELS_DIR".to_string(), models.display().to_string()),
        ("REELBOX_ONNXRUNTIME".to_string(), provision::runtime().display().to_string()),
    ];
    let data = dir.path().join("data");
    Setup { _dir: dir, data, env }
}

fn start(s: &Setup) -> DaemonProc {
    let env: Vec<(&str, &str)> = s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    DaemonProc::start(&s.data, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scene_render_is_an_h264_aac_mp4_timed_to_its_narration_with_subtitles() {
    let s = setup();
    let d = start(&s);
    let c = reqwest::Client::new();
    let body = render_request(&c, &d, true).await;
    let job: Value = c.post(d.at("/api/v1/jobs")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&c, &d, &id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    check_film(&c, &d, &id, &s.data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_render_resumes_without_redoing_keyframes_or_narration() {
    let s = setup();
    let mut d = start(&s);
    let c = reqwest::Client::new();
    let body = render_request(&c, &d, false).await;
    let job: Value = c.post(d.at("/api/v1/jobs")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let before =
        wait_job(&c, &d, &id, Duration::from_secs(600), |j| j["stages"][2]["state"] == "done" || is_final(j)).await;
    d.kill9();
    let d = start(&s);
    let done = wait_job(&c, &d, &id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    for i in 0..3 {
        assert_eq!(
            done["stages"][i]["finished_at"], before["stages"][i]["finished_at"],
            "stage {i} was redone: {done}"
        );
        assert_eq!(done["stages"][i]["artifacts"], before["stages"][i]["artifacts"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_render_requests_name_the_field() {
    let s = setup();
    let d = start(&s);
    let c = reqwest::Client::new();
    for (params, field) in [
        (json!({}), "script"),
        (json!({"script": "hi", "model": "no-such-model"}), "model"),
        (json!({"script": "hi", "model": "tiny-sd", "width": 100}), "width"),
        (json!({"script": "hi", "model": "tiny-sd", "layout": "sideways"}), "layout"),
        // A switch that is not a boolean is named, not read as "off".
        (json!({"script": "hi", "model": "tiny-sd", "upscale": "yes"}), "upscale"),
        (json!({"script": "hi", "model": "tiny-sd", "burn_subtitles": 1}), "burn_subtitles"),
        (json!({"script": "hi", "model": "tiny-sd", "presenter": {"face_box": [0, 0, 1, 1]}}), "presenter.portrait"),
    ] {
        let r =
            c.post(d.at("/api/v1/jobs")).json(&json!({"kind": "render", "params": params})).send().await.expect("post");
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_too_long_to_make_is_refused_naming_the_limit() {
    let s = setup();
    let d = start(&s);
    let c = reqwest::Client::new();
    // 500 one-word paragraphs: 500 keyframes.
    let many = vec!["Hello."; 500].join("\n\n");
    // 1,300 words spoken four times slower: about 1,700 s of narration (within max_prompt_chars).
    let long = vec![vec!["word"; 130].join(" ") + "."; 10].join("\n\n");
    // 1,000 words: about 330 s, within max_audio_seconds, but some 20,000 frames at 60 fps.
    let film = vec![vec!["word"; 100].join(" ") + "."; 10].join("\n\n");
    for (script, scale, fps, key) in [
        (many, 1.0, 25, "limits.max_scenes"),
        (long, 4.0, 25, "limits.max_audio_seconds"),
        (film, 1.0, 60, "a lower fps (--fps / \"fps\"), or the box's owner raises limits.max_frames"),
    ] {
        let params = json!({"script": script, "model": "tiny-sd", "length_scale": scale, "fps": fps});
        let r =
            c.post(d.at("/api/v1/jobs")).json(&json!({"kind": "render", "params": params})).send().await.expect("post");
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["error"]["field"], "script", "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains(key), "{key}: {body}");
    }
    let jobs: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("list").json().await.expect("json");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_script_keyframes_show_each_scene_s_background_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let c = reqwest::Client::new();
    let root = common::source_tree();
    let script = std::fs::read_to_string(root.join("assets/demo/script.txt")).expect("demo script");
    let body = json!({"kind": "render", "params": {"script": script, "width": 128, "height": 128, "seed": 1}});
    let job: Value = c.post(d.at("/api/v1/jobs")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&c, &d, &id, Duration::from_secs(600), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let colours = common::palette::load();
    let wanted: Vec<String> = script
        .split("on a ")
        .skip(1)
        .filter_map(|rest| rest.split_once(" background").map(|(c, _)| c.trim().to_string()))
        .collect();
    assert_eq!(wanted.len(), 3, "the demo script names three backgrounds");
    for (i, colour) in wanted.iter().enumerate() {
        let png = artifact(&c, &d, &id, &format!("keyframe_{i:02}.png")).await;
        let img = image::load_from_memory(&png).expect("png").to_rgb8();
        let shares = common::palette::shares(&img, &colours, f32::INFINITY);
        let best = Some(common::palette::dominant(&shares).to_string());
        assert_eq!(best.as_deref(), Some(colour.as_str()), "scene {i}'s keyframe is mostly {best:?}, asked {colour}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lipsync_speaks_text_first_with_the_profiles_voice_portrait_and_face_box() {
    let s = setup();
    let d = start(&s);
    let c = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .text("name", "presenter")
        .text("voice", "en_US-joe-medium")
        .text("face_box", "24,12,80,96")
        .part("portrait", reqwest::multipart::Part::bytes(portrait_png()).file_name("portrait.png"));
    let profile: Value =
        c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile").json().await.expect("json");

    // Text that would film longer than limits.max_frames is refused before anything runs.
    let long = vec!["word"; 1000].join(" ");
    let resp = c
        .post(d.at("/api/v1/lipsync"))
        .json(&json!({"profile": profile["id"], "text": long, "model": "tiny-wav2lip", "fps": 60}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["field"], "text", "{err}");
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("limits.max_frames"), "{err}");

    // Narration as audio and as text at once is refused, naming the field.
    let both =
        json!({"profile": profile["id"], "text": "Hello.", "audio": profile["portrait"], "model": "tiny-wav2lip"});
    let resp = c.post(d.at("/api/v1/lipsync")).json(&both).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"]["field"], "text", "{err}");

    let body = json!({"profile": profile["id"], "text": "Hello there. This is reelbox.", "model": "tiny-wav2lip"});
    let job: Value =
        c.post(d.at("/api/v1/lipsync")).json(&body).send().await.expect("submit").json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("no job id: {job}")).to_string();
    let done = wait_job(&c, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let stages: Vec<&str> =
        done["stages"].as_array().expect("stages").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(stages, ["speech", "lipsync"]);

    let timing: Value = serde_json::from_slice(&artifact(&c, &d, &id, "speech.json").await).expect("timings");
    let spoken = timing["duration"].as_f64().unwrap_or_else(|| panic!("no duration in {timing}"));
    let path = s.data.join("talking.mp4");
    std::fs::write(&path, artifact(&c, &d, &id, "lipsync.mp4").await).expect("write");
    let info = probe_with(&path, true).expect("ffprobe");
    let v = info.video().expect("video stream");
    assert_eq!((v.width, v.height), (Some(128), Some(128)), "the profile's portrait");
    let frames = v.frames.expect("frame count") as f64;
    assert!((frames - spoken * 25.0).abs() <= 1.0, "{frames} frames for {spoken} s of speech");
    assert_eq!(info.audio().expect("audio stream").codec_name, "aac");
}

#[test]
fn a_render_without_model_or_voice_takes_the_configured_defaults() {
    // A configured default counts while it is installed (one rule for every default).
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(common::fixture("models/tiny-sd"), models.join("tiny-sd")).expect("link tiny-sd");
    for (voice, from) in [("de_DE-thorsten-medium", "de/tiny-de"), ("en_US-joe-medium", "en/tiny-en")] {
        std::fs::create_dir_all(models.join(voice)).expect("voice dir");
        for ext in ["onnx", "onnx.json"] {
            let src = common::fixture(&format!("models/tiny-piper/{from}.{ext}"));
            std::fs::copy(src, models.join(format!("{voice}/{voice}.{ext}"))).expect("voice file");
        }
    }
    let mut config = reelbox::config::Config { models_dir: Some(models), ..common::sink::fixture_config() };
    config.defaults.image_model = Some("tiny-sd".into());
    config.defaults.voice = "de_DE-thorsten-medium".into();
    let render = reelbox::kinds::registry().into_iter().find(|k| k.name() == "render").expect("render kind");
    let ctx = reelbox::kinds::ValidateCtx { config: &config, artifacts: &common::sink::NoArtifacts };
    let params = render.validate(json!({"script": "A lighthouse at dusk."}), &ctx).expect("valid render");
    assert_eq!(params["model"], "tiny-sd", "{params}");
    assert_eq!(params["voice"], "de_DE-thorsten-medium", "{params}");
    let named = render.validate(json!({"script": "Hi.", "voice": "en_US-joe-medium"}), &ctx).expect("valid render");
    assert_eq!(named["voice"], "en_US-joe-medium", "a named voice wins over the default");
}

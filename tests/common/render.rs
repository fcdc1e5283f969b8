//! The render's test parts, shared by the single-box render tests and the cluster ones:
//! a models dir with the tiny fixtures (or the bundled demo models), a portrait, the
//! render request and an artifact's bytes by name.

use std::path::{Path, PathBuf};

use reelbox::media::ffprobe::probe_with;
use serde_json::{Value, json};

use super::copy_dir;
use super::daemon::DaemonProc;
use super::provision;

/// Three scenes, five sentences of narration.
pub const SCRIPT: &str = "A red circle on a blue background. It rolls to the left.\n\n\
                          A yellow square appears. It is calm.\n\n\
                          Finally, a green triangle on a white background.";

/// A models dir under `root` with the tiny fixtures under the names the render is told to use.
pub fn models_dir(root: &Path) -> PathBuf {
    let fixtures = super::fixture("models");
    let models = root.join("models");
    copy_dir(&fixtures.join("tiny-sd"), &models.join("tiny-sd"));
    copy_dir(&fixtures.join("tiny-wav2lip"), &models.join("tiny-wav2lip"));
    copy_dir(&fixtures.join("tiny-esrgan-x4"), &models.join("tiny-esrgan-x4"));
    let joe = provision::joe_voice();
    copy_dir(joe.parent().expect("voice dir"), &models.join("en_US-joe-medium"));
    models
}

/// Installs the tiny Piper voice of `lang` (`de`, `es`, `fr`) in `models` as
/// `{lang}_{LANG}-tiny` (a Piper voice's name says its language); its name.
pub fn tiny_voice(models: &Path, lang: &str) -> String {
    tiny_voice_as(models, lang, &format!("{lang}_{}-tiny", lang.to_uppercase()))
}

/// Installs the tiny Piper voice of `lang` in `models` as `name`; its name.
pub fn tiny_voice_as(models: &Path, lang: &str, name: &str) -> String {
    let voice = models.join(name);
    std::fs::create_dir_all(&voice).expect("voice dir");
    for ext in ["onnx", "onnx.json"] {
        let from = super::fixture(&format!("models/tiny-piper/{lang}/tiny-{lang}.{ext}"));
        std::fs::copy(from, voice.join(format!("{name}.{ext}"))).expect("voice file");
    }
    name.to_string()
}

/// The bundled demo models under the names the render defaults to, plus the joe voice.
pub fn demo_models_dir(root: &Path) -> PathBuf {
    let demo = super::source_tree().join("models/demo");
    let models = root.join("models");
    copy_dir(&demo.join("shapes"), &models.join("demo-shapes"));
    copy_dir(&demo.join("presenter"), &models.join("demo-presenter"));
    copy_dir(&demo.join("upscaler"), &models.join("demo-upscaler"));
    let joe = provision::joe_voice();
    copy_dir(joe.parent().expect("voice dir"), &models.join("en_US-joe-medium"));
    models
}

/// [`models_dir`] with the built-in lip-sync and upscale defaults as `reelbox setup` installs
/// them, beside a user's imports: `wav2lip_gan` (the fixture `lipsync_fixture` under
/// tests/fixtures/models) and `my-upscaler` (the tiny x4).
pub fn models_with_defaults_and_imports(home: &Path, lipsync_fixture: &str) -> PathBuf {
    let models = models_dir(home);
    let demo = super::source_tree().join("models/demo");
    copy_dir(&demo.join("presenter"), &models.join("demo-presenter"));
    copy_dir(&demo.join("upscaler"), &models.join("demo-upscaler"));
    let fixtures = super::fixture("models");
    super::tools::import_bare(home, &models, "wav2lip_gan", "lipsync", &fixtures.join(lipsync_fixture));
    super::tools::import_bare(home, &models, "my-upscaler", "upscale", &fixtures.join("tiny-esrgan-x4"));
    models
}

/// A 128×128 portrait: a face-coloured ellipse on a dark background.
pub fn portrait_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(128, 128, |x, y| {
        let (dx, dy) = (x as f32 - 64.0, y as f32 - 60.0);
        if dx * dx / 1600.0 + dy * dy / 2304.0 < 1.0 { image::Rgb([230, 190, 160]) } else { image::Rgb([40, 60, 90]) }
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

/// Makes a presenter profile on `d` and returns a render job body of [`SCRIPT`] with the
/// tiny fixture models at 128×96 (upscaled ×4 when `upscale`).
pub async fn render_request(c: &reqwest::Client, d: &DaemonProc, upscale: bool) -> Value {
    let form = reqwest::multipart::Form::new()
        .text("name", "presenter")
        .text("face_box", "24,12,80,96")
        .part("portrait", reqwest::multipart::Part::bytes(portrait_png()).file_name("portrait.png"));
    let profile: Value =
        c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile").json().await.expect("json");
    json!({"kind": "render", "params": {
        "script": SCRIPT, "model": "tiny-sd", "steps": 2, "width": 128, "height": 96, "fps": 25, "seed": 7,
        "presenter": {"portrait": profile["portrait"], "face_box": [24, 12, 80, 96]},
        "lipsync_model": "tiny-wav2lip", "upscale": upscale, "upscale_model": "tiny-esrgan-x4",
    }})
}

/// Submits render `params` to `/api/v1/renders`, waits until it has finished, asserts that it
/// succeeded and returns its id.
pub async fn rendered(c: &reqwest::Client, d: &DaemonProc, params: Value) -> String {
    let resp = c.post(d.at("/api/v1/renders")).json(&params).send().await.expect("submit");
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let done = super::daemon::wait_job(c, d, &id, std::time::Duration::from_secs(600), super::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    id
}

/// A job's artifact's bytes, by name.
pub async fn artifact(c: &reqwest::Client, d: &DaemonProc, job: &str, name: &str) -> Vec<u8> {
    let arts: Vec<Value> =
        c.get(d.at(&format!("/api/v1/jobs/{job}/artifacts"))).send().await.expect("list").json().await.expect("json");
    let art = arts.iter().find(|a| a["name"] == name).unwrap_or_else(|| panic!("no {name} in {arts:?}"));
    c.get(d.at(art["url"].as_str().expect("url"))).send().await.expect("get").bytes().await.expect("bytes").to_vec()
}

/// Checks a finished [`render_request`] job's film as a user would: an H.264/AAC MP4 at
/// 128×96 with as many frames as the narration lasts at 25 fps, a subtitle track, and
/// VTT/SRT files with every sentence. `scratch` takes the downloaded film.
pub async fn check_film(c: &reqwest::Client, d: &DaemonProc, id: &str, scratch: &Path) {
    let timeline: Value = serde_json::from_slice(&artifact(c, d, id, "timeline.json").await).expect("timeline");
    let narration = timeline["duration"].as_f64().expect("duration");
    assert_eq!(timeline["sentences"].as_array().map(|a| a.len()), Some(5), "{timeline}");
    let film = artifact(c, d, id, "film.mp4").await;
    let path = scratch.join("film.mp4");
    std::fs::write(&path, &film).expect("write");
    let info = probe_with(&path, true).expect("ffprobe");
    let video = info.video().expect("a video stream");
    assert_eq!(video.codec_name, "h264");
    assert_eq!((video.width, video.height), (Some(128), Some(96)));
    assert_eq!(info.audio().expect("an audio stream").codec_name, "aac");
    assert_eq!(info.subtitle().expect("a subtitle stream").codec_name, "mov_text");
    let frames = video.frames.expect("frame count") as f64;
    assert!((frames - (narration * 25.0).round()).abs() <= 1.0, "{frames} frames for {narration} s of narration");
    let vtt = String::from_utf8(artifact(c, d, id, "film.vtt").await).expect("utf8");
    for sentence in timeline["sentences"].as_array().expect("sentences") {
        assert!(vtt.contains(sentence["text"].as_str().expect("text")), "cue for {sentence} in\n{vtt}");
    }
    let srt = String::from_utf8(artifact(c, d, id, "film.srt").await).expect("utf8");
    assert!(srt.starts_with("1\n00:00:00,"), "{srt}");
}

/// `reelbox serve` on `root/data` with the models in `models` and the provisioned ONNX Runtime.
pub fn daemon(root: &Path, models: &Path) -> DaemonProc {
    daemon_at(root, models, "127.0.0.1:0")
}

/// As [`daemon`], bound to `bind` (the address of one stopped, to start it again there).
pub fn daemon_at(root: &Path, models: &Path, bind: &str) -> DaemonProc {
    let runtime = provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
    ];
    DaemonProc::start_at(&root.join("data"), bind, &env)
}

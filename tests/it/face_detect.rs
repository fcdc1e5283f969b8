//! `face_detect` through the real daemon with the UltraFace-interface fixture installed as
//! the face detector: the box the web studio's profile editor starts from.

use crate::common;

use std::io::Cursor;
use std::time::Duration;

use common::daemon::{DaemonProc, is_final, wait_job};
use common::media::test_picture;
use common::provision;
use image::RgbImage;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

async fn upload_png(http: &reqwest::Client, d: &DaemonProc, img: &RgbImage) -> String {
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
    let part = Part::bytes(png).file_name("portrait.png").mime_str("image/png").expect("mime");
    let resp =
        http.post(d.at("/api/v1/artifacts")).multipart(Form::new().part("file", part)).send().await.expect("upload");
    assert_eq!(resp.status(), 201, "upload answered {}", resp.status());
    let art: Value = resp.json().await.expect("artifact json");
    art["id"].as_str().expect("artifact id").to_string()
}

/// Runs `face_detect` on `input` and returns its `face.json`.
async fn detect(http: &reqwest::Client, d: &DaemonProc, input: &str) -> Value {
    let job = common::daemon::submit(http, d, json!({"kind": "face_detect", "params": {"input": input}})).await;
    let id = job["id"].as_str().expect("id");
    let done = wait_job(http, d, id, Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let arts: Value =
        http.get(d.at(&format!("/api/v1/jobs/{id}/artifacts"))).send().await.expect("list").json().await.expect("json");
    let list = arts.as_array().or_else(|| arts["artifacts"].as_array()).expect("artifact list");
    let face = list.iter().find(|a| a["name"] == "face.json").expect("face.json");
    let url = d.at(&format!("/api/v1/artifacts/{}", face["id"].as_str().expect("id")));
    http.get(url).send().await.expect("get face.json").json().await.expect("face json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_detector_finds_the_face_in_an_uploaded_portrait_or_says_there_is_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let fixture = common::fixture("models/tiny-face-detector");
    std::os::unix::fs::symlink(&fixture, models.join("face-detector")).expect("install the detector");
    let runtime = provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
    ];
    let d = DaemonProc::start(&dir.path().join("data"), &env);
    let http = reqwest::Client::new();

    let portrait = upload_png(&http, &d, &test_picture(160, 120, 2)).await;
    let found = detect(&http, &d, &portrait).await;
    assert_eq!(found["face_box"], json!([50, 30, 60, 60]), "{found}");
    assert_eq!((found["width"].as_u64(), found["height"].as_u64()), (Some(160), Some(120)));

    let black = upload_png(&http, &d, &RgbImage::new(160, 120)).await;
    assert_eq!(detect(&http, &d, &black).await["face_box"], Value::Null, "a black picture has no face");

    // A detector that is not installed is refused at submission, naming the field.
    let resp = http
        .post(d.at("/api/v1/jobs"))
        .json(&json!({"kind": "face_detect", "params": {"input": portrait, "model": "no-such-detector"}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("error json");
    assert_eq!(body["error"]["field"], "model", "{body}");

    // One the catalog can pull says which pull installs it; a typo gets the close names.
    for (model, says) in [("ultraface-320", "`reelbox pull ultraface-320` installs it"), ("ultraface", "ultraface-320")]
    {
        let params = json!({"input": portrait, "model": model});
        let resp = http
            .post(d.at("/api/v1/jobs"))
            .json(&json!({"kind": "face_detect", "params": params}))
            .send()
            .await
            .expect("submit");
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.expect("error json");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(body["error"]["field"] == "model" && message.contains(says), "{model}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_made_from_a_photo_alone_presents_the_face_the_detector_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::render::models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let http = reqwest::Client::new();
    let mut png = Vec::new();
    test_picture(160, 120, 2).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).expect("encode");
    let png_of_mum = png.clone();
    let form = Form::new().text("name", "mum").part("portrait", Part::bytes(png).file_name("mum.png"));
    let r = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
    assert_eq!(r.status(), 201, "profile answered {}", r.status());
    let film = json!({"script": "Hello there. This is a short film.", "profile": "mum", "model": "tiny-sd",
        "steps": 1, "width": 128, "height": 96, "lipsync_model": "tiny-wav2lip", "layout": "inset"});

    // `profiles create` of a photo alone on this box says at once what a render would refuse
    // (it was accepted without a word), naming the flag that fixes it.
    std::fs::write(dir.path().join("dad.png"), &png_of_mum).expect("portrait");
    let out = common::tools::run_ok(
        common::tools::reelbox_cli(dir.path(), &models)
            .args(["profiles", "create", "--name", "dad", "--portrait", "dad.png", "--url", &d.at("")])
            .current_dir(dir.path()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no face detector")
            && stderr.contains(&format!("reelbox --url {} profiles update dad --face-box x,y,w,h", d.at(""))),
        "{stderr}"
    );

    // No face box and no face detector: refused, saying what would show the presenter. It
    // was accepted and made a film of pictures only, without a word; then refused as
    // `presenter.face_box`, a field the user never typed, with only a pull (offline: none).
    let r = http.post(d.at("/api/v1/renders")).json(&film).send().await.expect("render");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["field"], "profile", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("reelbox profiles update mum --face-box x,y,w,h"), "{body}");
    assert!(message.contains("face detector"), "{body}");

    // With a detector installed, the film shows the presenter where it finds the face.
    drop(d);
    let fixture = common::fixture("models/tiny-face-detector");
    std::os::unix::fs::symlink(&fixture, models.join("face-detector")).expect("install the detector");
    let d = common::render::daemon(dir.path(), &models);
    let r = http.post(d.at("/api/v1/renders")).json(&film).send().await.expect("render");
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let done = wait_job(&http, &d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["params"]["presenter"]["face_model"], "face-detector", "{done}");
    let head = done["stages"].as_array().into_iter().flatten().find(|s| s["name"] == "talking_head").expect("stage");
    assert_eq!(head["artifacts"].as_array().map(Vec::len), Some(1), "the presenter was composed in: {done}");
}

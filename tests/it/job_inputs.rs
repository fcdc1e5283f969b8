//! Input artifacts are checked when a job is submitted, on the real daemon: an id the
//! key has no artifact of (a typo, another person's upload) or a file of the wrong kind
//! (a WAV as a portrait) is refused naming the field for every kind that takes inputs,
//! and nothing is queued; a picture too large to upscale is refused from its header then
//! too. Each was accepted and failed at the job's first stage, minutes later in a queue.

use crate::common;

use common::api::{call, create_key};
use common::daemon::{is_final, wait_job};
use common::media::{png, speechy_16k, test_picture, wav_bytes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `key`'s upload of `bytes` as `name`: its artifact id.
async fn upload(d: &common::daemon::DaemonProc, key: &str, name: &str, bytes: Vec<u8>) -> String {
    common::api::upload(d, Some(key), name, bytes).await["id"].as_str().expect("id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_naming_an_input_it_cannot_use_is_refused_at_submission_naming_the_field() {
    let root = tempfile::tempdir().expect("tempdir");
    let models = common::render::models_dir(root.path());
    let detector = common::fixture("models/tiny-face-detector");
    std::os::unix::fs::symlink(&detector, models.join("face-detector")).expect("install the detector");
    let d = common::compat::start_daemon(&root.path().join("data"), &models);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum"})).await;
    let (_, kid) = create_key(&d, Some(&admin), json!({"name": "kid"})).await;

    let mums = common::api::upload(&d, Some(&mum), "mum.png", png(&test_picture(96, 128, 1))).await;
    assert_eq!(mums["stage"], "upload", "what brought it in: {mums}");
    let mums_photo = mums["id"].as_str().expect("id").to_string();
    let photo = upload(&d, &kid, "me.png", png(&test_picture(96, 128, 2))).await;
    let voice = upload(&d, &kid, "hello.wav", wav_bytes(speechy_16k(8_000), 16_000)).await;
    // Within what uploads may be (limits.max_upload_side), past what upscale takes.
    let wide = upload(&d, &kid, "wide.png", png(&test_picture(2100, 64, 3))).await;
    let typo = "01JAAAAAAAAAAAAAAAAAAAAAAA";

    let refused: [(&str, Value, &str, &str); 9] = [
        ("upscale", json!({"input": typo, "model": "tiny-esrgan-x4"}), "input", "has no artifact"),
        ("upscale", json!({"input": mums_photo, "model": "tiny-esrgan-x4"}), "input", "has no artifact"),
        ("upscale", json!({"input": wide, "model": "tiny-esrgan-x4"}), "input", "2100x64"),
        ("face_detect", json!({"input": voice, "model": "face-detector"}), "input", "takes a picture"),
        ("lipsync", json!({"portrait": voice, "audio": voice, "model": "tiny-wav2lip"}), "portrait", "takes a picture"),
        ("lipsync", json!({"portrait": photo, "audio": photo, "model": "tiny-wav2lip"}), "audio", "takes audio"),
        (
            "image",
            json!({"prompt": "a cat", "model": "tiny-sd", "init_image": mums_photo}),
            "init_image",
            "has no artifact",
        ),
        (
            "render",
            json!({"script": "Hello.", "model": "tiny-sd", "lipsync_model": "tiny-wav2lip", "presenter": {"portrait": mums_photo, "face_box": [10, 10, 40, 40]}}),
            "presenter.portrait",
            "has no artifact",
        ),
        ("render", json!({"script": "Hello.", "model": "tiny-sd", "music": photo}), "music", "takes audio"),
    ];
    for (kind, params, field, says) in refused {
        let body = json!({"kind": kind, "params": params});
        let (status, v) = call(Some(&kid), Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {params}: {v}");
        assert!(v["error"]["field"] == field && message.contains(says), "{kind} {params}: {v}");
    }
    let (_, jobs) = call(Some(&kid), Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "nothing was queued: {jobs}");

    // An admin sees the kid's profile, but a job of theirs cannot read its portrait: the
    // profile is refused by name, unless the render shows no presenter.
    let form = reqwest::multipart::Form::new()
        .text("name", "kid")
        .text("face_box", "10,10,40,40")
        .part("portrait", reqwest::multipart::Part::bytes(png(&test_picture(96, 128, 4))).file_name("kid.png"));
    let made = reqwest::Client::new().post(d.at("/api/v1/profiles")).bearer_auth(&kid).multipart(form);
    let profile: Value = made.send().await.expect("profile").json().await.expect("json");
    let profile = profile["id"].as_str().expect("profile id").to_string();
    let by_admin = [
        (
            "render",
            json!({"script": "Hello.", "model": "tiny-sd", "lipsync_model": "tiny-wav2lip", "profile": profile}),
        ),
        ("lipsync", json!({"text": "Hello.", "model": "tiny-wav2lip", "profile": profile})),
    ];
    for (kind, params) in by_admin {
        // Lip-sync takes a profile on its own route.
        let (route, body) = match kind {
            "lipsync" => ("/api/v1/lipsync", params),
            _ => ("/api/v1/jobs", json!({"kind": kind, "params": params})),
        };
        let (status, v) = call(Some(&admin), Method::POST, d.at(route), Some(body)).await;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}: {v}");
        assert!(v["error"]["field"] == "profile" && message.contains("another key's"), "{kind}: {v}");
    }
    let params = json!({"script": "Hello.", "model": "tiny-sd", "profile": profile, "layout": "none"});
    let body = json!({"kind": "render", "params": params, "priority": -1});
    let (status, job) = call(Some(&admin), Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "no presenter shown, no portrait read: {job}");
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(call(Some(&admin), Method::POST, cancel, None).await.0, StatusCode::OK);

    // Their own files of the right kind are taken and the jobs run.
    let body = json!({"kind": "upscale", "params": {"input": photo, "model": "tiny-esrgan-x4"}});
    let (status, job) = call(Some(&kid), Method::POST, d.at("/api/v1/jobs"), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let http = common::api::keyed_client(&kid);
    let done =
        wait_job(&http, &d, job["id"].as_str().expect("id"), std::time::Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

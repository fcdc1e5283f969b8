//! Pictures from phones through the real daemon: a portrait photo stored as landscape
//! sensor pixels plus an EXIF Orientation is upright in the upload's answer, the profile's
//! face box, face detection, upscale, lip-sync and image edits; a cut-out PNG's transparent
//! background is white; a big photo and a big phone video are lip-synced at a size phones play; HEIC, AVIF and a
//! photo past `limits.max_upload_side` are refused naming the field and saying what to do.

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use common::daemon::{DaemonProc, is_final, submit, wait_job};
use common::media::{heic_head, phone_jpeg, png, speechy_16k, test_picture, wav_bytes};
use image::RgbImage;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// `POST /api/v1/artifacts` of `bytes` as `name`: the status and the answer.
async fn upload(http: &reqwest::Client, d: &DaemonProc, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let form = Form::new().part("file", Part::bytes(bytes).file_name(name.to_string()));
    let resp = http.post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload");
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

async fn uploaded(http: &reqwest::Client, d: &DaemonProc, name: &str, bytes: Vec<u8>) -> Value {
    let (status, art) = upload(http, d, name, bytes).await;
    assert_eq!(status, 201, "{name}: {art}");
    art
}

/// Runs a job to success and returns its artifact `name`'s bytes.
async fn job_output(http: &reqwest::Client, d: &DaemonProc, body: Value, name: &str) -> Vec<u8> {
    let job = submit(http, d, body).await;
    let id = job["id"].as_str().expect("id");
    let done = wait_job(http, d, id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    common::render::artifact(http, d, id, name).await
}

fn size(art: &Value) -> (Option<u64>, Option<u64>) {
    (art["width"].as_u64(), art["height"].as_u64())
}

fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.as_raw().len() as f64
}

/// The render fixtures (tiny SD, Wav2Lip, ×4 upscaler) plus the face detector, and `env`.
fn daemon(root: &std::path::Path, env: &[(&str, &str)]) -> DaemonProc {
    let models = common::render::models_dir(root);
    let detector = common::fixture("models/tiny-face-detector");
    std::os::unix::fs::symlink(&detector, models.join("face-detector")).expect("install the detector");
    common::compat::start_daemon_with(&root.join("data"), &models, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_portrait_is_upright_wherever_it_is_used() {
    let root = tempfile::tempdir().expect("tempdir");
    let d = daemon(root.path(), &[]);
    let http = reqwest::Client::new();
    // What the user saw when taking it: 120 wide, 160 tall. The phone stores it turned.
    let upright = test_picture(120, 160, 5);
    let sensor = image::imageops::rotate270(&upright);
    let photo = phone_jpeg(&sensor, 6);

    let phone = uploaded(&http, &d, "IMG_0001.jpg", photo.clone()).await;
    assert_eq!(size(&phone), (Some(120), Some(160)), "the upload's answer: {phone}");
    let id = phone["id"].as_str().expect("id");
    let meta = common::daemon::get_json(&http, &d, &format!("/api/v1/artifacts/{id}/meta")).await;
    assert_eq!(size(&meta), (Some(120), Some(160)), "meta: {meta}");
    let plain = uploaded(&http, &d, "upright.png", png(&upright)).await;
    let plain_id = plain["id"].as_str().expect("id");

    // The face is found where it is in the upright picture, in the upright frame.
    let detect = |input: &str| json!({"kind": "face_detect", "params": {"input": input}});
    let found: Value = serde_json::from_slice(&job_output(&http, &d, detect(id), "face.json").await).expect("json");
    let found_plain: Value =
        serde_json::from_slice(&job_output(&http, &d, detect(plain_id), "face.json").await).expect("json");
    assert_eq!((found["width"].as_u64(), found["height"].as_u64()), (Some(120), Some(160)), "{found}");
    assert_eq!(found["face_box"], found_plain["face_box"], "{found} vs {found_plain}");

    // Upscaled, it is the upright picture upscaled (JPEG's losses aside).
    let upscale = |input: &str| json!({"kind": "upscale", "params": {"input": input, "model": "tiny-esrgan-x4"}});
    let big = image::load_from_memory(&job_output(&http, &d, upscale(id), "upscaled.png").await).expect("png");
    let big_plain =
        image::load_from_memory(&job_output(&http, &d, upscale(plain_id), "upscaled.png").await).expect("png");
    assert_eq!((big.width(), big.height()), (480, 640));
    let diff = mean_diff(&big.to_rgb8(), &big_plain.to_rgb8());
    assert!(diff < 6.0, "the upscaled phone photo differs from the upright one by {diff:.1}/255 on average");

    // A profile's face box is drawn on the upright portrait: low in it, past the stored height.
    let form = Form::new()
        .text("name", "phone")
        .text("face_box", "10,100,60,50")
        .part("portrait", Part::bytes(photo.clone()).file_name("IMG_0001.jpg"));
    let resp = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
    let status = resp.status();
    let profile: Value = resp.json().await.expect("json");
    assert_eq!(status, 201, "{profile}");

    // Lip-synced with the face found by the detector, the film stands upright.
    let narration = uploaded(&http, &d, "hello.wav", wav_bytes(speechy_16k(16_000), 16_000)).await;
    let body =
        json!({"kind": "lipsync", "params": {"portrait": id, "audio": narration["id"], "model": "tiny-wav2lip"}});
    let film = job_output(&http, &d, body, "lipsync.mp4").await;
    let path = root.path().join("lipsync.mp4");
    std::fs::write(&path, film).expect("write");
    let info = reelbox::media::ffprobe::probe_with(&path, true).expect("ffprobe");
    let video = info.video().expect("a video stream");
    assert_eq!((video.width, video.height), (Some(120), Some(160)));

    // An edit (OpenAI's images.edit) without a size is drawn at the photo's upright size.
    let form = Form::new()
        .text("model", "tiny-sd")
        .text("prompt", "a watercolour")
        .text("steps", "2")
        .text("response_format", "b64_json")
        .part("image", Part::bytes(photo).file_name("IMG_0001.jpg"));
    let resp = http.post(d.at("/v1/images/edits")).multipart(form).send().await.expect("edit");
    let status = resp.status();
    let answer: Value = resp.json().await.expect("json");
    assert_eq!(status, 200, "{answer}");
    let b64 = answer["data"][0]["b64_json"].as_str().expect("b64_json");
    let edited = image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"))
        .expect("a picture");
    assert_eq!((edited.width(), edited.height()), (120, 160));

    // A cut-out portrait's transparent background is white, not the black its pixels store.
    let cutout = image::RgbaImage::from_fn(64, 64, |x, y| {
        if x < 32 { image::Rgba([0, 0, 0, 0]) } else { image::Rgba([200, 120, 90, 255 - (y % 2) as u8]) }
    });
    let mut cutout_png = Vec::new();
    cutout.write_to(&mut std::io::Cursor::new(&mut cutout_png), image::ImageFormat::Png).expect("png");
    let cut = uploaded(&http, &d, "cutout.png", cutout_png).await;
    let big = job_output(&http, &d, upscale(cut["id"].as_str().expect("id")), "upscaled.png").await;
    let big = image::load_from_memory(&big).expect("png").to_rgb8();
    let left = image::imageops::crop_imm(&big, 8, 8, 96, 240).to_image();
    let mean = left.as_raw().iter().map(|v| f64::from(*v)).sum::<f64>() / left.as_raw().len() as f64;
    assert!(mean > 220.0, "the transparent half upscaled to a mean of {mean:.0}/255, not white");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_phone_photo_is_lip_synced_upright_at_a_size_phones_play() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("config.toml");
    // The default limits take it: phone photos are sent in larger than pictures are made.
    std::fs::write(&config, "").expect("config");
    let d = daemon(root.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    let http = reqwest::Client::new();
    // 1800×2400 as seen; the phone (turned the other way) stored it 2400×1800 with tag 8.
    let upright = test_picture(1800, 2400, 3);
    let photo = phone_jpeg(&image::imageops::rotate90(&upright), 8);
    let phone = uploaded(&http, &d, "IMG_0003.jpg", photo).await;
    assert_eq!(size(&phone), (Some(1800), Some(2400)), "{phone}");
    let narration = uploaded(&http, &d, "hello.wav", wav_bytes(speechy_16k(8_000), 16_000)).await;
    let params = json!({"portrait": phone["id"], "audio": narration["id"], "model": "tiny-wav2lip"});
    let film = job_output(&http, &d, json!({"kind": "lipsync", "params": params}), "lipsync.mp4").await;
    let path = root.path().join("lipsync.mp4");
    std::fs::write(&path, film).expect("write");
    let info = reelbox::media::ffprobe::probe_with(&path, true).expect("ffprobe");
    let video = info.video().expect("a video stream");
    assert_eq!((video.width, video.height), (Some(1440), Some(1920)), "Full HD at most, upright");

    // A phone video held upright: 2560×1440 pixels stored with a 90° display rotation is read
    // upright and scaled to 1080×1920 (it was lip-synced at its full size).
    let frame = root.path().join("frame.png");
    std::fs::write(&frame, common::media::png(&test_picture(2560, 1440, 5))).expect("frame");
    let (plain, clip) = (root.path().join("plain.mp4"), root.path().join("VID_0001.mp4"));
    let [frame, plain_s, clip_s] = [&frame, &plain, &clip].map(|p| p.to_str().expect("utf8"));
    let encode = "-loop 1 -framerate 25 -i FRAME -t 0.4 -c:v libx264 -preset ultrafast -pix_fmt yuv420p OUT";
    let args: Vec<&str> = encode
        .split(' ')
        .map(|a| {
            if a == "FRAME" {
                frame
            } else if a == "OUT" {
                plain_s
            } else {
                a
            }
        })
        .collect();
    common::media::ffmpeg(&args);
    // ffmpeg 5 sets the display rotation only when the stream is copied, as a phone's is.
    common::media::ffmpeg(&["-i", plain_s, "-c", "copy", "-metadata:s:v:0", "rotate=90", clip_s]);
    let phone = uploaded(&http, &d, "VID_0001.mp4", std::fs::read(&clip).expect("clip")).await;
    let params = json!({"portrait": phone["id"], "audio": narration["id"], "model": "tiny-wav2lip",
        "face_box": [400, 900, 500, 600]});
    let film = job_output(&http, &d, json!({"kind": "lipsync", "params": params}), "lipsync.mp4").await;
    std::fs::write(&path, film).expect("write");
    let info = reelbox::media::ffprobe::probe_with(&path, true).expect("ffprobe");
    let video = info.video().expect("a video stream");
    assert_eq!(video.display_size(), Some((1080, 1920)), "a phone video is fitted as a photo is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heic_avif_and_oversized_photos_are_refused_naming_the_field_and_what_to_do() {
    let models = common::compat::models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = common::compat::start_daemon(data.path(), models.path());
    let http = reqwest::Client::new();
    let avif = data.path().join("photo.avif");
    common::media::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x48",
        "-frames:v",
        "1",
        "-c:v",
        "libaom-av1",
        "-still-picture",
        "1",
        avif.to_str().expect("utf8"),
    ]);
    let avif = std::fs::read(&avif).expect("avif");
    for (name, bytes, says) in [("IMG_0002.HEIC", heic_head(), "Most Compatible"), ("photo.avif", avif, "AVIF")] {
        let (status, body) = upload(&http, &d, name, bytes.clone()).await;
        assert_eq!(status, 400, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(body["error"]["field"] == "file" && message.contains(says) && message.contains("JPEG"), "{body}");

        let form = Form::new().text("name", "iphone").part("portrait", Part::bytes(bytes.clone()).file_name(name));
        let resp = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.expect("json");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(body["error"]["field"] == "portrait" && message.contains(says), "{body}");

        let form = Form::new().part("image", Part::bytes(bytes.clone()).file_name(name));
        let resp = http.post(d.at("/upload/image")).multipart(form).send().await.expect("comfy upload");
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.expect("json");
        assert!(body.to_string().contains(says), "{body}");

        let form = Form::new()
            .text("model", "tiny-sd")
            .text("prompt", "a watercolour")
            .part("image", Part::bytes(bytes).file_name(name));
        let resp = http.post(d.at("/v1/images/edits")).multipart(form).send().await.expect("edit");
        assert_eq!(resp.status(), 400);
        let body: Value = resp.json().await.expect("json");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(body["error"]["param"] == "image" && message.contains(says), "{body}");
    }
    // A phone photo larger than pictures are made (limits.max_image_side, 2048) is taken as a
    // portrait: phones' are 4032×3024 and up, and the lip-sync scales it.
    let photo = phone_jpeg(&test_picture(2100, 1500, 2), 6);
    let form = Form::new().text("name", "photo").part("portrait", Part::bytes(photo).file_name("IMG_0004.jpg"));
    let resp = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    // One past limits.max_upload_side (8192 by default) says what to do about it.
    let big = phone_jpeg(&test_picture(8200, 16, 2), 6);
    let form = Form::new().text("name", "big").part("portrait", Part::bytes(big).file_name("IMG_0005.jpg"));
    let resp = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(body["error"]["field"] == "portrait" && message.contains("16×8200"), "{body}");
    assert!(message.contains("limits.max_upload_side") && message.contains("smaller copy"), "{body}");

    // Nothing refused was kept, and the daemon is still there.
    assert!(http.get(d.at("/healthz")).send().await.expect("healthz").status().is_success());
    let (_, kept) = upload(&http, &d, "ok.png", png(&test_picture(64, 48, 1))).await;
    assert_eq!(size(&kept), (Some(64), Some(48)));
}

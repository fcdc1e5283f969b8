//! Uploads are checked before they cost anything: a picture whose header claims more pixels
//! than `limits.max_upload_side` is refused on every upload path without being decoded, and
//! the daemon stays responsive and small while a client keeps sending them. A file past
//! `limits.max_upload_bytes` gets one refusal on every route that takes files, naming the
//! field, the limit and its config key; the CLI says so before sending it.

use crate::common;

use std::time::{Duration, Instant};

use common::daemon::DaemonProc;
use common::media::{png, test_picture};
use common::tools::reelbox_cli;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// A real 12000×12000 grayscale PNG (144 megapixels, a few hundred KB), written row by row.
fn huge_png() -> Vec<u8> {
    let side = 12_000u32;
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side, side);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().expect("header");
    let mut stream = writer.stream_writer().expect("stream");
    let row = vec![0u8; side as usize];
    for _ in 0..side {
        std::io::Write::write_all(&mut stream, &row).expect("row");
    }
    stream.finish().expect("finish");
    writer.finish().expect("finish png");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_picture_is_refused_on_every_upload_path_without_decoding_it() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let png = huge_png();
    assert!(png.len() < 2 << 20, "the attack is small: {} bytes", png.len());
    let http = reqwest::Client::new();
    let paths: [(&str, &str); 3] =
        [("/api/v1/artifacts", "file"), ("/api/v1/profiles", "portrait"), ("/upload/image", "image")];
    for round in 0..2 {
        let mut sends = Vec::new();
        // Four at once on each path, as the attacker in the report did.
        for (path, field) in paths.iter().copied().cycle().take(12) {
            let (http, url, png) = (http.clone(), d.at(path), png.clone());
            sends.push(tokio::spawn(async move {
                let mut form = Form::new()
                    .part(field, Part::bytes(png).file_name("huge.png").mime_str("image/png").expect("mime"));
                if field == "portrait" {
                    form = form.text("name", "huge");
                }
                let resp = http.post(url).multipart(form).send().await.expect("upload");
                (path, field, resp.status(), resp.json::<Value>().await.unwrap_or_default())
            }));
        }
        let t0 = Instant::now();
        let health = http.get(d.at("/healthz")).send().await.expect("healthz");
        assert!(health.status().is_success());
        assert!(t0.elapsed() < Duration::from_millis(500), "healthz took {:?} during uploads", t0.elapsed());
        for s in sends {
            let (path, field, status, body) = s.await.expect("task");
            assert_eq!(status, StatusCode::BAD_REQUEST, "round {round} {path}: {body}");
            // ComfyUI's shape names the field as `details`.
            let named = if path == "/upload/image" { "details" } else { "field" };
            assert_eq!(body["error"][named], field, "{path}: {body}");
            assert!(body["error"]["message"].as_str().unwrap_or("").contains("12000×12000"), "{path}: {body}");
        }
    }
    // The most it has held resident so far (VmHWM).
    let rss = common::proc_status_kib(d.pid(), "VmHWM") / 1024;
    assert!(rss < 200, "the daemon peaked at {rss} MiB while refusing the uploads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_longer_than_the_limit_is_refused_on_both_audio_upload_paths() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    // 601 s of 8 kHz silence: just over limits.max_audio_seconds (600).
    let mut wav = std::io::Cursor::new(Vec::new());
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::new(&mut wav, spec).expect("wav");
    for _ in 0..601 * 8000 {
        w.write_sample(0i16).expect("sample");
    }
    w.finalize().expect("finalize");
    let wav = wav.into_inner();
    let http = reqwest::Client::new();
    for (path, field) in [("/api/v1/artifacts", "file"), ("/api/v1/profiles", "voice_sample")] {
        let mut form = Form::new().part(field, Part::bytes(wav.clone()).file_name("long.wav"));
        if field == "voice_sample" {
            form = form.text("name", "long");
        }
        let resp = http.post(d.at(path)).multipart(form).send().await.expect("upload");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains("limits.max_audio_seconds"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_with_more_frames_than_the_limit_is_refused_at_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 550 s at 30 fps: 16,500 frames, over limits.max_frames (15,000, ten minutes at 25 fps),
    // within max_audio_seconds (600); 16×16, so it is small.
    let video = dir.path().join("long.mp4");
    let made = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=blue:s=16x16:d=550:r=30"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-y"])
        .arg(&video)
        .status()
        .expect("run ffmpeg");
    assert!(made.success());
    let d = DaemonProc::start(&dir.path().join("data"), &[]);
    let form = Form::new().part("file", Part::bytes(std::fs::read(&video).expect("read")).file_name("long.mp4"));
    let resp = reqwest::Client::new().post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "file", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("limits.max_frames"), "{body}");
}

/// A daemon whose `limits.max_upload_bytes` is `limit`, on a data dir under `home`.
fn daemon_taking_files_up_to(home: &std::path::Path, limit: usize) -> DaemonProc {
    let config = home.join("config.toml");
    std::fs::write(&config, format!("[limits]\nmax_upload_bytes = {limit}\n")).expect("config");
    DaemonProc::start(&home.join("data"), &[("REELBOX_CONFIG", config.to_str().expect("utf-8 path"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_past_the_upload_limit_is_refused_alike_on_every_route_naming_the_limit() {
    let home = tempfile::tempdir().expect("tempdir");
    // The limit is a file's: a picture of exactly that many bytes is taken.
    let fits = png(&test_picture(120, 90, 1));
    let limit = fits.len();
    let big = png(&test_picture(400, 300, 2));
    assert!(big.len() > limit, "{} vs {limit}", big.len());
    let d = daemon_taking_files_up_to(home.path(), limit);
    let http = reqwest::Client::new();
    let form = |field: &'static str, bytes: Vec<u8>| {
        let form =
            Form::new().part(field, Part::bytes(bytes).file_name("photo.png").mime_str("image/png").expect("mime"));
        match field {
            "portrait" => form.text("name", "big"),
            "image" => form.text("prompt", "a red door"),
            _ => form,
        }
    };
    let fitting = http.post(d.at("/api/v1/artifacts")).multipart(form("file", fits)).send().await.expect("upload");
    assert_eq!(fitting.status(), StatusCode::CREATED, "a file at the limit is taken");

    let said = format!("larger than the {} this box takes", reelbox::disk::human_bytes(limit as u64));
    for (path, field) in [
        ("/api/v1/artifacts", "file"),
        ("/api/v1/profiles", "portrait"),
        ("/upload/image", "image"),
        ("/v1/images/edits", "image"),
    ] {
        let resp = http.post(d.at(path)).multipart(form(field, big.clone())).send().await.expect("upload");
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        // The rest of the file is left unread: the client is told to send its next request
        // on a new connection (it failed, sent down this one as the daemon closed it).
        assert_eq!(resp.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "{path}");
        let body: Value = resp.json().await.expect("json");
        let error = &body["error"];
        // OpenAI's shape names the field as `param`; ComfyUI's as `details`, the code as `type`.
        let (code, named) = match path {
            "/upload/image" => (&error["type"], &error["details"]),
            p if p.starts_with("/v1/") => (&error["code"], &error["param"]),
            _ => (&error["code"], &error["field"]),
        };
        assert_eq!((code, named), (&json!("upload_too_large"), &json!(field)), "{path}: {body}");
        let message = error["message"].as_str().unwrap_or("");
        assert!(message.contains(&said) && message.contains("limits.max_upload_bytes"), "{path}: {message}");
    }
    assert!(http.get(d.at("/healthz")).send().await.expect("healthz").status().is_success(), "the daemon stays up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_a_file_past_the_boxs_limit_instead_of_a_failed_request() {
    let home = tempfile::tempdir().expect("tempdir");
    let limit = 64 << 10;
    let d = daemon_taking_files_up_to(home.path(), limit);
    // Large enough that a daemon refusing it mid-body breaks the request off.
    let big = home.path().join("big.jpg");
    std::fs::write(&big, vec![0u8; 8 << 20]).expect("big file");
    let big_name = big.display().to_string();
    for args in [vec!["upscale", &big_name], vec!["profiles", "create", "--name", "big", "--portrait", &big_name]] {
        let out = reelbox_cli(home.path(), &home.path().join("models"))
            .args(["--url", &d.url])
            .args(&args)
            .output()
            .expect("run reelbox");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{big_name}: the file is 8.4 MB; the box takes files up to 65.5 kB")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("limits.max_upload_bytes"), "{args:?}: {stderr}");
    }
    let (_, jobs) = common::api::call(None, reqwest::Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(jobs["jobs"], json!([]), "nothing was made");
}

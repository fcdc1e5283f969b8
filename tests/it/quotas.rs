//! Quotas that hold under bursts: GPU time reserved at submission, against the real daemon.

use crate::common;

use std::time::Duration;

use common::api::{call, create_key, storage_bytes};
use common::daemon::{DaemonProc, is_final};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submissions_cannot_overshoot_the_gpu_seconds_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One (fake) GPU: jobs may run on it, so they reserve their estimated GPU time.
    let d = DaemonProc::start(dir.path(), &[("REELBOX_FAKE_GPUS", "8192")]);
    let (_, admin) = create_key(&d, None, json!({"name": "root", "scope": "admin"})).await;
    let quota = json!({"name": "tiny", "gpu_seconds_per_day": 1, "max_queued": 100});
    let (id, key) = create_key(&d, Some(&admin), quota).await;
    // Paused, nothing runs, so only reservations decide.
    assert!(call(Some(&admin), Method::POST, d.at("/api/v1/queue/pause"), None).await.0.is_success());

    // Each testcard is estimated at steps × step_ms = 0.2 s: five fit in 1 s.
    let job = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 200}});
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (key, url, job) = (key.clone(), d.at("/api/v1/jobs"), job.clone());
            tokio::spawn(async move { call(Some(&key), Method::POST, url, Some(job)).await })
        })
        .collect();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for t in burst {
        let (status, v) = t.await.expect("join");
        match status.as_u16() {
            202 => accepted.push(v["id"].as_str().expect("id").to_string()),
            429 => {
                // ComfyUI's shape (`/upload/image`) carries the code as `type`.
                let code = if v["error"]["code"].is_null() { &v["error"]["type"] } else { &v["error"]["code"] };
                assert_eq!(code, "quota_exceeded", "{v}");
                let msg = v["error"]["message"].as_str().unwrap_or("");
                assert!(
                    msg.contains("gpu_seconds_per_day") && msg.contains("tiny") && msg.contains("resets at"),
                    "{msg}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((accepted.len(), refused), (5, 45));

    // Once they ran, reservations are released and real GPU time is charged instead.
    assert!(call(Some(&admin), Method::POST, d.at("/api/v1/queue/resume"), None).await.0.is_success());
    for job in &accepted {
        let mut done = false;
        for _ in 0..200 {
            let (_, v) = call(Some(&key), Method::GET, d.at(&format!("/api/v1/jobs/{job}")), None).await;
            if is_final(&v) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(done, "job {job} finished");
    }
    let (_, keys) = call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await;
    let tiny = keys.as_array().expect("keys").iter().find(|k| k["id"] == id.as_str()).cloned().expect("listed");
    assert_eq!(tiny["gpu_seconds_reserved"], 0, "{tiny}");
}

/// A mono 16-bit 8 kHz WAV of exactly `size` bytes (`size` even, at least 46): sizes that
/// are known to the byte make the storage quota's edges testable.
fn wav_of_size(size: usize) -> Vec<u8> {
    let data = (size - 44) as u32;
    let mut w = Vec::with_capacity(size);
    w.extend(b"RIFF");
    w.extend((36 + data).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(8000u32.to_le_bytes());
    w.extend(16000u32.to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend(data.to_le_bytes());
    for i in 0..data / 2 {
        w.extend((((i as f32 * 0.3).sin() * 8000.0) as i16).to_le_bytes());
    }
    assert_eq!(w.len(), size);
    w
}

/// A noisy (incompressible) PNG, bigger than the quota in the test below.
fn noisy_png(side: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let b = seed.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("png");
    png
}

async fn upload(http: &Client, key: &str, url: String, field: &str, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part(field.to_string(), reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    let resp = http.post(url).bearer_auth(key).multipart(form).send().await.expect("upload");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_storage_refused(status: StatusCode, v: &Value) {
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // ComfyUI's shape (`/upload/image`) carries the code as `type`.
    let code = if v["error"]["code"].is_null() { &v["error"]["type"] } else { &v["error"]["code"] };
    assert_eq!(code, "quota_exceeded", "{v}");
    // Named once (it read "quota max_storage_bytes: … its quota max_storage_bytes = N").
    assert_eq!(v["error"]["message"].as_str().unwrap_or("").matches("max_storage_bytes").count(), 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_max_storage_bytes_are_refused_on_every_route_and_deleting_frees_room() {
    const QUOTA: u64 = 16_384;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let http = Client::new();
    let (_, admin) = create_key(&d, None, json!({"name": "root", "scope": "admin"})).await;
    let (_, key) = create_key(&d, Some(&admin), json!({"name": "small", "max_storage_bytes": QUOTA})).await;
    let (_, keys) = call(Some(&key), Method::GET, d.at("/api/v1/keys"), None).await;
    assert_eq!(keys[0]["max_storage_bytes"], QUOTA, "{keys}");

    // The first upload fits.
    let (status, v) = upload(&http, &key, d.at("/api/v1/artifacts"), "file", "a.wav", wav_of_size(2_000)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(storage_bytes(&d, &key).await, 2_000);

    // Job outputs count against the quota (and are never refused).
    let job = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "width": 64, "height": 36}});
    let (status, v) = call(Some(&key), Method::POST, d.at("/api/v1/jobs"), Some(job)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let job_id = v["id"].as_str().expect("id").to_string();
    let mut finished = Value::Null;
    for _ in 0..400 {
        let (_, v) = call(Some(&key), Method::GET, d.at(&format!("/api/v1/jobs/{job_id}")), None).await;
        if is_final(&v) {
            finished = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(finished["state"], "succeeded", "{finished}");
    let used = storage_bytes(&d, &key).await;
    let outputs = used - 2_000;
    assert!(outputs > 2 && used < QUOTA - 100, "job outputs {outputs} bytes");

    // One byte (rounded to a whole sample) past the quota is refused on every upload route.
    let over = ((QUOTA - used) as usize + 2) & !1;
    let (status, v) = upload(&http, &key, d.at("/api/v1/artifacts"), "file", "b.wav", wav_of_size(over)).await;
    assert_storage_refused(status, &v);
    let big = noisy_png(96);
    assert!(big.len() as u64 > QUOTA);
    let (status, v) = upload(&http, &key, d.at("/upload/image"), "image", "big.png", big.clone()).await;
    assert_storage_refused(status, &v);
    let form = reqwest::multipart::Form::new()
        .text("name", "presenter")
        .part("portrait", reqwest::multipart::Part::bytes(big).file_name("p.png"));
    let resp = http.post(d.at("/api/v1/profiles")).bearer_auth(&key).multipart(form).send().await.expect("profile");
    let status = resp.status();
    assert_storage_refused(status, &resp.json().await.unwrap_or(Value::Null));
    assert_eq!(storage_bytes(&d, &key).await, used, "refused uploads hold no bytes");

    // Deleting the job frees its outputs' bytes, and the same upload then fits.
    let (status, v) = call(Some(&key), Method::DELETE, d.at(&format!("/api/v1/jobs/{job_id}")), None).await;
    assert!(status.is_success(), "{status} {v}");
    assert_eq!(storage_bytes(&d, &key).await, 2_000);
    let (status, v) = upload(&http, &key, d.at("/api/v1/artifacts"), "file", "b.wav", wav_of_size(over)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
}

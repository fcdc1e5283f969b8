//! A1111's Extras and PNG Info through its API on the real daemon: `extra-single-image`
//! makes a picture larger with an installed upscaler (or a Lanczos resize alone) to the size
//! asked, as an `upscale` job; `png-info` reads a txt2img picture's parameters into A1111's
//! fields. Both answered 404 (`reelbox does not serve …`) before.

use crate::common;

use base64::Engine;
use common::compat::start_daemon;
use common::daemon::DaemonProc;
use image::{DynamicImage, Rgb, RgbImage};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::comfy_upscale::{UPSCALER, models_with_upscaler};

fn b64(img: &RgbImage) -> String {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn picture_of(answer: &Value) -> RgbImage {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(answer["image"].as_str().expect("image")).expect("b64");
    image::load_from_memory(&bytes).expect("a picture").to_rgb8()
}

async fn post(c: &reqwest::Client, d: &DaemonProc, path: &str, body: &Value) -> (StatusCode, Value) {
    let resp = c.post(d.at(path)).json(body).send().await.expect("request");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extras_make_a_picture_larger_and_png_info_reads_its_parameters() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = reqwest::Client::new();
    let small = RgbImage::from_fn(24, 16, |x, y| Rgb([(x * 10) as u8, (y * 15) as u8, 90]));

    // The upscaler's model, then the resize to twice the size (its x4 output brought down).
    let body = json!({"image": b64(&small), "upscaler_1": UPSCALER, "upscaling_resize": 2, "gfpgan_visibility": 0});
    let (status, answer) = post(&c, &d, "/sdapi/v1/extra-single-image", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(picture_of(&answer).dimensions(), (48, 32));
    let jobs: Value = c.get(d.at("/api/v1/jobs?kind=upscale")).send().await.expect("jobs").json().await.expect("json");
    assert_eq!(jobs["jobs"][0]["params"]["model"], json!(UPSCALER), "{jobs}");
    // "None" is a resize alone, here to a size of another shape, its middle cut out.
    let body = json!({"image": b64(&small), "upscaler_1": "None", "resize_mode": 1,
        "upscaling_resize_w": 40, "upscaling_resize_h": 40, "upscaling_crop": true});
    let (status, answer) = post(&c, &d, "/sdapi/v1/extra-single-image", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(picture_of(&answer).dimensions(), (40, 40));
    // An upscaler the box lacks is refused naming the field the request named it in.
    let body = json!({"image": b64(&small), "upscaler_1": "R-ESRGAN 4x+"});
    let (status, answer) = post(&c, &d, "/sdapi/v1/extra-single-image", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["detail"].as_str().is_some_and(|m| m.starts_with("upscaler_1:")), "{answer}");

    // PNG Info reads back what txt2img wrote.
    let body = json!({"prompt": "a red door", "negative_prompt": "blur", "seed": 77, "steps": 2, "width": 64,
        "height": 64, "sampler_name": "Euler", "scheduler": "Karras"});
    let (status, made) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let (status, info) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": made["images"][0]})).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let p = &info["parameters"];
    assert_eq!((&p["Prompt"], &p["Negative prompt"]), (&json!("a red door"), &json!("blur")), "{info}");
    assert_eq!((&p["Seed"], &p["Steps"], &p["Sampler"]), (&json!("77"), &json!("2"), &json!("Euler")), "{info}");
    assert_eq!((&p["Schedule type"], &p["Size-1"], &p["Size-2"]), (&json!("Karras"), &json!("64"), &json!("64")));
    assert!(info["info"].as_str().is_some_and(|t| t.starts_with("a red door\nNegative prompt: blur\n")), "{info}");
    // A picture without parameters has none.
    let (status, none) = post(&c, &d, "/sdapi/v1/png-info", &json!({"image": b64(&small)})).await;
    assert_eq!((status, &none["info"], &none["parameters"]), (StatusCode::OK, &json!(""), &json!({})), "{none}");
}

//! Inpainting against the real daemon with the tiny SD model: an `image` job's `mask` (and
//! OpenAI's `images.edit` with a mask, through the official Python client) redraws only the
//! masked part of `init_image`; the rest comes back pixel for pixel as it was sent; a mask
//! with transparency and its black-and-white form redraw alike; the same seed gives the same
//! pixels; a mask that does not fit is a 400 naming it. All of these were refused before
//! (native: "unknown parameter `mask`"; OpenAI: masks "are not supported").

use crate::common;

use std::time::Duration;

use common::compat::{TINY_SD, models_dir, run_client, start_daemon};
use common::daemon::{DaemonProc, is_final, wait_job};
use image::{DynamicImage, ImageFormat, RgbImage, Rgba, RgbaImage};
use serde_json::{Value, json};

/// The 64² picture the masks are drawn on.
fn picture() -> RgbImage {
    image::open(common::fixture("reference/sd/init_64.png")).expect("init picture").to_rgb8()
}

/// A `w`×`h` mask redrawing its left half: by transparency (OpenAI's) or by white (A1111's).
fn left_half_mask(w: u32, h: u32, by_alpha: bool) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, _| match (x < w / 2, by_alpha) {
        (true, true) => Rgba([0, 0, 0, 0]),
        (false, true) => Rgba([0, 0, 0, 255]),
        (redraw, false) => {
            let v = if redraw { 255 } else { 0 };
            Rgba([v, v, v, 255])
        }
    })
}

fn encoded(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format).expect("encode");
    out
}

fn png(img: DynamicImage) -> Vec<u8> {
    encoded(img, ImageFormat::Png)
}

async fn upload(d: &DaemonProc, name: &str, bytes: Vec<u8>) -> String {
    common::api::upload(d, None, name, bytes).await["id"].as_str().expect("artifact id").to_string()
}

/// The job `body` asks for, run to its end: its final view.
async fn finished(c: &reqwest::Client, d: &DaemonProc, body: &Value) -> Value {
    let job: Value = c.post(d.at("/api/v1/images")).json(body).send().await.expect("post").json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{body}: {job}"));
    let done = wait_job(c, d, id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done
}

async fn output(c: &reqwest::Client, d: &DaemonProc, job: &Value, name: &str) -> RgbImage {
    let id = job["id"].as_str().expect("id");
    image::load_from_memory(&common::render::artifact(c, d, id, name).await).expect("a PNG").to_rgb8()
}

/// Columns `xs` of `a` and `b`: how many pixels differ, and the mean difference per value.
fn compare(a: &RgbImage, b: &RgbImage, xs: std::ops::Range<u32>) -> (usize, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let (mut differing, mut sum, mut values) = (0, 0u64, 0u64);
    for (x, y, p) in a.enumerate_pixels().filter(|(x, ..)| xs.contains(x)) {
        let q = b.get_pixel(x, y);
        differing += usize::from(p != q);
        sum += p.0.iter().zip(q.0).map(|(u, v)| u64::from(u.abs_diff(v))).sum::<u64>();
        values += 3;
    }
    (differing, sum as f64 / values.max(1) as f64)
}

/// The picture's right half comes back exactly; the left half, away from the soft edge
/// (6 pixels inside the mask), is redrawn.
fn only_the_left_half_redrawn(out: &RgbImage, input: &RgbImage, what: &str) {
    assert_eq!(compare(out, input, 32..64).0, 0, "{what}: the kept half is the picture's own");
    let (differing, mean) = compare(out, input, 0..26);
    assert!(differing > 26 * 64 / 2 && mean > 10.0, "{what}: the masked half is redrawn ({differing} px, mean {mean})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mask_redraws_only_its_part_of_the_picture() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let input = picture();
    let init = upload(&d, "picture.png", png(DynamicImage::ImageRgb8(input.clone()))).await;
    let by_alpha = upload(&d, "mask.png", png(DynamicImage::ImageRgba8(left_half_mask(64, 64, true)))).await;
    let by_white = upload(&d, "mask-bw.png", png(DynamicImage::ImageRgba8(left_half_mask(64, 64, false)))).await;
    let body = |mask: &str| {
        json!({"prompt": "a red lighthouse", "width": 64, "height": 64, "steps": 4, "seed": 5, "n": 2,
            "init_image": init, "mask": mask, "strength": 0.75, "steps_mode": "run", "preview_every": 0})
    };

    let job = finished(&c, &d, &body(&by_alpha)).await;
    assert_eq!(job["params"]["mask"], by_alpha.as_str(), "the job keeps its mask: {job}");
    let first = output(&c, &d, &job, "image-1.png").await;
    let second = output(&c, &d, &job, "image-2.png").await;
    only_the_left_half_redrawn(&first, &input, "seed 5");
    only_the_left_half_redrawn(&second, &input, "seed 6");
    assert!(compare(&first, &second, 0..26).0 > 0, "each picture of the batch follows its own seed");

    // The black-and-white form of the same mask, same seed: the same pixels.
    let again = finished(&c, &d, &body(&by_white)).await;
    assert_eq!(output(&c, &d, &again, "image-1.png").await, first, "same seed, same mask, same pixels");
    assert_eq!(output(&c, &d, &again, "image-2.png").await, second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_that_do_not_fit_are_refused_naming_the_field() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let init = upload(&d, "picture.png", png(DynamicImage::ImageRgb8(picture()))).await;
    let small = upload(&d, "small.png", png(DynamicImage::ImageRgba8(left_half_mask(32, 64, true)))).await;
    let mask = upload(&d, "mask.png", png(DynamicImage::ImageRgba8(left_half_mask(64, 64, true)))).await;
    let base = json!({"prompt": "a red lighthouse", "width": 64, "height": 64, "steps": 2, "init_image": init});
    let with = |more: Value| {
        let mut body = base.clone();
        for (k, v) in more.as_object().expect("fields") {
            body[k] = v.clone();
        }
        if body["init_image"].is_null() {
            body.as_object_mut().expect("object").remove("init_image");
        }
        body
    };
    let cases = [
        (with(json!({"mask": small})), "mask", "32×64"),
        (with(json!({"mask": mask, "init_image": null})), "mask", "init_image"),
        (with(json!({"mask": "not-an-id"})), "mask", "artifact id"),
        (with(json!({"mask": mask, "refine": {"strength": 0.5}})), "refine", "mask"),
        (with(json!({"mask": mask, "mask_grow": 65})), "mask_grow", "between 0 and 64"),
        (with(json!({"mask_grow": 3})), "mask_grow", "only applies with mask"),
    ];
    for (body, field, says) in cases {
        let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
        let status = resp.status();
        let err: Value = resp.json().await.expect("json");
        assert_eq!((status.as_u16(), err["error"]["field"].as_str()), (400, Some(field)), "{body}: {err}");
        let message = err["error"]["message"].as_str().expect("message");
        assert!(message.contains(says), "{body}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_edits_only_the_masked_part() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let input = picture();
    let dir = tempfile::tempdir().expect("in dir");
    let out = tempfile::tempdir().expect("out dir");
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).expect("write");
    write("picture.png", png(DynamicImage::ImageRgb8(input.clone())));
    write("mask.png", png(DynamicImage::ImageRgba8(left_half_mask(64, 64, true))));
    write("small-mask.png", png(DynamicImage::ImageRgba8(left_half_mask(32, 32, true))));
    write("mask.jpeg", encoded(DynamicImage::ImageRgb8(input.clone()), ImageFormat::Jpeg));
    let args = vec![
        d.url.clone(),
        dir.path().to_string_lossy().into_owned(),
        out.path().to_string_lossy().into_owned(),
        TINY_SD.to_string(),
    ];
    let summary = run_client("openai_inpaint.py", args).await;
    assert_eq!(summary["size"], "64x64", "{summary}");
    let refused = json!({"status": 400, "param": "mask", "type": "invalid_request_error"});
    assert_eq!(summary["small-mask.png"], refused, "a mask of another size");
    assert_eq!(summary["mask.jpeg"], refused, "a mask that is no PNG");
    let edited = image::open(out.path().join("edited.png")).expect("the edited PNG").to_rgb8();
    only_the_left_half_redrawn(&edited, &input, "images.edit with a mask");
}

/// `reelbox image --init PICTURE --mask MASK`: the command line inpaints on the daemon (the
/// picture and the mask sent as uploads); `--local`, which has no daemon, says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reelbox_image_with_a_mask_redraws_only_its_part() {
    let models = models_dir(false);
    let home = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(&home.path().join("data"), models.path());
    let input = picture();
    let write = |name: &str, bytes: Vec<u8>| {
        let path = home.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    };
    let init = write("picture.png", png(DynamicImage::ImageRgb8(input.clone())));
    let mask = write("mask.png", png(DynamicImage::ImageRgba8(left_half_mask(64, 64, true))));
    let out = home.path().join("edited.png");
    let cli = || {
        let mut cmd = common::tools::reelbox_cli(home.path(), models.path());
        cmd.args(["image", "a red lighthouse", "--width", "64", "--height", "64", "--steps", "4", "--seed", "5"])
            .args(["--strength", "0.75", "--init"])
            .arg(&init)
            .arg("--mask")
            .arg(&mask)
            .arg("-o")
            .arg(&out);
        cmd
    };
    common::tools::run_ok(cli().args(["--url", &d.at("")]));
    let edited = image::open(&out).expect("the edited PNG").to_rgb8();
    only_the_left_half_redrawn(&edited, &input, "reelbox image --mask");
    let local = cli().arg("--local").output().expect("run");
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success() && stderr.contains("--mask: the daemon inpaints"), "{stderr}");
}

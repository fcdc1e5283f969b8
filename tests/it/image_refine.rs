//! The `image` kind's second sampling pass, `refine` (A1111's "hires fix"), against the real
//! daemon with the tiny SD model: each picture is scaled and sampled again as image to image
//! in a stage of its own, `refine`, after `generate`, weighed by the steps it runs over its
//! pixels; the refined picture is not the first pass's merely resized; the same seed gives
//! the same pixels; bad second passes are 400s naming `refine.FIELD`; `reelbox image
//! --refine 1.5x --refine-strength 0.5` writes the refined picture. Every one of these was
//! refused before: "unknown parameter `refine`".

use crate::common;

use std::time::Duration;

use common::compat::{models_dir, start_daemon};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::tools::{reelbox_cli, run_ok};
use serde_json::{Value, json};

/// The job `body` asks `route` for, run to its end: its final view.
async fn finished(c: &reqwest::Client, d: &DaemonProc, route: &str, body: Value) -> Value {
    let resp = c.post(d.at(route)).json(&body).send().await.expect("post");
    let job: Value = resp.json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{route}: {job}"));
    let done = wait_job(c, d, id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done
}

/// A job's PNG artifact `name`, decoded.
async fn picture(c: &reqwest::Client, d: &DaemonProc, job: &Value, name: &str) -> image::RgbImage {
    let id = job["id"].as_str().expect("id");
    image::load_from_memory(&common::render::artifact(c, d, id, name).await).expect("a PNG").to_rgb8()
}

fn stage_names(job: &Value) -> Vec<&str> {
    job["stages"].as_array().expect("stages").iter().filter_map(|s| s["name"].as_str()).collect()
}

/// Mean absolute difference of two same-sized pictures, per channel value.
fn mean_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Two 64² pictures of 4 steps, seeds 5 and 6, with `more` fields.
fn two_pictures(more: Value) -> Value {
    let mut body = json!({"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": 4, "seed": 5, "n": 2,
        "preview_every": 0});
    for (k, v) in more.as_object().expect("fields") {
        body[k] = v.clone();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_samples_each_picture_again_at_its_scaled_size_in_a_stage_of_its_own() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let refine = json!({"refine": {"resize": {"scale_by": 1.5}, "strength": 0.6}});
    let job = finished(&c, &d, "/api/v1/images", two_pictures(refine.clone())).await;
    assert_eq!(stage_names(&job), ["generate", "refine"]);
    let stored = &job["params"]["refine"];
    assert_eq!(
        (&stored["width"], &stored["height"], &stored["strength"], &stored["steps"], &stored["seed"]),
        (&json!(96), &json!(96), &json!(0.6), &json!(4), &json!(5)),
        "the first pass's steps and seed unless asked: {job}"
    );
    // Weighed by what each costs: 4 steps + decode against (the ⌊4 × 0.6⌋ steps it runs +
    // encode + decode) over 2.25 times the pixels.
    let weight = |i: usize| job["stages"][i]["weight"].as_f64().expect("a weight");
    let want = (2.0 + 1.0 + 2.0) * 2.25 / (4.0 + 2.0);
    assert!((weight(1) / weight(0) - want).abs() < 1e-6, "{}", job["stages"]);
    for (first, refined) in [("image-1.png", "refined-1.png"), ("image-2.png", "refined-2.png")] {
        assert_eq!(picture(&c, &d, &job, first).await.dimensions(), (64, 64));
        assert_eq!(picture(&c, &d, &job, refined).await.dimensions(), (96, 96), "{refined}");
    }

    // The same first pass only resized, without a model: the refined pictures were sampled again.
    let plain = finished(&c, &d, "/api/v1/images", two_pictures(json!({"resize": {"scale_by": 1.5}}))).await;
    assert_eq!(picture(&c, &d, &plain, "image-1.png").await, picture(&c, &d, &job, "image-1.png").await);
    let resized = picture(&c, &d, &plain, "resized-1.png").await;
    let refined = picture(&c, &d, &job, "refined-1.png").await;
    let apart = mean_diff(&resized, &refined);
    assert!(apart > 2.0, "a second pass at 0.6 repaints the picture: {apart}");

    // The same seed gives the same pixels; the job through /api/v1/jobs is the same job.
    let again = finished(&c, &d, "/api/v1/jobs", json!({"kind": "image", "params": two_pictures(refine)})).await;
    assert_eq!(picture(&c, &d, &again, "refined-2.png").await, picture(&c, &d, &job, "refined-2.png").await);
    // Its own seed, a picture of its own.
    let other = two_pictures(json!({"refine": {"resize": {"scale_by": 1.5}, "strength": 0.6, "seed": 99}}));
    let other = finished(&c, &d, "/api/v1/images", other).await;
    assert_ne!(picture(&c, &d, &other, "refined-1.png").await, refined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_second_passes_are_refused_naming_the_field() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    let image = |refine: Value| json!({"prompt": "a cat", "width": 64, "height": 64, "refine": refine});
    let wide =
        json!({"prompt": "a cat", "width": 512, "height": 64, "refine": {"resize": {"scale_by": 8}, "strength": 0.5}});
    let cases = [
        ("/api/v1/images", image(json!({"strength": 0})), "refine.strength", "more than 0"),
        ("/api/v1/images", image(json!({"strength": 2})), "refine.strength", "at most 1"),
        ("/api/v1/images", image(json!({"resize": {"scale_by": 2}})), "refine.strength", ""),
        ("/api/v1/images", image(json!({"strength": 0.5, "denoise": 0.5})), "refine.denoise", ""),
        ("/api/v1/images", wide, "refine.resize.scale_by", "4096x512"),
        // 64 × 0.5 = 32: smaller than the model samples.
        (
            "/api/v1/images",
            image(json!({"strength": 0.5, "resize": {"scale_by": 0.5}})),
            "refine.resize.scale_by",
            "32x32",
        ),
        ("/api/v1/jobs", json!({"kind": "image", "params": image(json!({"strength": 2}))}), "refine.strength", ""),
        (
            "/api/v1/jobs",
            json!({"kind": "image", "params": image(json!({"strength": 0.5, "steps": 0}))}),
            "refine.steps",
            "",
        ),
        ("/api/v1/jobs", json!({"kind": "image", "params": image(json!(0.5))}), "refine", ""),
        ("/api/v1/images", image(json!({"strength": 0.5, "schedule": "beta"})), "refine.schedule", ""),
        (
            "/api/v1/jobs",
            json!({"kind": "image", "params": image(json!({"strength": 0.5, "schedule": "beta"}))}),
            "refine.schedule",
            "normal, karras",
        ),
        // The model's own PLMS takes no schedule; a Karras name is a schedule already.
        ("/api/v1/images", image(json!({"strength": 0.5, "schedule": "karras"})), "refine.schedule", "pndm"),
        (
            "/api/v1/images",
            image(json!({"strength": 0.5, "scheduler": "dpmpp_2m_karras", "schedule": "normal"})),
            "refine.schedule",
            "karras is a schedule",
        ),
    ];
    for (route, body, field, says) in cases {
        let resp = c.post(d.at(route)).json(&body).send().await.expect("post");
        let status = resp.status().as_u16();
        let err: Value = resp.json().await.expect("json");
        assert_eq!((status, err["error"]["field"].as_str()), (400, Some(field)), "{route} {body}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{route} {body}: {err}");
    }
    let jobs: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("jobs").json().await.expect("json");
    assert_eq!(jobs["jobs"], json!([]), "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reelbox_image_refine_writes_the_refined_picture() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = models_dir(false);
    let d = start_daemon(&home.path().join("data"), models.path());
    let out = home.path().join("hires.png");
    let args = [
        "image",
        "a red circle",
        "--model",
        "tiny-sd",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--seed",
        "42",
        "--refine",
        "1.5x",
        "--refine-strength",
        "0.5",
        "--refine-steps",
        "3",
        "--scheduler",
        "euler",
        "--refine-schedule",
        "karras",
        "-o",
    ];
    let done = run_ok(reelbox_cli(home.path(), models.path()).args(args).arg(&out).args(["--url", &d.at("")]));
    assert_eq!(image::image_dimensions(&out).expect("a PNG"), (96, 96), "the refined picture is written");
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains("64×64 · refined at 96×96"), "{said}");
    let jobs: Value = reqwest::get(d.at("/api/v1/jobs")).await.expect("jobs").json().await.expect("json");
    let refine = &jobs["jobs"][0]["params"]["refine"];
    assert_eq!((&refine["steps"], &refine["strength"]), (&json!(3), &json!(0.5)), "{jobs}");
    assert_eq!((&refine["scheduler"], &refine["schedule"]), (&json!("euler"), &json!("karras")), "{jobs}");
    // A strength is asked for; in this process there is no second pass, said, not dropped.
    let missing = reelbox_cli(home.path(), models.path())
        .args(["image", "a cat", "--refine", "2x", "-o"])
        .arg(home.path().join("x.png"))
        .output()
        .expect("run");
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("--refine-strength"));
    let local = reelbox_cli(home.path(), models.path())
        .args(["image", "a cat", "--local", "--refine", "2x", "--refine-strength", "0.5", "-o"])
        .arg(home.path().join("y.png"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&local.stderr);
    assert!(!local.status.success() && stderr.contains("--refine"), "{stderr}");
    // With no daemon answering, the second pass runs on a daemon this command starts (as
    // `render` does): it was refused, "(or drop --local)", though --local was not given.
    let alone = home.path().join("alone.png");
    let done =
        run_ok(reelbox_cli(home.path(), models.path()).args(args).arg(&alone).args(["--url", "http://127.0.0.1:1"]));
    assert_eq!(image::image_dimensions(&alone).expect("a PNG"), (96, 96), "the refined picture is written");
    let said = String::from_utf8_lossy(&done.stderr);
    assert!(said.contains("refined at 96×96") && !said.contains("--local"), "{said}");
    // From the first pass's latent (ComfyUI's latent hires fix): another picture, the latent
    // kept with the job.
    let latent = home.path().join("latent.png");
    let done = run_ok(reelbox_cli(home.path(), models.path()).args(args).arg(&latent).args([
        "--refine-from",
        "latent",
        "--url",
        &d.at(""),
    ]));
    assert_eq!(image::image_dimensions(&latent).expect("a PNG"), (96, 96), "{}", String::from_utf8_lossy(&done.stderr));
    assert_ne!(std::fs::read(&latent).expect("png"), std::fs::read(&out).expect("png"), "not the picture form's");
    let jobs: Value = reqwest::get(d.at("/api/v1/jobs")).await.expect("jobs").json().await.expect("json");
    assert_eq!(jobs["jobs"][0]["params"]["refine"]["from"], "latent", "{jobs}");
}

/// The upscale and the resize take the second pass's pictures, not the first's; a second
/// pass may upscale with a model of its own first (ComfyUI's ImageUpscaleWithModel between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upscale_and_the_resize_take_the_refined_pictures_and_a_refine_upscales_with_its_own_model() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = crate::comfy_upscale::models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = reqwest::Client::new();
    let body = json!({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 3,
        "refine": {"resize": {"scale_by": 1.5}, "strength": 0.5}, "upscale_model": crate::comfy_upscale::UPSCALER,
        "resize": {"scale_by": 0.5}});
    let job = finished(&c, &d, "/api/v1/images", body).await;
    assert_eq!(stage_names(&job), ["generate", "refine", "upscale", "resize"]);
    let sizes = [("image.png", 64), ("refined.png", 96), ("upscaled.png", 384), ("resized.png", 192)];
    for (name, side) in sizes {
        assert_eq!(picture(&c, &d, &job, name).await.dimensions(), (side, side), "{name}");
    }

    // The second pass's own upscale model, then its resize: 64 × 4 × 0.75 = 192.
    let body = json!({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 3,
        "refine": {"upscale_model": crate::comfy_upscale::UPSCALER, "resize": {"scale_by": 0.75}, "strength": 0.5}});
    let job = finished(&c, &d, "/api/v1/images", body).await;
    assert_eq!(stage_names(&job), ["generate", "refine"]);
    assert_eq!(picture(&c, &d, &job, "refined.png").await.dimensions(), (192, 192));
    // Its size is known once the model is loaded: past the largest side, the stage says so.
    let body = json!({"prompt": "a lighthouse", "width": 1024, "height": 64, "steps": 1, "seed": 3,
        "refine": {"upscale_model": crate::comfy_upscale::UPSCALER, "strength": 0.5}});
    let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let failed = wait_job(&c, &d, &id, Duration::from_secs(120), is_final).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let why = failed["error"].as_str().unwrap_or("");
    assert!(why.contains("4096x256") && why.contains("refine"), "{failed}");
    // An upscale model that is not installed is refused at once, naming the field.
    let body = json!({"prompt": "a cat", "refine": {"upscale_model": "nope", "strength": 0.5}});
    let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.expect("json")["error"]["field"], "refine.upscale_model");
}

/// The first pass's latent as the job keeps it: a NumPy `[1, 4, 8, 8]` float32 array.
async fn latent(c: &reqwest::Client, d: &DaemonProc, job: &Value, name: &str) -> ndarray::ArrayD<f32> {
    let id = job["id"].as_str().expect("id");
    let bytes = common::render::artifact(c, d, id, name).await;
    <ndarray::ArrayD<f32> as ndarray_npy::ReadNpyExt>::read_npy(&bytes[..]).expect("a NumPy array of float32")
}

/// `refine.from: latent` (ComfyUI's latent hires fix): the second pass starts from the first
/// pass's final latent, kept as `latent-N.npy` and scaled as ComfyUI scales it, not from its
/// picture decoded and encoded again; it needs no VAE encoder. Refused before: "unknown
/// parameter `refine.from`".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_from_the_latent_scales_the_first_passs_latent_not_its_picture() {
    let models = models_dir(false);
    // The same model without its VAE encoder.
    let bare = models.path().join("tiny-sd-no-encoder");
    std::fs::create_dir(&bare).expect("mkdir");
    for entry in std::fs::read_dir(common::fixture("models/tiny-sd")).expect("tiny-sd") {
        let entry = entry.expect("entry");
        if entry.file_name() != "vae_encoder" {
            std::os::unix::fs::symlink(entry.path(), bare.join(entry.file_name())).expect("link");
        }
    }
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = reqwest::Client::new();
    // Two models installed: each request names its own.
    let two_pictures = |more: Value| {
        let mut body = two_pictures(more);
        body["model"] = body.get("model").cloned().unwrap_or(json!("tiny-sd"));
        body
    };
    let from_latent = json!({"refine": {"from": "latent", "resize": {"scale_by": 1.5}, "strength": 0.6}});
    let job = finished(&c, &d, "/api/v1/images", two_pictures(from_latent.clone())).await;
    assert_eq!(stage_names(&job), ["generate", "refine"]);
    let stored = &job["params"]["refine"];
    assert_eq!(
        (&stored["from"], &stored["resize"]["method"], &stored["width"]),
        (&json!("latent"), &json!("nearest-exact"), &json!(96)),
        "ComfyUI's default method: {job}"
    );
    for (name, refined) in [("latent-1.npy", "refined-1.png"), ("latent-2.npy", "refined-2.png")] {
        let kept = latent(&c, &d, &job, name).await;
        assert_eq!(kept.shape(), [1, 4, 8, 8], "{name}");
        assert!(kept.iter().all(|v| v.is_finite()) && kept.iter().any(|v| *v != 0.0), "{name}: {kept:?}");
        assert_eq!(picture(&c, &d, &job, refined).await.dimensions(), (96, 96), "{refined}");
    }
    let two: Vec<_> = [latent(&c, &d, &job, "latent-1.npy").await, latent(&c, &d, &job, "latent-2.npy").await].into();
    assert_ne!(two[0], two[1], "each picture's own latent");

    // The same second pass from the picture, decoded, scaled and encoded again: another picture.
    let from_picture = json!({"refine": {"resize": {"method": "nearest-exact", "scale_by": 1.5}, "strength": 0.6}});
    let pixels = finished(&c, &d, "/api/v1/images", two_pictures(from_picture)).await;
    assert_eq!(picture(&c, &d, &pixels, "image-1.png").await, picture(&c, &d, &job, "image-1.png").await);
    let refined = picture(&c, &d, &job, "refined-1.png").await;
    let apart = mean_diff(&picture(&c, &d, &pixels, "refined-1.png").await, &refined);
    assert!(apart > 1.0, "the latent's start is not the re-encoded picture's: {apart}");

    // The same seed gives the same pixels.
    let again = finished(&c, &d, "/api/v1/jobs", json!({"kind": "image", "params": two_pictures(from_latent)})).await;
    assert_eq!(picture(&c, &d, &again, "refined-1.png").await, refined);

    // ComfyUI's bislerp and a centre crop to another shape, on a model with no VAE encoder.
    let wide = json!({"model": "tiny-sd-no-encoder", "n": 1, "refine": {"from": "latent", "strength": 0.5,
        "resize": {"method": "bislerp", "width": 128, "height": 64, "crop": "center"}}});
    let wide = finished(&c, &d, "/api/v1/images", two_pictures(wide)).await;
    assert_eq!(picture(&c, &d, &wide, "refined.png").await.dimensions(), (128, 64));

    let image = |refine: Value| two_pictures(json!({"refine": refine}));
    let cases = [
        (image(json!({"from": "pixels", "strength": 0.5})), "refine.from", "latent"),
        (image(json!({"from": "latent", "strength": 0.5, "upscale_model": "x"})), "refine.upscale_model", "latent"),
        (
            image(json!({"from": "latent", "strength": 0.5, "resize": {"method": "lanczos", "scale_by": 2}})),
            "refine.resize.method",
            "bislerp",
        ),
        (
            two_pictures(json!({"model": "tiny-sd-no-encoder", "refine": {"strength": 0.5}})),
            "refine",
            "\"from\": \"latent\"",
        ),
    ];
    for (body, field, says) in cases {
        let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
        let status = resp.status().as_u16();
        let err: Value = resp.json().await.expect("json");
        assert_eq!((status, err["error"]["field"].as_str()), (400, Some(field)), "{body}: {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains(says)), "{body}: {err}");
    }
}

//! A profile names its picture model: `image_model` (an installed diffusion model, here a
//! LoRA-fused import) draws the keyframes of the profile's renders when the request names
//! no model. What a user notices: the render's keyframe stage says which model drew them,
//! the keyframe is that model's picture (not the base model's), a request's own `model`
//! still wins, and a name that is no installed diffusion model is refused naming
//! `image_model`. Set and cleared through the CLI (`profiles create/update --image-model`).
//! A picture made with the profile (`reelbox image --profile`, `POST /api/v1/images`) uses
//! its picture model and puts its style before the prompt.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::byo::{fixture_once, import_cmd, max_diff};
use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::provision;
use common::render::artifact;
use common::tools::{convert_pyenv, reelbox_cli, run_ok};
use serde_json::{Value, json};

/// Imports the tiny SD from `sd` as `name` with `extra` import arguments.
fn import(env: &Path, home: &Path, models: &Path, sd: &Path, name: &str, extra: &[String]) {
    let out = run_ok(import_cmd(env, home, models).args(["--json", "--name", name]).args(extra).arg(sd));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert!(report["self_check"]["max_abs_diff"].as_f64().is_some_and(|d| d <= 1e-3), "{report}");
}

/// `reelbox --json profiles ARGS --url URL`, parsed.
fn profiles_cli(home: &Path, models: &Path, d: &DaemonProc, args: &[&str]) -> Value {
    let out = run_ok(reelbox_cli(home, models).args(["--json", "profiles"]).args(args).args(["--url", &d.url]));
    serde_json::from_slice(&out.stdout).expect("profile JSON")
}

/// Renders one scene with `params` added; the finished job's id and its log text.
async fn render(http: &reqwest::Client, d: &DaemonProc, params: Value) -> (String, String) {
    let mut body = json!({"script": "A red circle on a blue background.", "steps": 2, "width": 64, "height": 64,
                          "seed": 7, "layout": "none"});
    if let (Some(b), Some(p)) = (body.as_object_mut(), params.as_object()) {
        b.extend(p.clone());
    }
    let (s, job) = post_json(http, d, "/api/v1/jobs", json!({"kind": "render", "params": body})).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(http, d, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    (id, events.text().await.expect("event text"))
}

async fn keyframe(http: &reqwest::Client, d: &DaemonProc, id: &str) -> Vec<u8> {
    let png = artifact(http, d, id, "keyframe_00.png").await;
    image::load_from_memory(&png).expect("PNG").to_rgb8().into_raw()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_s_picture_model_draws_its_renders_keyframes() {
    let env = convert_pyenv();
    let home = tempfile::tempdir().expect("tempdir");
    let (h, models) = (home.path(), home.path().join("models"));
    let joe = provision::joe_voice();
    common::copy_dir(joe.parent().expect("voice dir"), &models.join("en_US-joe-medium"));
    let sd = fixture_once(&env, "make_byo_sd.py").join("tiny-sd-diffusers");
    import(&env, h, &models, &sd, "plain", &[]);
    let lora = format!("{}:1", fixture_once(&env, "make_byo_lora.py").join("style-diffusers.safetensors").display());
    import(&env, h, &models, &sd, "styled", &["--lora".into(), lora]);

    let runtime = provision::runtime();
    let d = DaemonProc::start(
        &h.join("data"),
        &[
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
            ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
        ],
    );
    // With two installed, renders naming no model need a chosen default.
    run_ok(reelbox_cli(h, &models).env("REELBOX_DATA_DIR", h.join("data")).args([
        "models",
        "default",
        "diffusion",
        "plain",
    ]));
    let http = reqwest::Client::new();

    // Names that are no installed diffusion model are refused, naming the field.
    for bad in ["no-such-model", "en_US-joe-medium"] {
        let form = reqwest::multipart::Form::new().text("name", "x").text("image_model", bad);
        let r = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("post");
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.expect("json");
        let (field, message) = (&body["error"]["field"], body["error"]["message"].as_str().unwrap_or_default());
        assert_eq!(field, "image_model", "{body}");
        assert!(message.contains(bad) && message.contains("installed: plain, styled"), "{body}");
    }
    assert_eq!(get_json(&http, &d, "/api/v1/profiles").await, json!([]), "a refused profile is not kept");

    let p = profiles_cli(h, &models, &d, &["create", "--name", "painter", "--image-model", "styled"]);
    assert_eq!(p["style"]["image_model"], "styled", "{p}");
    let pid = p["id"].as_str().expect("id").to_string();

    let (styled, log) = render(&http, &d, json!({"profile": pid})).await;
    assert!(log.contains("keyframes with diffusion model styled"), "{log}");
    let (own, log) = render(&http, &d, json!({"profile": pid, "model": "plain"})).await;
    assert!(log.contains("keyframes with diffusion model plain"), "the request's own model wins: {log}");
    let (styled, own) = (keyframe(&http, &d, &styled).await, keyframe(&http, &d, &own).await);
    assert!(max_diff(&styled, &own) > 16, "the profile's LoRA-fused model drew a different keyframe");

    // A picture made with the profile (`reelbox image --profile`) is its picture model's, in
    // its style: the same pixels as naming that model with the style before the prompt.
    profiles_cli(h, &models, &d, &["update", &pid, "--style", "oil painting"]);
    let png = h.join("with-profile.png");
    let args = ["--json", "image", "a red circle", "--profile", &pid, "--steps", "2", "--width", "64"];
    let out = run_ok(
        reelbox_cli(h, &models).args(args).args(["--height", "64", "--seed", "7", "--url", &d.url]).arg("-o").arg(&png),
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("image JSON");
    assert_eq!(report["params"]["model"], "styled", "{report}");
    assert_eq!(report["params"]["prompt"], "oil painting, a red circle", "{report}");
    let with_profile = image::open(&png).expect("PNG").to_rgb8().into_raw();
    let picture = |extra: Value| {
        let (http, d) = (&http, &d);
        async move {
            let mut body = json!({"steps": 2, "width": 64, "height": 64, "seed": 7, "preview_every": 0});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let (s, job) = post_json(http, d, "/api/v1/images", body).await;
            assert_eq!(s, 202, "{job}");
            let id = job["id"].as_str().expect("id").to_string();
            let done = wait_job(http, d, &id, Duration::from_secs(120), is_final).await;
            assert_eq!(done["state"], "succeeded", "{done}");
            let png = artifact(http, d, &id, "image.png").await;
            image::load_from_memory(&png).expect("PNG").to_rgb8().into_raw()
        }
    };
    let named = picture(json!({"prompt": "oil painting, a red circle", "model": "styled"})).await;
    assert_eq!(max_diff(&with_profile, &named), 0, "the profile's model and style");
    let plain = picture(json!({"prompt": "a red circle", "profile": pid, "model": "plain"})).await;
    assert!(max_diff(&with_profile, &plain) > 16, "the request's own model wins over the profile's");
    let (s, body) =
        post_json(&http, &d, "/api/v1/images", json!({"prompt": "x", "profile": "01J00000000000000000000000"})).await;
    assert_eq!((s, &body["error"]["field"]), (400, &json!("profile")), "{body}");

    // Cleared, the profile leaves the model to the render's default.
    profiles_cli(h, &models, &d, &["update", &pid, "--style", ""]);
    let p = profiles_cli(h, &models, &d, &["update", &pid, "--image-model", ""]);
    assert!(p["style"]["image_model"].is_null(), "{p}");
    let (default, log) = render(&http, &d, json!({"profile": pid})).await;
    assert!(log.contains("keyframes with diffusion model plain"), "{log}");
    assert_eq!(max_diff(&keyframe(&http, &d, &default).await, &own), 0, "the default model's keyframe");
}

//! Clip skip: the prompts read at an earlier layer of the text encoder, as many SD 1.5
//! fine-tunes (anime ones above all) are made to be drawn ("Clip skip: 2" in the pictures
//! posted with them). A model imported with `reelbox models import` exports every layer (SD
//! 1.x/2.x's through the final layer norm, as A1111, ComfyUI and diffusers read them), and
//! its self-check compares the prompt read one layer short against PyTorch's. The native
//! `clip_skip`, A1111's `override_settings.CLIP_stop_at_last_layers` and ComfyUI's
//! CLIPSetLastLayer draw with it (A1111's also as set through `/sdapi/v1/options`); a model from the hub, which gives its last layer only, is
//! refused at once saying how to get one that skips; past the encoder's layers is refused
//! naming the field. Before, `clip_skip` was an unknown field, A1111's setting was dropped without
//! a word and CLIPSetLastLayer was "not found".

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::byo::{anime_beside_hub, fixture_once, max_diff};
use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::tools::{convert_pyenv, reelbox_cli};
use reelbox::pipelines::diffusion::output::parameters_of;
use serde_json::{Value, json};

use crate::comfy_compat::{default_workflow, history_of, queue_prompt};

/// A native 64×64, 2-step `image` job of "a red circle" at seed 7 with `more`: its pixels and
/// parameters text.
pub(crate) async fn draw(http: &reqwest::Client, d: &DaemonProc, more: Value) -> (Vec<u8>, String) {
    let mut params = json!({"prompt": "a red circle", "seed": 7, "width": 64, "height": 64, "steps": 2});
    for (k, v) in more.as_object().into_iter().flatten() {
        params[k] = v.clone();
    }
    let (s, job) = post_json(http, d, "/api/v1/jobs", json!({"kind": "image", "params": params})).await;
    assert_eq!(s, 202, "{params}: {job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(http, d, &id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{params}: {done}");
    let out = get_json(http, d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let png = out.as_array().and_then(|a| a.iter().find(|x| x["name"] == "image.png").cloned());
    let png = png.unwrap_or_else(|| panic!("no image.png among {out}"));
    let bytes = http.get(d.at(png["url"].as_str().expect("url"))).send().await.expect("get");
    let bytes = bytes.bytes().await.expect("bytes");
    let text = parameters_of(&bytes).expect("a parameters text");
    (image::load_from_memory(&bytes).expect("PNG").to_rgb8().into_raw(), text)
}

/// An A1111 txt2img on `model` with `CLIP_stop_at_last_layers` at `stop`: status, answer.
async fn txt2img(http: &reqwest::Client, d: &DaemonProc, model: &str, stop: Value) -> (u16, Value) {
    let body = json!({"prompt": "a red circle", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "override_settings": {"sd_model_checkpoint": model, "CLIP_stop_at_last_layers": stop}});
    post_json(http, d, "/sdapi/v1/txt2img", body).await
}

/// The picture and its `info` of a 200 txt2img answer.
pub(crate) fn picture_of(answer: &Value) -> (Vec<u8>, Value) {
    let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("an image"));
    let png = png.expect("base64");
    let info = serde_json::from_str(answer["info"].as_str().expect("info")).expect("info JSON");
    (image::load_from_memory(&png).expect("PNG").to_rgb8().into_raw(), info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_model_draws_at_earlier_text_encoder_layers_through_every_route() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd.py");
    let http = reqwest::Client::new();
    // `hub-sd`, a model as the hub exports them: its text encoder gives the last layer only.
    let (_home, _models, d, report) = anime_beside_hub(&http, &env, src).await;
    // The self-check read the prompt one layer short, as PyTorch does, within 1e-3.
    let compared = report["self_check"]["compared"].as_str().unwrap_or_default();
    assert!(compared.contains("the prompt at clip skip 2"), "{report}");

    // Native: 1 is the model's own; each layer further back draws another picture.
    let anime = |more: Value| {
        let mut p = json!({"model": "anime"});
        p.as_object_mut().expect("object").extend(more.as_object().cloned().unwrap_or_default());
        p
    };
    let own = draw(&http, &d, anime(json!({}))).await;
    let one = draw(&http, &d, anime(json!({"clip_skip": 1}))).await;
    assert_eq!(one.0, own.0, "clip skip 1 is the model's own");
    assert!(!own.1.contains("Clip skip"), "{}", own.1);
    let two = draw(&http, &d, anime(json!({"clip_skip": 2}))).await;
    assert!(max_diff(&two.0, &own.0) > 8, "clip skip 2 draws another picture");
    assert!(two.1.contains(", Clip skip: 2, "), "A1111's key: {}", two.1);
    let three = draw(&http, &d, anime(json!({"clip_skip": 3}))).await;
    assert!(max_diff(&three.0, &two.0) > 8, "clip skip 3 draws another picture again");
    // Refused at once, naming the field: no layer, not a number, and (the tiny encoder has 3
    // layers) a 4th from its end.
    let refused = |model: &'static str, skip: Value| {
        let params = json!({"model": model, "prompt": "a red circle", "clip_skip": skip});
        let (http, d) = (&http, &d);
        async move {
            let (s, v) = post_json(http, d, "/api/v1/images", params.clone()).await;
            assert_eq!((s, v["error"]["field"].as_str()), (400, Some("clip_skip")), "{params}: {v}");
            v["error"]["message"].as_str().unwrap_or_default().to_string()
        }
    };
    for bad in [json!(0), json!(25), json!("two"), json!(1.5)] {
        refused("anime", bad).await;
    }
    assert!(refused("anime", json!(4)).await.contains("3 layers"));
    // The hub's model: its own layer draws, another is refused with the way to one that skips.
    draw(&http, &d, json!({"model": "hub-sd", "clip_skip": 1})).await;
    assert!(refused("hub-sd", json!(2)).await.contains("reelbox models import"));
    // The listing says which each takes.
    let listed = get_json(&http, &d, "/api/v1/models").await;
    let row = |name: &str| {
        let rows = listed["models"].as_array().cloned().unwrap_or_default();
        let row = rows.into_iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} in {listed}"));
        (row["default_clip_skip"].as_u64(), row["max_clip_skip"].as_u64())
    };
    assert_eq!((row("anime"), row("hub-sd")), ((Some(1), Some(3)), (Some(1), Some(1))));
    let jobs = get_json(&http, &d, "/api/v1/jobs?kind=image&state=failed").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "refused, nothing failed: {jobs}");

    // A1111: its setting draws as the native field does and is written as A1111 writes it.
    let (s, at_one) = txt2img(&http, &d, "anime", json!(1)).await;
    assert_eq!(s, 200, "{at_one}");
    let (s, at_two) = txt2img(&http, &d, "anime", json!(2)).await;
    assert_eq!(s, 200, "{at_two}");
    let ((one_px, one_info), (two_px, two_info)) = (picture_of(&at_one), picture_of(&at_two));
    assert!(max_diff(&one_px, &two_px) > 8, "CLIP_stop_at_last_layers 2 draws another picture");
    assert_eq!((one_info["clip_skip"].as_i64(), two_info["clip_skip"].as_i64()), (Some(1), Some(2)));
    assert!(two_info["infotexts"][0].as_str().is_some_and(|t| t.contains(", Clip skip: 2, ")), "{two_info}");
    let (s, refused) = txt2img(&http, &d, "anime", json!(13)).await;
    assert_eq!(s, 422, "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("override_settings.CLIP_stop_at_last_layers"), "{refused}");
    // Set through `options` (as A1111 keeps it), the caller's requests without one draw at it.
    let options = |body: Value| {
        let (http, d) = (&http, &d);
        async move { post_json(http, d, "/sdapi/v1/options", body).await }
    };
    assert_eq!(options(json!({"CLIP_stop_at_last_layers": 2})).await.0, 200);
    let read = get_json(&http, &d, "/sdapi/v1/options").await;
    assert_eq!(read["CLIP_stop_at_last_layers"], 2, "{read}");
    let (s, set) = txt2img(&http, &d, "anime", Value::Null).await;
    assert_eq!(s, 200, "{set}");
    let (set_px, set_info) = picture_of(&set);
    assert!(set_px == two_px && set_info["clip_skip"] == 2, "the setting draws as the override: {set_info}");
    let (s, bad) = options(json!({"CLIP_stop_at_last_layers": "x"})).await;
    assert_eq!(s, 422, "{bad}");
    assert!(bad["detail"].as_str().is_some_and(|m| m.starts_with("CLIP_stop_at_last_layers")), "{bad}");
    assert_eq!(options(json!({"CLIP_stop_at_last_layers": 1})).await.0, 200);
    assert!(picture_of(&txt2img(&http, &d, "anime", Value::Null).await.1).0 == one_px, "back at 1");
    // SillyTavern sends 1 with every request: the hub's model draws.
    let (s, hub) = txt2img(&http, &d, "hub-sd", json!(1)).await;
    assert_eq!(s, 200, "{hub}");

    // ComfyUI: CLIPSetLastLayer between the checkpoint and both prompts.
    let mut g = default_workflow("anime", 2);
    g["10"] = json!({"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}});
    g["6"]["inputs"]["clip"] = json!(["10", 0]);
    g["7"]["inputs"]["clip"] = json!(["10", 0]);
    let id = queue_prompt(&http, &d, json!({"prompt": g})).await;
    let entry = history_of(&http, &d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let job = get_json(&http, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["clip_skip"], 2, "{job}");
    // Prompts read at two layers are refused at the negative one.
    g["7"]["inputs"]["clip"] = json!(["4", 1]);
    let resp = http.post(d.at("/prompt")).json(&json!({"prompt": g})).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    let why = body["node_errors"]["7"]["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(why.contains("layer -2"), "{body}");
    let info = get_json(&http, &d, "/object_info/CLIPSetLastLayer").await;
    let stop = &info["CLIPSetLastLayer"]["input"]["required"]["stop_at_clip_layer"];
    assert_eq!(stop[1]["min"], -24, "{info}");
}

#[test]
fn the_cli_says_a_hub_model_does_not_skip_layers_with_the_flag_typed() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = common::compat::models_dir(false);
    let out = home.path().join("x.png");
    let run = |skip: &str| {
        let mut cmd = reelbox_cli(home.path(), models.path());
        cmd.args(["image", "a red door", "--model", common::compat::TINY_SD, "--steps", "2", "--local"])
            .args(["--width", "64", "--height", "64", "--clip-skip", skip, "-o"])
            .arg(&out);
        let run = cmd.output().expect("runs");
        (run.status.success(), String::from_utf8_lossy(&run.stderr).into_owned())
    };
    let (ok, stderr) = run("2");
    assert!(!ok && stderr.contains("--clip-skip: ") && stderr.contains("reelbox models import"), "{stderr}");
    let (ok, stderr) = run("30");
    assert!(!ok && stderr.contains("--clip-skip: ") && stderr.contains("24"), "{stderr}");
    let (ok, stderr) = run("1");
    assert!(ok && out.is_file(), "{stderr}");
}

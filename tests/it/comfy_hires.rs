//! ComfyUI's two-pass "hires fix" against the real daemon with the tiny SD model: the pixel
//! form (KSampler → VAEDecode → ImageScaleBy → VAEEncode → KSampler at denoise < 1 →
//! VAEDecode) and the latent form (KSampler → LatentUpscale | LatentUpscaleBy → KSampler →
//! VAEDecode; the second pass starts from the first one's latent, scaled, as ComfyUI's does)
//! run as one `image` job whose `refine` stage is the second KSampler: `/ws` names
//! it while it runs, each SaveImage shows its own pass's pictures at the size ComfyUI would
//! give, in `/history` and `/view`. Bad inputs are node errors naming node and input; three
//! passes are refused at the third KSampler. Every one of these was refused before:
//! "unsupported_graph" (a second KSampler), "Node 'LatentUpscaleBy' not found".

use crate::common;

use std::time::Duration;

use common::compat::{models_dir, start_daemon};
use common::daemon::DaemonProc;
use serde_json::{Value, json};

use crate::comfy_compat::{connect, default_workflow, history_of, http, queue_prompt};
use crate::comfy_upscale::{get, messages_until_done, steps, view};

/// The default workflow (64², node 9 saving its pictures) sampled again by node 12 at
/// denoise 0.5 from `scale` (node 10), through a VAEEncode (node 11) unless the scale is a
/// latent's; node 13 decodes the second pass, node 14 saves it.
pub(crate) fn hires(scale: Value, latent: bool) -> Value {
    let mut g = default_workflow("tiny-sd", 4);
    g["10"] = scale;
    let start = if latent {
        "10"
    } else {
        g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
        "11"
    };
    let mut second = g["3"].clone();
    second["inputs"]["latent_image"] = json!([start, 0]);
    second["inputs"]["denoise"] = json!(0.5);
    g["12"] = second;
    g["13"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}});
    g["14"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "hires", "images": ["13", 0]}});
    g
}

pub(crate) fn scale_by(by: f64) -> Value {
    json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0], "upscale_method": "bicubic", "scale_by": by}})
}

pub(crate) fn latent_by(by: f64) -> Value {
    json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": by}})
}

/// The sizes of the pictures each output node shows in `entry`'s history.
async fn shown_sizes(c: &reqwest::Client, d: &DaemonProc, entry: &Value, node: &str) -> Vec<(u32, u32)> {
    let mut sizes = Vec::new();
    for image in entry["outputs"][node]["images"].as_array().unwrap_or_else(|| panic!("no node {node}: {entry}")) {
        let img = view(c, d, image).await;
        sizes.push((img.width(), img.height()));
    }
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pixel_form_runs_as_one_job_whose_refine_stage_is_the_second_ksampler() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut socket = connect(&d, "hires-a").await;
    let id = queue_prompt(&c, &d, json!({"prompt": hires(scale_by(1.5), false), "client_id": "hires-a"})).await;
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["kind"], "image");
    let names: Vec<_> = job["stages"].as_array().expect("stages").iter().map(|s| s["name"].clone()).collect();
    assert_eq!(names, [json!("generate"), json!("refine")], "{job}");
    assert_eq!(job["params"]["refine"]["resize"], json!({"method": "bicubic", "scale_by": 1.5}), "{job}");
    assert_eq!((&job["params"]["refine"]["strength"], &job["params"]["refine"]["width"]), (&json!(0.5), &json!(96)));

    let seen = steps(&messages_until_done(&mut socket, &id).await);
    let at = |step: (&str, &str)| {
        seen.iter()
            .position(|(t, n)| (t.as_str(), n.as_str()) == step)
            .unwrap_or_else(|| panic!("no {step:?} in {seen:?}"))
    };
    // The first pass's picture is saved, then the scale, the encode and the second sampler run.
    assert!(at(("executed", "9")) < at(("executing", "10")), "{seen:?}");
    assert!(at(("executing", "11")) < at(("executing", "12")), "{seen:?}");
    assert!(at(("executing", "12")) < at(("progress", "12")), "its steps are the second sampler's: {seen:?}");
    assert!(at(("progress", "12")) < at(("executed", "14")), "{seen:?}");
    assert!(at(("executed", "14")) < at(("execution_success", "")), "{seen:?}");

    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(shown_sizes(&c, &d, &entry, "9").await, [(64, 64)], "the first pass's: {entry}");
    assert_eq!(shown_sizes(&c, &d, &entry, "14").await, [(96, 96)], "the second pass's: {entry}");
    assert!(entry["outputs"]["14"]["images"][0]["filename"].as_str().is_some_and(|f| f.starts_with("hires_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latent_form_comes_out_at_the_size_comfyuis_latent_has() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let info = get(&c, &d, "/object_info").await;
    assert_eq!(info["LatentUpscaleBy"]["input"]["required"]["scale_by"][1]["default"], 1.5);
    assert_eq!(info["LatentUpscale"]["input"]["required"]["width"][1]["step"], 8);
    assert_eq!(info["LatentUpscale"]["output"], json!(["LATENT"]));

    // No picture of the first pass shown: its latents go straight on.
    let mut graph = hires(latent_by(1.3), true);
    graph.as_object_mut().expect("graph").remove("9");
    let id = queue_prompt(&c, &d, json!({"prompt": graph})).await;
    let entry = history_of(&c, &d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    // Latents of 8×8 cells times 1.3: round(10.4) = 10 cells, 80 pixels.
    assert_eq!(shown_sizes(&c, &d, &entry, "14").await, [(80, 80)], "{entry}");

    let sized = json!({"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "bilinear",
        "width": 100, "height": 0, "crop": "disabled"}});
    let id = queue_prompt(&c, &d, json!({"prompt": hires(sized, true)})).await;
    let entry = history_of(&c, &d, &id, Duration::from_secs(120)).await;
    // 100 rounds down to whole latent cells, 96; a 0 side follows the shape.
    assert_eq!(shown_sizes(&c, &d, &entry, "14").await, [(96, 96)], "{entry}");
    assert_eq!(shown_sizes(&c, &d, &entry, "9").await, [(64, 64)], "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hires_graphs_get_node_errors_naming_the_node_and_input() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut no_denoise = hires(scale_by(1.5), false);
    no_denoise["12"]["inputs"]["denoise"] = json!(0);
    let mut too_big = hires(latent_by(8.0), true);
    too_big["5"]["inputs"]["width"] = json!(512);
    let mut three = hires(latent_by(1.5), true);
    three["15"] = three["12"].clone();
    three["15"]["inputs"]["latent_image"] = json!(["12", 0]);
    three["13"]["inputs"]["samples"] = json!(["15", 0]);
    // ComfyUI's latent nodes have no lanczos (bislerp they have, and reelbox runs it).
    let mut lanczos = hires(latent_by(1.5), true);
    lanczos["10"]["inputs"]["upscale_method"] = json!("lanczos");
    let cases = [
        (no_denoise, "12", "denoise", "custom_validation_failed", "more than 0"),
        (too_big, "10", "scale_by", "custom_validation_failed", "4096"),
        (lanczos, "10", "upscale_method", "value_not_in_list", ""),
        (three, "15", "", "unsupported_graph", "two sampling passes at most"),
    ];
    for (graph, node, input, kind, says) in cases {
        let resp = c.post(d.at("/prompt")).json(&json!({"prompt": graph})).send().await.expect("post");
        assert_eq!(resp.status(), 400, "{node}.{input} {kind}");
        let body: Value = resp.json().await.expect("json");
        let errors = body["node_errors"].as_object().expect("node_errors");
        assert_eq!(errors.keys().collect::<Vec<_>>(), [node], "{body}");
        let e = &errors[node]["errors"][0];
        assert_eq!(e["type"], kind, "{body}");
        if !input.is_empty() {
            assert_eq!(e["extra_info"]["input_name"], input, "{body}");
        }
        assert!(e["message"].as_str().is_some_and(|m| m.contains(says)), "says why: {body}");
    }
    assert_eq!(get(&c, &d, "/api/v1/jobs").await["jobs"], json!([]), "nothing was queued");
}

/// ComfyUI's hires fix with a model: the first pass's pictures upscaled ×4 by the user's
/// model, halved, encoded and sampled again; the second pass samples at 128².
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_upscale_then_a_scale_between_the_passes_is_the_refine_stages_too() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = crate::comfy_upscale::models_with_upscaler(home.path());
    let d = start_daemon(&home.path().join("data"), models.path());
    let c = http();
    let mut graph = hires(
        json!({"class_type": "ImageScaleBy", "inputs": {"image": ["16", 0],
        "upscale_method": "area", "scale_by": 0.5}}),
        false,
    );
    graph["15"] =
        json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": crate::comfy_upscale::UPSCALER_FILE}});
    graph["16"] =
        json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["15", 0], "image": ["8", 0]}});
    let mut socket = connect(&d, "hires-b").await;
    let id = queue_prompt(&c, &d, json!({"prompt": graph, "client_id": "hires-b"})).await;
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["refine"]["upscale_model"], crate::comfy_upscale::UPSCALER, "{job}");
    let seen = steps(&messages_until_done(&mut socket, &id).await);
    let at = |step: (&str, &str)| seen.iter().position(|(t, n)| (t.as_str(), n.as_str()) == step);
    assert!(at(("executing", "16")) < at(("executing", "12")) && at(("executing", "16")).is_some(), "{seen:?}");
    let entry = history_of(&c, &d, &id, Duration::from_secs(10)).await;
    assert_eq!(shown_sizes(&c, &d, &entry, "9").await, [(64, 64)], "{entry}");
    assert_eq!(shown_sizes(&c, &d, &entry, "14").await, [(128, 128)], "64 × 4 × 0.5: {entry}");
}

/// The picture output node 14 shows in `entry`'s history.
async fn second_pass_picture(c: &reqwest::Client, d: &DaemonProc, id: &str) -> image::RgbImage {
    let entry = history_of(c, d, id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    view(c, d, &entry["outputs"]["14"]["images"][0]).await.to_rgb8()
}

/// ComfyUI's latent form starts the second KSampler from the first one's latent scaled
/// (`nearest-exact`'s blocky cells), as ComfyUI does: the picture is the native API's with
/// `refine.from: latent`, and not the pixel form's (a decoded picture scaled by the same
/// method, encoded again), which the latent form made before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latent_form_starts_from_the_scaled_latent_not_a_decoded_picture() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let id = queue_prompt(&c, &d, json!({"prompt": hires(latent_by(1.5), true)})).await;
    let from_latent = second_pass_picture(&c, &d, &id).await;
    assert_eq!(from_latent.dimensions(), (96, 96));
    let nearest = json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0],
        "upscale_method": "nearest-exact", "scale_by": 1.5}});
    let pixel_id = queue_prompt(&c, &d, json!({"prompt": hires(nearest, false)})).await;
    let from_picture = second_pass_picture(&c, &d, &pixel_id).await;
    assert_eq!(from_picture.dimensions(), (96, 96));
    // Compared whole, not printed: a picture's bytes say nothing in a failure.
    assert!(from_latent != from_picture, "the latent form starts from the same picture as the pixel form");
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["params"]["refine"]["from"], "latent", "{job}");
    let kept = get(&c, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let latent = kept.as_array().expect("artifacts").iter().find(|a| a["name"] == "latent.npy");
    assert_eq!(latent.map(|a| &a["media_type"]), Some(&json!("application/x-npy")), "{kept}");

    // The native API's second pass from the latent, with the graph's settings (its steps
    // counted as ComfyUI counts them, all of them run): the same pixels.
    let pass = json!({"steps": 4, "seed": 8566257, "guidance": 8, "scheduler": "euler"});
    let mut native = json!({"model": "tiny-sd", "width": 64, "height": 64, "preview_every": 0,
        "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark", "refine": {"from": "latent", "strength": 0.5, "steps_mode": "run",
        "resize": {"method": "nearest-exact", "scale_by": 1.5}}});
    for (k, v) in pass.as_object().expect("settings") {
        native[k] = v.clone();
        native["refine"][k] = v.clone();
    }
    // Sampled as ComfyUI's KSampler samples, from its noise (the second pass takes both).
    (native["schedule"], native["noise"]) = (json!("normal"), json!("comfyui"));
    let resp = c.post(d.at("/api/v1/images")).json(&native).send().await.expect("post");
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("an id").to_string();
    let done = common::daemon::wait_job(&c, &d, &id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let native = image::load_from_memory(&common::render::artifact(&c, &d, &id, "refined.png").await).expect("png");
    assert!(native.to_rgb8() == from_latent, "the graph's second pass is not the native one from the latent");
}

/// A second KSampler whose `scheduler` is not the first one's samples over its own, as
/// ComfyUI's does: normal then karras is another picture than normal then normal, and the
/// native API's `refine.schedule: karras` with the graph's settings. Before, the second pass
/// sampled over the first one's schedule whatever the second KSampler said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_ksampler_samples_over_its_own_schedule() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let same = queue_prompt(&c, &d, json!({"prompt": hires(latent_by(1.5), true)})).await;
    let same = second_pass_picture(&c, &d, &same).await;
    let mut graph = hires(latent_by(1.5), true);
    assert_eq!(graph["3"]["inputs"]["scheduler"], "normal", "the first KSampler's");
    graph["12"]["inputs"]["scheduler"] = json!("karras");
    let id = queue_prompt(&c, &d, json!({"prompt": graph})).await;
    let karras = second_pass_picture(&c, &d, &id).await;
    assert!(karras != same, "the second KSampler's karras sampled over the first one's normal");
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        (&job["params"]["schedule"], &job["params"]["refine"]["schedule"]),
        (&json!("normal"), &json!("karras"))
    );

    let native = json!({"model": "tiny-sd", "width": 64, "height": 64, "preview_every": 0, "steps": 4,
        "seed": 8566257, "guidance": 8, "scheduler": "euler", "schedule": "normal", "noise": "comfyui",
        "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark", "refine": {"from": "latent", "strength": 0.5, "steps_mode": "run",
        "resize": {"method": "nearest-exact", "scale_by": 1.5}, "schedule": "karras"}});
    let resp = c.post(d.at("/api/v1/images")).json(&native).send().await.expect("post");
    let job = resp.json::<Value>().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{job}")).to_string();
    let done = common::daemon::wait_job(&c, &d, &id, Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let png = common::render::artifact(&c, &d, &id, "refined.png").await;
    assert!(image::load_from_memory(&png).expect("png").to_rgb8() == karras, "not the graph's second pass");
    let text = reelbox::pipelines::diffusion::output::parameters_of(&png).unwrap_or_default();
    let said = text.contains("Sampler: Euler, Schedule type: Normal,") && text.contains("Hires schedule type: Karras,");
    assert!(said, "says what ran, as A1111 says a hires fix: {text}");
}

//! ComfyUI's KSamplerAdvanced against the real daemon with the tiny SD model, real HTTP and
//! `/ws`: over its whole schedule it makes the KSampler's picture at denoise 1, pixel for
//! pixel; from a `start_at_step` on an uploaded picture's latent it makes the native job's
//! picture that samples the same schedule from that step (and another than from step 0); it
//! takes a KSampler's place as the hires fix's second pass; `/object_info` lists it with
//! ComfyUI's inputs. A range that runs no step, leftover noise decoded as a picture rather
//! than handed on to a sampler that goes on from it (the split, `refiner_split`), and sampling
//! an empty latent without noise are node errors naming node and input.
//! Before, every graph with one was refused: "Node 'KSamplerAdvanced' not found".

use crate::common;

use std::time::Duration;

use common::compat::{models_dir, start_daemon};
use common::daemon::{DaemonProc, is_final, wait_job};
use image::RgbImage;
use serde_json::{Value, json};

use crate::comfy_compat::{default_workflow, history_of, http, queue_prompt};
use crate::comfy_hires::{hires, latent_by};
use crate::comfy_inpaint::{load, picture, refused, upload};
use crate::comfy_upscale::{get, view};

/// KSampler `node` as a KSamplerAdvanced with its settings, sampling steps `start`..`end`.
fn advanced(node: &Value, start: u32, end: u32) -> Value {
    let k = &node["inputs"];
    json!({"class_type": "KSamplerAdvanced", "inputs": {
        "model": k["model"], "add_noise": "enable", "noise_seed": k["seed"], "steps": k["steps"], "cfg": k["cfg"],
        "sampler_name": k["sampler_name"], "scheduler": k["scheduler"], "positive": k["positive"],
        "negative": k["negative"], "latent_image": k["latent_image"], "start_at_step": start, "end_at_step": end,
        "return_with_leftover_noise": "disable"}})
}

/// The default workflow, 10 steps, sampling uploaded picture `name` (LoadImage node 10,
/// VAEEncode node 11) rather than an empty latent.
fn on_picture(name: &str) -> Value {
    let mut g = default_workflow("tiny-sd", 10);
    g.as_object_mut().expect("graph").remove("5");
    g["10"] = load(name);
    g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    g
}

/// Runs `graph`: its job (the prompt's id is the job's) and the picture output `node` shows.
async fn run(c: &reqwest::Client, d: &DaemonProc, graph: Value, node: &str) -> (Value, RgbImage) {
    let id = queue_prompt(c, d, json!({"prompt": graph})).await;
    let entry = history_of(c, d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    let picture = view(c, d, &entry["outputs"][node]["images"][0]).await.to_rgb8();
    (get(c, d, &format!("/api/v1/jobs/{id}")).await, picture)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ksampler_advanced_samples_as_the_ksampler_and_from_its_start_step_as_the_native_job() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    // Its whole schedule, 0 to 10000: the KSampler's picture at denoise 1.
    let plain = default_workflow("tiny-sd", 4);
    let (_, ksampler) = run(&c, &d, plain.clone(), "9").await;
    let mut g = plain.clone();
    g["3"] = advanced(&plain["3"], 0, 10000);
    let (job, picture_of_advanced) = run(&c, &d, g, "9").await;
    assert_eq!((&job["params"]["steps"], &job["params"]["strength"]), (&json!(4), &Value::Null), "{job}");
    assert!(picture_of_advanced == ksampler, "a whole-schedule KSamplerAdvanced is the KSampler");

    // From step 4 of 10 on an upload's latent: the native job sampling 10 steps from step 4.
    let name = upload(&c, &d, "door.png", picture().into()).await;
    let mut g = on_picture(&name);
    g["3"] = advanced(&g["3"], 4, 10000);
    let (job, from_four) = run(&c, &d, g.clone(), "9").await;
    let params = &job["params"];
    assert_eq!((&params["steps"], &params["steps_mode"]), (&json!(6), &json!("run")), "six steps run: {job}");
    let body = json!({"prompt": params["prompt"], "negative_prompt": params["negative_prompt"], "model": "tiny-sd",
        "init_image": params["init_image"], "strength": 0.6, "steps": 10, "guidance": 8.0, "seed": 8566257,
        "scheduler": "euler", "schedule": "normal", "noise": "comfyui", "preview_every": 0});
    let native: Value =
        c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post").json().await.expect("json");
    let id = native["id"].as_str().unwrap_or_else(|| panic!("{native}"));
    let done = wait_job(&c, &d, id, Duration::from_secs(120), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let png = common::render::artifact(&c, &d, id, "image.png").await;
    let native = image::load_from_memory(&png).expect("png").to_rgb8();
    assert!(native == from_four, "the graph's picture is the native job's from step 4 of 10");
    g["3"]["inputs"]["start_at_step"] = json!(0);
    let (_, from_zero) = run(&c, &d, g, "9").await;
    assert!(from_zero != from_four, "a later start keeps more of the picture");

    // The hires fix's second pass, from step 2 of 4 of the first pass's latent scaled.
    let mut g = hires(latent_by(1.5), true);
    g["12"] = advanced(&g["12"], 2, 10000);
    let (job, second) = run(&c, &d, g, "14").await;
    let refine = &job["params"]["refine"];
    assert_eq!(
        (&refine["steps"], &refine["steps_mode"], &refine["from"]),
        (&json!(2), &json!("run"), &json!("latent"))
    );
    assert_eq!(second.dimensions(), (96, 96), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ksampler_advanced_is_listed_and_what_it_cannot_run_is_refused_at_its_input() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    let info = get(&c, &d, "/object_info/KSamplerAdvanced").await;
    let node = &info["KSamplerAdvanced"];
    assert_eq!(
        node["input_order"]["required"],
        json!([
            "model",
            "add_noise",
            "noise_seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise"
        ]),
        "{info}"
    );
    assert_eq!(node["input"]["required"]["end_at_step"][1]["default"], 10000);
    assert_eq!(node["input"]["required"]["add_noise"], json!([["enable", "disable"]]));

    let plain = default_workflow("tiny-sd", 4);
    let with = |start: u32, end: u32, more: Value| {
        let mut g = plain.clone();
        g["3"] = advanced(&plain["3"], start, end);
        for (k, v) in more.as_object().expect("object") {
            g["3"]["inputs"][k] = v.clone();
        }
        g
    };
    for (graph, input, kind) in [
        (with(3, 3, json!({})), "end_at_step", "custom_validation_failed"),
        (with(3, 1, json!({})), "end_at_step", "custom_validation_failed"),
        (with(4, 10000, json!({})), "start_at_step", "custom_validation_failed"),
        (with(0, 10000, json!({"add_noise": "disable"})), "add_noise", "unsupported_graph"),
        (with(0, 2, json!({})), "end_at_step", "unsupported_graph"),
    ] {
        let e = refused(&c, &d, graph, "3").await;
        assert_eq!((&e["extra_info"]["input_name"], &e["type"]), (&json!(input), &json!(kind)), "{e}");
    }

    // Leftover noise at step 2 decoded as the picture: only a sampler going on from it takes it.
    let g = with(0, 2, json!({"return_with_leftover_noise": "enable"}));
    let e = refused(&c, &d, g, "3").await;
    assert_eq!(e["extra_info"]["input_name"], "return_with_leftover_noise", "{e}");
    assert!(e["message"].as_str().is_some_and(|m| m.contains("a VAEDecode would decode noise")), "{e}");
}

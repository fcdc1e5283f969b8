//! A base → refiner split that goes on with the first pass's one sampler run, as A1111's
//! refiner swaps the model inside one run (`refine.continue: "run"`), on the real daemon: the
//! first pass keeps its sampler's state beside its leftover noise (`sampler.json`: DPM++ 2M's
//! last denoised latent, where its step noise stands), and the second takes it up. On one
//! model, and on a twin of it under another name, the split is then the one full run pixel
//! for pixel for DPM++ 2M over Karras σs, Euler ancestral, Euler, diffusers' DPM-Solver++ and
//! PLMS, a batch's pictures each, where ComfyUI's split (a run of its own from the leftover
//! noise) is another picture for DPM++ 2M. A1111's txt2img with a refiner that is the same
//! weights under another name draws its picture without one, as A1111 does. What a continued
//! run cannot take (a sampler, schedule, length or seed of its own) is refused naming it.
//! Before, `continue` was an unknown field, A1111's refiner started a second run without the
//! first's history or noise stream (another picture for DPM++ 2M and Euler a), and a split of
//! a batch handed its leftover noise on as one array, which its second pass refused.

use crate::common;

use base64::Engine;
use common::compat::start_daemon;
use common::daemon::DaemonProc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::comfy_compat::http;
use crate::comfy_upscale::get;
use crate::hires_checkpoint::{pixels, post, refined, two_models};

/// The same weights as `tiny-sd` under another name: A1111 swaps to it as to any refiner.
const TWIN: &str = "tiny-sd-twin";

/// A models dir with tiny-sd, its twin, tiny-sd-2 and tiny-sdxl.
fn models() -> tempfile::TempDir {
    let models = two_models();
    let from = common::fixture("models/tiny-sd");
    std::os::unix::fs::symlink(&from, models.path().join(TWIN)).expect("link the twin");
    models
}

/// Six steps of `scheduler` (over `schedule`, if any) on tiny-sd, `n` pictures, with `refine`.
fn native(scheduler: &str, schedule: Option<&str>, n: u32, refine: Option<Value>) -> Value {
    let mut body = json!({"prompt": "a red door", "model": "tiny-sd", "width": 64, "height": 64, "steps": 6,
        "guidance": 7, "seed": 7, "scheduler": scheduler, "noise": "torch_cpu", "n": n, "preview_every": 0});
    if let Some(s) = schedule {
        body["schedule"] = json!(s);
    }
    if let Some(r) = refine {
        body["refine"] = r;
    }
    body
}

/// Runs native job `body` to its end: the job and its pictures named `stem` (`stem.png`, or
/// `stem-N.png` for `n` of them).
async fn run(c: &reqwest::Client, d: &DaemonProc, body: &Value, stem: &str, n: u32) -> (Value, Vec<Vec<u8>>) {
    let (status, job) = post(c, d, "/api/v1/images", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}: {job}");
    let id = job["id"].as_str().expect("an id");
    let done = common::daemon::wait_job(c, d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{body}: {done}");
    let mut pngs = Vec::new();
    for i in 1..=n {
        let name = if n == 1 { format!("{stem}.png") } else { format!("{stem}-{i}.png") };
        pngs.push(common::render::artifact(c, d, id, &name).await);
    }
    (done, pngs)
}

fn same(a: &[Vec<u8>], b: &[Vec<u8>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| pixels(x) == pixels(y))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_that_goes_on_with_the_run_is_the_one_run_for_every_sampler() {
    let models = models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();

    for (scheduler, schedule, n) in [
        ("dpmpp_2m", Some("karras"), 1),
        ("euler_a", None, 1),
        ("euler", None, 1),
        ("euler_a", Some("normal"), 2),
        ("dpmpp_2m_karras", None, 1),
        ("pndm", None, 1),
    ] {
        let what = format!("{scheduler} {schedule:?} ×{n}");
        let (_, whole) = run(&c, &d, &native(scheduler, schedule, n, None), "image", n).await;
        let goes_on = json!({"switch_at_step": 3, "continue": "run"});
        let (job, split) = run(&c, &d, &native(scheduler, schedule, n, Some(goes_on)), "refined", n).await;
        assert!(same(&split, &whole), "{what}: the split that goes on with the run is not the one run");
        assert_eq!(job["params"]["refine"]["switch"], json!({"step": 3, "continue": "run"}), "{job}");
        let listed = get(&c, &d, &format!("/api/v1/jobs/{}/artifacts", job["id"].as_str().expect("id"))).await;
        let names: Vec<&str> =
            listed.as_array().expect("artifacts").iter().filter_map(|a| a["name"].as_str()).collect();
        let state = if n == 1 { "sampler.json" } else { "sampler-2.json" };
        assert!(names.contains(&state), "{what}: {names:?}");
        // On another model of the same weights: the swap itself changes nothing.
        let on_twin = json!({"switch_at_step": 2, "continue": "run", "model": TWIN});
        let (_, twin) = run(&c, &d, &native(scheduler, schedule, n, Some(on_twin)), "refined", n).await;
        assert!(same(&twin, &whole), "{what}: the split onto the twin is not the one run");
    }

    // ComfyUI's split, a run of its own from the leftover noise, starts DPM++ 2M afresh.
    let (_, whole) = run(&c, &d, &native("dpmpp_2m", Some("karras"), 1, None), "image", 1).await;
    let (_, fresh) = refined(&c, &d, &native("dpmpp_2m", Some("karras"), 1, Some(json!({"switch_at_step": 3})))).await;
    assert!(pixels(&fresh) != pixels(&whole[0]), "a fresh DPM++ 2M run from the leftover noise is the one run");
    // A batch's split hands each picture's leftover noise on (before: one array of the whole
    // batch's channels, which the second pass refused); Euler has no history to lose.
    let (_, whole) = run(&c, &d, &native("euler", None, 2, None), "image", 2).await;
    let (_, split) = run(&c, &d, &native("euler", None, 2, Some(json!({"switch_at_step": 3}))), "refined", 2).await;
    assert!(same(&split, &whole), "a batch's Euler split from the leftover noise is not its one run");
    // On tiny-sd-2 the run goes on on other weights: another picture.
    let on_other = json!({"switch_at_step": 3, "continue": "run", "model": "tiny-sd-2"});
    let (_, other) = refined(&c, &d, &native("dpmpp_2m", Some("karras"), 1, Some(on_other))).await;
    assert!(pixels(&other) != pixels(&whole[0]), "tiny-sd-2's steps changed nothing");

    for (refine, field) in [
        (json!({"switch_at_step": 3, "continue": "run", "scheduler": "euler"}), "refine.scheduler"),
        (json!({"switch_at_step": 3, "continue": "run", "schedule": "normal"}), "refine.schedule"),
        (json!({"switch_at_step": 3, "continue": "run", "steps": 8}), "refine.steps"),
        (json!({"switch_at_step": 3, "continue": "run", "seed": 9}), "refine.seed"),
        (json!({"switch_at_step": 3, "continue": "again"}), "refine.continue"),
        (json!({"strength": 0.5, "continue": "run"}), "refine.continue"),
    ] {
        let (status, err) =
            post(&c, &d, "/api/v1/images", &native("dpmpp_2m", Some("karras"), 1, Some(refine.clone()))).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{refine}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1111s_refiner_goes_on_with_the_one_sampler_run() {
    let models = models();
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let picture = |answer: &Value| {
        let png = base64::engine::general_purpose::STANDARD.decode(answer["images"][0].as_str().expect("a picture"));
        pixels(&png.expect("base64"))
    };

    for (sampler, schedule) in [("DPM++ 2M", "Karras"), ("Euler a", "Automatic"), ("DPM++ 2M Karras", "")] {
        let plain = json!({"prompt": "a red door", "seed": 7, "steps": 6, "cfg_scale": 7, "width": 64, "height": 64,
            "sampler_name": sampler, "scheduler": schedule, "override_settings": {"sd_model_checkpoint": "tiny-sd"}});
        let (status, without) = post(&c, &d, "/sdapi/v1/txt2img", &plain).await;
        assert_eq!(status, StatusCode::OK, "{without}");
        let mut body = plain.clone();
        (body["refiner_checkpoint"], body["refiner_switch_at"]) = (json!(TWIN), json!(0.5));
        let (status, with) = post(&c, &d, "/sdapi/v1/txt2img", &body).await;
        assert_eq!(status, StatusCode::OK, "{with}");
        let info: Value = serde_json::from_str(with["info"].as_str().expect("info")).expect("info JSON");
        assert!(info["infotexts"][0].as_str().is_some_and(|t| t.contains("Refiner: tiny-sd-twin")), "{info}");
        assert!(picture(&with) == picture(&without), "{sampler} {schedule}: the same weights as refiner changed it");
    }
}

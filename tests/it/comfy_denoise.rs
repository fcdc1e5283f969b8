//! How many steps image to image runs, against the real daemon with the tiny SD model. A
//! ComfyUI KSampler at denoise d < 1 runs all its `steps`, over the last of a `⌊steps ÷ d⌋`-step
//! schedule, as ComfyUI's does: its img2img from a LoadImage and both forms of the hires fix
//! count to `steps` on `/ws` (`progress`'s `max`) and in the job's own progress and log. Before,
//! they ran A1111's share, `⌊steps × d⌋` (a ComfyUI user's 20 steps at 0.5 ran 10). The native
//! API keeps A1111's and diffusers' rule unless a request asks `"steps_mode": "run"`; a bad
//! `steps_mode` is a 400 naming it.

use crate::common;

use std::time::Duration;

use common::compat::{models_dir, start_daemon};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::sse::read_events;
use serde_json::{Value, json};

use crate::comfy_compat::{connect, default_workflow, http, queue_prompt};
use crate::comfy_hires::{hires, latent_by, scale_by};
use crate::comfy_upscale::{get, messages_until_done, upload};

/// The `max` of every `/ws` `progress` of `node` among `messages`, and the last `value`.
fn progress_of(messages: &[Value], node: &str) -> (Vec<u64>, Option<u64>) {
    let mine: Vec<&Value> =
        messages.iter().filter(|m| m["type"] == "progress" && m["data"]["node"] == node).map(|m| &m["data"]).collect();
    (mine.iter().filter_map(|d| d["max"].as_u64()).collect(), mine.last().and_then(|d| d["value"].as_u64()))
}

/// A finished job's events: the last progress `total` of each stage named, and its log lines.
pub(crate) async fn totals_and_log(c: &reqwest::Client, d: &DaemonProc, id: &str) -> (Vec<(String, u64)>, Vec<String>) {
    let url = d.at(&format!("/api/v1/jobs/{id}/events?after=0"));
    let done = |got: &[(u64, Value)]| got.iter().any(|(_, e)| is_final(e));
    let events = read_events(c.get(url).send().await.expect("events"), done).await;
    let mut totals: Vec<(String, u64)> = Vec::new();
    let mut log = Vec::new();
    for (_, e) in &events {
        match (e["type"].as_str(), e["stage"].as_str(), e["total"].as_u64()) {
            (Some("progress"), Some(stage), Some(total)) => match totals.iter_mut().find(|(s, _)| s == stage) {
                Some(seen) => seen.1 = total,
                None => totals.push((stage.to_string(), total)),
            },
            (Some("log"), ..) => log.push(e["message"].as_str().unwrap_or("").to_string()),
            _ => {}
        }
    }
    (totals, log)
}

pub(crate) fn stage_totals(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(s, t)| (s.to_string(), *t)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfyui_ksampler_at_partial_denoise_runs_all_its_steps() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let mut socket = connect(&d, "denoise").await;

    // Image to image from an upload, 6 steps at denoise 0.5: all 6 run (A1111's rule ran 3).
    let name = upload(&c, &d, "door.png", &common::media::test_picture(64, 64, 3)).await;
    let mut g = default_workflow("tiny-sd", 6);
    g["10"] = json!({"class_type": "LoadImage", "inputs": {"image": name}});
    g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
    g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
    g["3"]["inputs"]["denoise"] = json!(0.5);
    g.as_object_mut().expect("graph").remove("5");
    let id = queue_prompt(&c, &d, json!({"prompt": g, "client_id": "denoise"})).await;
    let messages = messages_until_done(&mut socket, &id).await;
    let (maxes, last) = progress_of(&messages, "3");
    assert!(!maxes.is_empty() && maxes.iter().all(|m| *m == 6), "counts to 6, as ComfyUI's does: {maxes:?}");
    assert_eq!(last, Some(6), "{messages:?}");
    let job = wait_job(&c, &d, &id, Duration::from_secs(60), is_final).await;
    assert_eq!((&job["state"], &job["params"]["steps_mode"]), (&json!("succeeded"), &json!("run")), "{job}");
    assert_eq!(totals_and_log(&c, &d, &id).await.0, stage_totals(&[("generate", 6)]));

    // The hires fix, pixel form: 4 steps at denoise 0.5, all 4 run in the second pass (were 2).
    let id = queue_prompt(&c, &d, json!({"prompt": hires(scale_by(1.5), false), "client_id": "denoise"})).await;
    let messages = messages_until_done(&mut socket, &id).await;
    let (maxes, last) = progress_of(&messages, "12");
    assert!(!maxes.is_empty() && maxes.iter().all(|m| *m == 4), "the second KSampler counts to 4: {maxes:?}");
    assert_eq!(last, Some(4), "{messages:?}");
    let (totals, log) = totals_and_log(&c, &d, &id).await;
    assert_eq!(totals, stage_totals(&[("generate", 4), ("refine", 4)]));
    assert!(log.iter().any(|l| l.ends_with("at strength 0.5, 4 steps")), "{log:?}");

    // The latent form at denoise 0.3: a 13-step schedule, its last 4 run (A1111's rule ran 1).
    let mut g = hires(latent_by(1.5), true);
    g["12"]["inputs"]["denoise"] = json!(0.3);
    let id = queue_prompt(&c, &d, json!({"prompt": g, "client_id": "denoise"})).await;
    let messages = messages_until_done(&mut socket, &id).await;
    let (maxes, last) = progress_of(&messages, "12");
    assert!(!maxes.is_empty() && maxes.iter().all(|m| *m == 4), "the second KSampler counts to 4: {maxes:?}");
    assert_eq!(last, Some(4), "{messages:?}");
    let job = get(&c, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(
        (&job["params"]["refine"]["from"], &job["params"]["refine"]["steps_mode"]),
        (&json!("latent"), &json!("run"))
    );
    let (totals, log) = totals_and_log(&c, &d, &id).await;
    assert_eq!(totals, stage_totals(&[("generate", 4), ("refine", 4)]));
    assert!(log.iter().any(|l| l.ends_with("at strength 0.3, 4 steps")), "{log:?}");
}

/// An `image` job of 64² from `init` at 6 Euler steps (PLMS, the tiny model's own, runs one
/// more), strength 0.5, with `more` fields, run to its end.
async fn native(c: &reqwest::Client, d: &DaemonProc, init: &str, more: Value) -> Value {
    let mut body = json!({"prompt": "a red door", "width": 64, "height": 64, "steps": 6, "seed": 3,
        "init_image": init, "strength": 0.5, "scheduler": "euler", "preview_every": 0});
    for (k, v) in more.as_object().expect("fields") {
        body[k] = v.clone();
    }
    let resp = c.post(d.at("/api/v1/images")).json(&body).send().await.expect("post");
    let job: Value = resp.json().await.expect("json");
    let id = job["id"].as_str().unwrap_or_else(|| panic!("{body}: {job}"));
    let done = wait_job(c, d, id, Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_api_runs_a_share_of_its_steps_unless_asked_to_run_them_all() {
    let models = models_dir(false);
    let data = tempfile::tempdir().expect("tempdir");
    let d = start_daemon(data.path(), models.path());
    let c = http();
    let art =
        common::api::upload(&d, None, "door.png", common::media::png(&common::media::test_picture(64, 64, 3))).await;
    let init = art["id"].as_str().expect("id").to_string();

    // A1111's and diffusers' rule, as before: ⌊6 × 0.5⌋ = 3 steps, and ⌊4 × 0.6⌋ = 2 again.
    let refine = json!({"strength": 0.6, "steps": 4});
    let job = native(&c, &d, &init, json!({"refine": refine})).await;
    let id = job["id"].as_str().expect("id");
    assert_eq!(job["params"].get("steps_mode"), None, "the default is not stored: {job}");
    assert_eq!(totals_and_log(&c, &d, id).await.0, stage_totals(&[("generate", 3), ("refine", 2)]));

    // Counted as ComfyUI counts them: all 6, and all 4.
    let refine = json!({"strength": 0.6, "steps": 4, "steps_mode": "run"});
    let job = native(&c, &d, &init, json!({"steps_mode": "run", "refine": refine})).await;
    let id = job["id"].as_str().expect("id");
    assert_eq!((&job["params"]["steps_mode"], &job["params"]["refine"]["steps_mode"]), (&json!("run"), &json!("run")));
    assert_eq!(totals_and_log(&c, &d, id).await.0, stage_totals(&[("generate", 6), ("refine", 4)]));
    // Weighed by the steps that run: 4 + encode + decode against 6 + decode, at the same size.
    let weight = |i: usize| job["stages"][i]["weight"].as_f64().expect("a weight");
    assert!((weight(1) / weight(0) - 7.0 / 8.0).abs() < 1e-6, "{}", job["stages"]);

    let base = json!({"prompt": "a red door", "width": 64, "height": 64, "init_image": init, "strength": 0.5});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        ("/api/v1/images", with("steps_mode", json!("all")), "steps_mode", "\"run\""),
        ("/api/v1/images", json!({"prompt": "a cat", "steps_mode": "run"}), "steps_mode", "init_image"),
        (
            "/api/v1/images",
            with("refine", json!({"strength": 0.5, "steps_mode": "every"})),
            "refine.steps_mode",
            "schedule",
        ),
        (
            "/api/v1/jobs",
            json!({"kind": "image", "params": with("steps_mode", json!("total"))}),
            "steps_mode",
            "schedule",
        ),
        ("/api/v1/jobs", json!({"kind": "image", "params": with("steps_mode", json!(1))}), "steps_mode", ""),
    ];
    for (route, body, field, says) in cases {
        let resp = c.post(d.at(route)).json(&body).send().await.expect("post");
        let status = resp.status().as_u16();
        let err: Value = resp.json().await.expect("json");
        assert_eq!((status, err["error"]["field"].as_str()), (400, Some(field)), "{route} {body}: {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains(says)), "{route} {body}: {err}");
    }

    // The document says what it takes, on the image and on its second pass.
    let doc = get(&c, &d, "/openapi.json").await;
    for schema in ["ImageRequest", "Refine"] {
        let field = &doc["components"]["schemas"][schema]["properties"]["steps_mode"];
        assert_eq!(field["pattern"], "^(schedule|run)$", "{schema}: {field}");
    }
}

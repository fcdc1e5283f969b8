//! Textual-inversion embeddings ("EasyNegative" in a negative prompt): imported with
//! `reelbox models import` (a safetensors one read by reelbox itself, a pickled `.pt` through
//! the converter and its self-check), then named in prompts as A1111 names them (the
//! embedding's name among the words) and as ComfyUI does (`embedding:NAME`): its vectors go
//! in place of those tokens' embeddings. The fixture's embedding is exactly the text
//! encoder's own rows for two words, so a prompt naming it must draw exactly what the words
//! draw, and, before it was imported, something else. A model that takes no embeddings (a
//! hub export) and an embedding of other widths are refused at submission, naming the
//! field; A1111's `/sdapi/v1/embeddings` and ComfyUI's `/embeddings` list them. Before,
//! the names were read as words without a word said.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::byo::{anime_beside_hub, api_import, fixture_once, max_diff};
use common::daemon::{DaemonProc, get_json, is_final, post_json, wait_job};
use common::tools::convert_pyenv;
use serde_json::{Value, json};
use sha2::Digest;

use crate::clip_skip::{draw, picture_of};
use crate::comfy_compat::{default_workflow, history_of, queue_prompt};

/// Runs `make_byo_embedding.py` for the tiny SD folder `sd` into `out`.
fn make_embeddings(env: &Path, sd: &Path, out: &Path) {
    let run = Command::new(env.join("bin/python"))
        .arg(common::fixture("make_byo_embedding.py"))
        .arg(sd)
        .arg(out)
        .output()
        .expect("run make_byo_embedding.py");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

/// Imports `file` through the API as an embedding: the finished job.
async fn import(http: &reqwest::Client, d: &DaemonProc, file: &Path) -> Value {
    let body = json!({"path": file, "kind": "embedding"});
    let (s, job) = post_json(http, d, "/api/v1/models/import", body).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    wait_job(http, d, &id, Duration::from_secs(300), is_final).await
}

/// `POST /api/v1/images` of `params` refused: the field and the message.
async fn refused(http: &reqwest::Client, d: &DaemonProc, params: Value) -> (String, String) {
    let (s, v) = post_json(http, d, "/api/v1/images", params.clone()).await;
    assert_eq!(s, 400, "{params}: {v}");
    let text = |k: &str| v["error"][k].as_str().unwrap_or_default().to_string();
    (text("field"), text("message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_embedding_draws_what_its_vectors_stand_for_in_both_readings() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd.py");
    let emb = tempfile::tempdir().expect("tempdir");
    make_embeddings(&env, &src.join("tiny-sd-diffusers"), emb.path());
    let words =
        common::byo::read_json(&emb.path().join("red-circle.json"))["words"].as_str().expect("words").to_string();
    let http = reqwest::Client::new();
    // `hub-sd`, a model as the hub exports them: its text encoder takes no embeddings.
    let (_home, models, d, _) = anime_beside_hub(&http, &env, src).await;
    let a1111 = |prompt: &str| json!({"model": "anime", "prompt": prompt, "sample_as": "a1111"});
    let comfy = |prompt: &str| json!({"model": "anime", "prompt": prompt, "sample_as": "comfyui"});
    let before = draw(&http, &d, a1111("a photo of red-circle")).await.0;

    // A safetensors embedding: read by reelbox, no converter, kept as its embedding.safetensors.
    let job = import(&http, &d, &emb.path().join("red-circle.safetensors")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(models.join("red-circle/embedding.safetensors").is_file());
    // A1111's .pt: through the converter, the file it wrote read back against PyTorch's reading.
    api_import(&http, &d, json!({"path": emb.path().join("old-style.pt")}), "3 vectors of 32").await;
    let job = import(&http, &d, &emb.path().join("sdxl-style.safetensors")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let job = import(&http, &d, &emb.path().join("not-an-embedding.safetensors")).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job.to_string().contains("not a textual-inversion embedding"), "{job}");

    // A1111's reading: its name among the words is its vectors, the words' own rows here.
    let (named, text) = draw(&http, &d, a1111("a photo of red-circle")).await;
    let plain = draw(&http, &d, a1111(&format!("a photo of {words}"))).await.0;
    assert!(named == plain, "the embedding draws what its words draw: {}", max_diff(&named, &plain));
    assert!(max_diff(&named, &before) > 8, "before it was imported, its name was words");
    // A1111's `TI hashes`, by the sha256 of the file it was imported from.
    let sha = sha2::Sha256::digest(std::fs::read(emb.path().join("red-circle.safetensors")).expect("read"));
    let hashed = format!(", TI hashes: \"red-circle: {}\", ", &hex::encode(sha)[..12]);
    assert!(text.contains("a photo of red-circle") && text.contains(&hashed), "{text}");
    // Weighed as words are, in the negative prompt as in the prompt.
    let weighed = |p: &str| json!({"model": "anime", "prompt": "a cat", "negative_prompt": p, "sample_as": "a1111"});
    let neg_named = draw(&http, &d, weighed("(red-circle:1.3), blurry")).await.0;
    let neg_plain = draw(&http, &d, weighed(&format!("({words}:1.3), blurry"))).await.0;
    assert!(neg_named == neg_plain, "{}", max_diff(&neg_named, &neg_plain));
    let old = draw(&http, &d, a1111("a photo of old-style")).await.0;
    assert!(max_diff(&old, &named) > 8, "another embedding draws another picture");

    // ComfyUI's reading: `embedding:NAME`; the bare name is words there.
    let comfy_named = draw(&http, &d, comfy("a photo of embedding:red-circle, night")).await.0;
    let comfy_plain = draw(&http, &d, comfy(&format!("a photo of {words}, night"))).await.0;
    assert!(comfy_named == comfy_plain, "{}", max_diff(&comfy_named, &comfy_plain));
    let bare = draw(&http, &d, comfy("a photo of red-circle, night")).await.0;
    assert!(max_diff(&bare, &comfy_named) > 8);
    // …and the job says how ComfyUI's reading names it.
    let newest = get_json(&http, &d, "/api/v1/jobs?kind=image&limit=1").await;
    let id = newest["jobs"][0]["id"].as_str().expect("the newest image job").to_string();
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let events = events.text().await.expect("event text");
    assert!(events.contains("names red-circle, an installed embedding, as words"), "{events}");
    assert!(events.contains("`embedding:red-circle`"), "{events}");

    // Refused at submission, naming the field: none of that name, other widths, a model that
    // takes none.
    let (field, why) = refused(&http, &d, comfy("a embedding:nope")).await;
    assert!(field == "prompt" && why.contains("embedding:nope: no embedding of that name"), "{why}");
    let (field, why) = refused(&http, &d, comfy("a embedding:sdxl-style")).await;
    assert!(field == "prompt" && why.contains("2 vectors for SDXL (768 + 1280)"), "{why}");
    let hub = json!({"model": "hub-sd", "prompt": "a cat", "negative_prompt": "red-circle", "sample_as": "a1111"});
    let (field, why) = refused(&http, &d, hub).await;
    assert!(field == "negative_prompt" && why.contains("reelbox models import"), "{why}");
    // A second pass on that model reads the same prompts: refused at the model it names.
    let mut second =
        json!({"model": "anime", "prompt": "a cat", "negative_prompt": "red-circle", "sample_as": "a1111"});
    second["refine"] = json!({"model": "hub-sd", "strength": 0.5});
    let (field, why) = refused(&http, &d, second).await;
    assert!(field == "refine.model" && why.contains("its negative_prompt: names the embedding red-circle"), "{why}");
    // A word that only holds the name's letters is no embedding.
    draw(&http, &d, json!({"model": "hub-sd", "prompt": "a red-circlet", "sample_as": "a1111"})).await;
    let jobs = get_json(&http, &d, "/api/v1/jobs?kind=image&state=failed").await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "refused, nothing failed: {jobs}");

    // A1111: txt2img with it in the negative prompt, and the list of those the model takes.
    let body = json!({"prompt": "a cat", "negative_prompt": "old-style", "steps": 2, "width": 64, "height": 64,
        "seed": 7, "override_settings": {"sd_model_checkpoint": "anime"}});
    let (s, answer) = post_json(&http, &d, "/sdapi/v1/txt2img", body).await;
    assert_eq!(s, 200, "{answer}");
    assert!(picture_of(&answer).1["negative_prompt"] == "old-style", "{answer}");
    assert_eq!(post_json(&http, &d, "/sdapi/v1/options", json!({"sd_model_checkpoint": "anime"})).await.0, 200);
    // Clients refresh after adding one; the list reads the models dir as it is anyway.
    assert_eq!(post_json(&http, &d, "/sdapi/v1/refresh-embeddings", json!({})).await.0, 200);
    let listed = get_json(&http, &d, "/sdapi/v1/embeddings").await;
    assert_eq!(listed["loaded"]["red-circle"]["vectors"], 2, "{listed}");
    assert_eq!(listed["loaded"]["red-circle"]["shape"], 32, "{listed}");
    assert_eq!(listed["loaded"]["old-style"]["vectors"], 3, "{listed}");
    assert_eq!(listed["skipped"]["sdxl-style"]["shape"], 2048, "{listed}");

    // ComfyUI: its list, and a workflow naming one.
    let names = get_json(&http, &d, "/embeddings").await;
    assert_eq!(names, json!(["old-style", "red-circle", "sdxl-style"]));
    let mut g = default_workflow("anime", 2);
    g["7"]["inputs"]["text"] = json!("embedding:old-style.pt, watermark");
    let id = queue_prompt(&http, &d, json!({"prompt": g})).await;
    let entry = history_of(&http, &d, &id, Duration::from_secs(120)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");
    g["7"]["inputs"]["text"] = json!("embedding:nope");
    let resp = http.post(d.at("/prompt")).json(&json!({"prompt": g})).send().await.expect("post");
    let body: Value = resp.json().await.expect("json");
    assert!(body.to_string().contains("embedding:nope"), "{body}");

    // The listing says what each is.
    let listed = get_json(&http, &d, "/api/v1/models").await;
    let kind = |name: &str| {
        let rows = listed["models"].as_array().cloned().unwrap_or_default();
        rows.into_iter().find(|m| m["name"] == name).map(|m| m["kind"].clone())
    };
    assert_eq!(kind("red-circle"), Some(json!("embedding")), "{listed}");
    let takes = |name: &str| {
        let rows = listed["models"].as_array().cloned().unwrap_or_default();
        rows.into_iter().find(|m| m["name"] == name).map(|m| m["takes_embeddings"].clone())
    };
    assert_eq!((takes("anime"), takes("hub-sd")), (Some(json!(true)), Some(json!(false))), "{listed}");
}

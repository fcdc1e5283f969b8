//! `DELETE /api/v1/models/{name}` against a real daemon: an admin removes an installed
//! model from the box (the web studio's Remove, a `reelbox rm` from a login whose models
//! dir is not the daemon's); a model a queued job runs stays unless forced, the profiles
//! naming it are said, and a client key may not remove anything.

use crate::common;

use common::api::{call, create_key};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn state_of(list: &Value, name: &str) -> String {
    let models = list["models"].as_array().into_iter().flatten();
    models
        .filter(|m| m["name"] == name)
        .map(|m| m["state"].as_str().unwrap_or("").to_string())
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_removes_a_model_that_no_queued_job_runs_and_hears_which_profiles_named_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::render::demo_models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let at = |path: &str| d.at(path);

    // A picture waiting in the paused queue runs demo-shapes: removing it would fail it.
    assert_eq!(call(None, Method::POST, at("/api/v1/queue/pause"), None).await.0, StatusCode::OK);
    let (status, job) =
        call(None, Method::POST, at("/api/v1/images"), Some(json!({"prompt": "a red circle", "model": "demo-shapes"})))
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().expect("job id");
    let (status, body) = call(None, Method::DELETE, at("/api/v1/models/demo-shapes"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "model_in_use", "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(id) && m.contains("force=true")), "{body}");
    assert!(models.join("demo-shapes").is_dir(), "kept for the queued job");

    // Forced, it goes (the job fails when it runs, as the refusal said).
    let (status, body) = call(None, Method::DELETE, at("/api/v1/models/demo-shapes?force=true"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"name": "demo-shapes", "profiles": []}));
    assert!(!models.join("demo-shapes").exists(), "its files are gone");
    let (_, list) = call(None, Method::GET, at("/api/v1/models"), None).await;
    assert_ne!(state_of(&list, "demo-shapes"), "installed", "{list}");

    // A profile that names the upscaler is said, with what it names it as.
    let profile = json!({"name": "anna", "upscale_model": "demo-upscaler"});
    let (status, anna) = call(None, Method::POST, at("/api/v1/profiles"), Some(profile)).await;
    assert_eq!(status, StatusCode::CREATED, "{anna}");
    let (status, body) = call(None, Method::DELETE, at("/api/v1/models/demo-upscaler"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["profiles"], json!([{"id": anna["id"], "name": "anna", "field": "upscale_model"}]), "{body}");

    // A model named as the pull and import routes are is removed as any other (it was a 405).
    std::fs::create_dir(models.join("pull")).expect("a model dir named pull");
    std::fs::write(models.join("pull").join("model.onnx"), b"x").expect("its file");
    let (status, body) = call(None, Method::DELETE, at("/api/v1/models/pull"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!models.join("pull").exists(), "its files are gone");

    // Not installed (or not a model name at all): 404, nothing touched.
    for name in ["demo-shapes", "no-such-model", "..", "demo-presenter%2F..", "pull", "import"] {
        let (status, body) = call(None, Method::DELETE, at(&format!("/api/v1/models/{name}")), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
    }
    assert!(models.join("demo-presenter").is_dir() && models.is_dir(), "nothing else removed");

    // Once the box has keys, a client key may not remove models.
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, client) = create_key(&d, Some(&admin), json!({"name": "phone"})).await;
    let (status, body) = call(Some(&client), Method::DELETE, at("/api/v1/models/demo-presenter"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("admin_only")), "{body}");
    assert!(models.join("demo-presenter").is_dir(), "kept");
    let (status, body) = call(Some(&admin), Method::DELETE, at("/api/v1/models/demo-presenter"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

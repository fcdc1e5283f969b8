//! Why a job was canceled, where a family member looks: a revoked key's waiting job, a
//! cancel with a reason, one without (by its owner, by an admin), and a reason refused, on
//! the real daemon over HTTP and through `reelbox jobs`.

use crate::common;

use std::path::Path;

use common::api::{call, create_key, keyed_client};
use common::daemon::{DaemonProc, get_json, submit_testcard};
use common::tools::{reelbox_cli, run_ok};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A daemon on `home/data` with an admin key and the kid's client key, its queue paused so
/// what the kid submits waits: (daemon, admin key, the kid's key id, the kid's key).
async fn paused_box_with_a_kid(home: &Path) -> (DaemonProc, String, String, String) {
    let d = DaemonProc::start(&home.join("data"), &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (kid_id, kid) = create_key(&d, Some(&admin), json!({"name": "kid"})).await;
    let (status, v) = call(Some(&admin), Method::POST, d.at("/api/v1/queue/pause"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    (d, admin, kid_id, kid)
}

/// `reelbox ARGS --url … --key KEY`; its standard output.
fn cli(home: &Path, d: &DaemonProc, key: &str, args: &[&str]) -> String {
    let out = run_ok(reelbox_cli(home, &home.join("models")).args(args).args(["--url", &d.url, "--key", key]));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `POST /api/v1/jobs/{id}/cancel` with `key` and `body`.
async fn cancel(d: &DaemonProc, key: &str, id: &str, body: Option<Value>) -> (StatusCode, Value) {
    call(Some(key), Method::POST, d.at(&format!("/api/v1/jobs/{id}/cancel")), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_keys_waiting_job_says_it_was_canceled_because_of_the_revoke() {
    let home = tempfile::tempdir().expect("tempdir");
    let (d, admin, kid_id, kid) = paused_box_with_a_kid(home.path()).await;
    let id = submit_testcard(&keyed_client(&kid), &d, json!({"steps": 1, "step_ms": 0})).await;

    let (status, v) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!((status, v["canceled_jobs"].clone()), (StatusCode::OK, json!(1)), "{v}");

    let why = "canceled because the key \"kid\" was revoked";
    let job = get_json(&keyed_client(&admin), &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!((job["state"].as_str(), job["error"].as_str()), (Some("canceled"), Some(why)), "{job}");
    let shown = cli(home.path(), &d, &admin, &["jobs", "show", &id]);
    assert!(shown.contains("state    canceled") && shown.contains(&format!("reason   {why}")), "{shown}");
    let listed = cli(home.path(), &d, &admin, &["jobs", "list", "--state", "canceled"]);
    assert!(listed.lines().any(|l| l.contains(&id) && l.contains(why)), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_keeps_the_reason_given_or_says_who_canceled() {
    let home = tempfile::tempdir().expect("tempdir");
    let (d, admin, _, kid) = paused_box_with_a_kid(home.path()).await;
    let kid_http = keyed_client(&kid);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(submit_testcard(&kid_http, &d, json!({"steps": 1, "step_ms": 0})).await);
    }
    let error_of = |job: &Value| (job["state"].as_str().map(str::to_string), job["error"].as_str().map(str::to_string));
    let canceled = |why: &str| (Some("canceled".to_string()), Some(why.to_string()));

    // A reason too long, or not text, is refused naming it, and the job still waits.
    for bad in [json!({"reason": "x".repeat(201)}), json!({"reason": 5})] {
        let (status, v) = cancel(&d, &kid, &ids[0], Some(bad)).await;
        assert_eq!((status, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "{v}");
        let job = get_json(&kid_http, &d, &format!("/api/v1/jobs/{}", ids[0])).await;
        assert_eq!(job["state"], "queued", "a refused cancel canceled: {job}");
    }

    // The kid's own reason is kept as given, in the answer and in the job's view.
    let (status, v) = cancel(&d, &kid, &ids[0], Some(json!({"reason": "wrong prompt"}))).await;
    assert_eq!((status, error_of(&v)), (StatusCode::OK, canceled("wrong prompt")), "{v}");
    let job = get_json(&kid_http, &d, &format!("/api/v1/jobs/{}", ids[0])).await;
    assert_eq!(error_of(&job), canceled("wrong prompt"), "{job}");
    // Without one the job says who did it: the kid, or an admin by key name.
    let (_, v) = cancel(&d, &kid, &ids[1], None).await;
    assert_eq!(error_of(&v), canceled("canceled by its owner"), "{v}");
    let (_, v) = cancel(&d, &admin, &ids[2], None).await;
    assert_eq!(error_of(&v), canceled("canceled by an admin (key \"admin\")"), "{v}");
    let job = get_json(&kid_http, &d, &format!("/api/v1/jobs/{}", ids[2])).await;
    assert_eq!(error_of(&job), canceled("canceled by an admin (key \"admin\")"), "what the kid reads: {job}");
    // `reelbox jobs cancel --reason` says it too.
    let said = cli(home.path(), &d, &kid, &["jobs", "cancel", &ids[3], "--reason", "typo in the script"]);
    assert!(said.contains("reason   typo in the script"), "{said}");
}

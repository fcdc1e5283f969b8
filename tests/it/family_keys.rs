//! A family box's keys over a week, as its owner meets them on the real daemon: one admin
//! key, a key per person with quotas, `reelbox keys list` read by a person, a second admin,
//! revoking by name, and the last admin key kept from being revoked (a lost one is replaced offline, as
//! README's "Keys, quotas and limits" says).

use crate::common;

use std::path::Path;

use common::daemon::DaemonProc;
use common::tools::{reelbox_cli, run_ok};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn call(key: Option<&str>, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a key; its id and secret.
async fn create_key(d: &DaemonProc, by: Option<&str>, body: Value) -> (String, String) {
    let (status, v) = call(by, Method::POST, d.at("/api/v1/keys"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (v["id"].as_str().expect("id").to_string(), v["key"].as_str().expect("key").to_string())
}

/// `reelbox ARGS` on the data dir `data` (no daemon needed for `--offline`).
fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    let home = data.parent().expect("home");
    run_ok(reelbox_cli(home, &home.join("models")).env("REELBOX_DATA_DIR", data).args(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_cannot_be_revoked_and_a_lost_one_is_replaced_offline() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let mut d = DaemonProc::start(&data, &[]);
    let (admin_id, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum", "max_queued": 3})).await;
    let (_, kid) = create_key(&d, Some(&admin), json!({"name": "kid", "max_storage_bytes": 50_000_000})).await;

    // Revoking the only admin key would leave the family's keys with nobody to manage them.
    let (status, v) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{admin_id}")), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("last admin key") && msg.contains("--scope admin"), "{msg}");
    assert_eq!(call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::OK, "still works");

    // With a second admin, the first can go; the second then is the last one.
    let (second_id, second) = create_key(&d, Some(&admin), json!({"name": "dad", "scope": "admin"})).await;
    let (status, v) = call(Some(&second), Method::DELETE, d.at(&format!("/api/v1/keys/{admin_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = call(Some(&second), Method::DELETE, d.at(&format!("/api/v1/keys/{second_id}")), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "the remaining admin key was revoked");

    // Lost: stop the daemon, write a new admin key into its database, start it again.
    assert!(d.terminate().0.success());
    let out = cli(&data, &["keys", "create", "--name", "rescue", "--scope", "admin", "--offline"]);
    let rescue = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(rescue.starts_with("rb_"), "{rescue}");
    let d = DaemonProc::start(&data, &[]);
    let (status, v) = call(Some(&rescue), Method::DELETE, d.at(&format!("/api/v1/keys/{second_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "the rescue key revokes the lost one: {v}");
    assert_eq!(call(Some(&mum), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::OK, "mum's key lives on");

    // The owner reads the list and revokes by the name it shows.
    let list = cli(&data, &["keys", "list", "--url", &d.url, "--key", &rescue]);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.contains("0 B/50.0 MB"), "storage in units people read:\n{list}");
    let out = cli(&data, &["keys", "revoke", "kid", "--url", &d.url, "--key", &rescue]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked key \"kid\""));
    assert_eq!(call(Some(&kid), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::UNAUTHORIZED);
}

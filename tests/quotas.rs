//! Quotas that hold under bursts: GPU time reserved at submission, against the real daemon.

mod common;

use std::time::Duration;

use common::daemon::{DaemonProc, is_final};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

async fn call(http: &Client, key: &str, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create_key(d: &DaemonProc, http: &Client, by: Option<&str>, body: Value) -> (String, String) {
    let mut r = http.post(d.at("/api/v1/keys")).json(&body);
    if let Some(k) = by {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = resp.json().await.expect("json");
    (v["id"].as_str().expect("id").to_string(), v["key"].as_str().expect("key").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_submissions_cannot_overshoot_the_gpu_seconds_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One (fake) GPU: jobs may run on it, so they reserve their estimated GPU time.
    let d = DaemonProc::start(dir.path(), &[("REELBOX_FAKE_GPUS", "8192")]);
    let http = Client::new();
    let (_, admin) = create_key(&d, &http, None, json!({"name": "root", "scope": "admin"})).await;
    let quota = json!({"name": "tiny", "gpu_seconds_per_day": 1, "max_queued": 100});
    let (id, key) = create_key(&d, &http, Some(&admin), quota).await;
    // Paused, nothing runs, so only reservations decide.
    assert!(call(&http, &admin, Method::POST, d.at("/api/v1/queue/pause"), None).await.0.is_success());

    // Each testcard is estimated at steps × step_ms = 0.2 s: five fit in 1 s.
    let job = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 200}});
    let burst: Vec<_> = (0..50)
        .map(|_| {
            let (http, key, url, job) = (http.clone(), key.clone(), d.at("/api/v1/jobs"), job.clone());
            tokio::spawn(async move { call(&http, &key, Method::POST, url, Some(job)).await })
        })
        .collect();
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for t in burst {
        let (status, v) = t.await.expect("join");
        match status.as_u16() {
            202 => accepted.push(v["id"].as_str().expect("id").to_string()),
            429 => {
                assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
                let msg = v["error"]["message"].as_str().unwrap_or("");
                assert!(
                    msg.contains("gpu_seconds_per_day") && msg.contains("tiny") && msg.contains("resets at"),
                    "{msg}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((accepted.len(), refused), (5, 45));

    // Once they ran, reservations are released and real GPU time is charged instead.
    assert!(call(&http, &admin, Method::POST, d.at("/api/v1/queue/resume"), None).await.0.is_success());
    for job in &accepted {
        let mut done = false;
        for _ in 0..200 {
            let (_, v) = call(&http, &key, Method::GET, d.at(&format!("/api/v1/jobs/{job}")), None).await;
            if is_final(&v) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(done, "job {job} finished");
    }
    let (_, keys) = call(&http, &admin, Method::GET, d.at("/api/v1/keys"), None).await;
    let tiny = keys.as_array().expect("keys").iter().find(|k| k["id"] == id.as_str()).cloned().expect("listed");
    assert_eq!(tiny["gpu_seconds_reserved"], 0, "{tiny}");
}

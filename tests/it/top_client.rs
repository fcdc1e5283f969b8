//! `reelbox top`'s link to a real daemon, without a terminal: what one poll brings back
//! with a long queue, how a daemon that wants a key is told apart from a dead one, and
//! `top` started with its output in a pipe.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::daemon::{DaemonProc, submit_testcard, wait_job};
use reelbox::client::ApiClient;
use reelbox::tui::client;
use reelbox::tui::event::{Event, Update};
use serde_json::json;

/// With more than a hundred jobs waiting (the newest hundred are all queued), the
/// finished ones still show under the queue; a failure older than the last 30 finished
/// jobs stays listed (the header counts it, `/fail` must find it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_stay_listed_behind_a_long_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let failed = submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 1, "fail": "fatal"})).await;
    wait_job(&http, &d, &failed, Duration::from_secs(20), |j| j["state"] == "failed").await;
    let mut done = Vec::new();
    for _ in 0..31 {
        done.push(submit_testcard(&http, &d, json!({"steps": 1, "step_ms": 1})).await);
    }
    for id in &done {
        wait_job(&http, &d, id, Duration::from_secs(60), |j| j["state"] == "succeeded").await;
    }
    let paused = http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    assert!(paused.status().is_success());
    for _ in 0..110 {
        submit_testcard(&http, &d, json!({"steps": 1})).await;
    }
    let api = ApiClient::new(&d.url, None, None, Some(client::CONNECT_TIMEOUT)).expect("client");
    let snap = client::snapshot(&api, None).await.expect("snapshot");
    assert_eq!(snap.queued.len(), 110);
    let states: Vec<&str> = snap.recent.iter().map(|j| j.state.as_str()).collect();
    assert_eq!(states.len(), 31, "the last 30 finished, then the older failure: {states:?}");
    assert!(states[..30].iter().all(|s| *s == "succeeded"), "{states:?}");
    assert_eq!(snap.recent[30].id, failed);
}

/// A daemon that wants a key, asked without one, is "refused", not "down".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_wants_a_key_is_refused_not_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let made = http
        .post(d.at("/api/v1/keys"))
        .json(&json!({"name": "admin", "scope": "admin"}))
        .send()
        .await
        .expect("create key");
    assert!(made.status().is_success(), "{}", made.status());
    let api = ApiClient::new(&d.url, None, None, Some(client::CONNECT_TIMEOUT)).expect("client");
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let poll = tokio::spawn(client::poll(api, tx, Duration::from_secs(60), Arc::new(tokio::sync::Notify::new())));
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a poll").expect("an event");
    poll.abort();
    match first {
        Event::Data(Update::Refused(msg)) => assert!(msg.starts_with("401"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // With keys, a poll says whether the key may pause the queue (its footer offers `p`).
    let admin_key = made.json::<serde_json::Value>().await.expect("key")["key"].as_str().expect("key").to_string();
    let client_key = http
        .post(d.at("/api/v1/keys"))
        .bearer_auth(&admin_key)
        .json(&json!({"name": "laptop", "scope": "client"}))
        .send()
        .await
        .expect("create client key")
        .json::<serde_json::Value>()
        .await
        .expect("key")["key"]
        .as_str()
        .expect("key")
        .to_string();
    for (key, admin) in [(admin_key, true), (client_key, false)] {
        let api = ApiClient::new(&d.url, Some(key), None, Some(client::CONNECT_TIMEOUT)).expect("client");
        let snapshot = client::snapshot(&api, None).await.expect("a poll");
        assert_eq!(snapshot.admin, Some(admin));
    }
}

/// `reelbox top` with its output piped (a script, a cron job) says it needs a terminal and
/// writes no escape codes.
#[test]
fn top_without_a_terminal_says_so_cleanly() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["top", "--url", "http://127.0.0.1:9"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run top");
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'), "escape codes: {stdout:?} {stderr:?}");
    assert!(stderr.contains("needs a terminal: standard output is not a terminal"), "{stderr}");
}

/// `reelbox top` on a terminal of `TERM=dumb` (an editor's shell, a serial console) is
/// refused as a pipe is: it drew the full screen with cursor and colour codes there.
#[test]
fn top_on_a_dumb_terminal_says_so_cleanly() {
    let top = format!("TERM=dumb '{}' top --url http://127.0.0.1:9", env!("CARGO_BIN_EXE_reelbox"));
    // `script` gives top a terminal; `timeout` only ends a dashboard drawn by mistake.
    let out = std::process::Command::new("timeout")
        .args(["60", "script", "-qec", &top, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run top in script");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("\u{1b}["), "escape codes: {said:?}");
    assert!(said.contains("needs a terminal: the terminal is TERM=dumb"), "{said:?}");
}

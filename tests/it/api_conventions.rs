//! What HTTP clients expect of the native API, against the real daemon: an idempotency key
//! sent with another request is refused (IETF httpapi-idempotency-key, Stripe), the
//! box-wide event stream starts with what happens next, and downloads answer conditional
//! and resumed requests as RFC 9110 says, under their UTF-8 names.

use crate::common;

use std::time::Duration;

use common::api::upload;
use common::daemon::{DaemonProc, is_final, submit, wait_job};
use common::media::{png, test_picture};
use common::sse::read_events;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn post_keyed(d: &DaemonProc, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let resp = reqwest::Client::new().post(d.at(path)).header("Idempotency-Key", key).json(&body).send().await;
    let resp = resp.expect("post");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_sent_with_another_request_is_refused_naming_its_first_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let card = |steps: u32| json!({"kind": "testcard", "params": {"steps": steps, "step_ms": 0}});
    let (status, first) = post_keyed(&d, "/api/v1/jobs", "abc-1", card(1)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let id = first["id"].as_str().expect("id");
    // The same request again (its answer was lost): the same job.
    let (status, again) = post_keyed(&d, "/api/v1/jobs", "abc-1", card(1)).await;
    assert_eq!((status, again["id"].as_str()), (StatusCode::OK, Some(id)), "{again}");
    // Other parameters, or another route, with the key: refused, naming the first job.
    for (path, body) in [("/api/v1/jobs", card(7)), ("/api/v1/models/pull", json!({"name": "ultraface-320"}))] {
        let (status, v) = post_keyed(&d, path, "abc-1", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        assert_eq!(
            (v["error"]["code"].as_str(), v["error"]["field"].as_str()),
            (Some("idempotency_key_reused"), Some("Idempotency-Key"))
        );
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(&format!("first used for job {id} (kind testcard)")), "{path}: {msg}");
    }
    // A key the document's pattern does not take (a tab inside) is refused naming it, as the
    // fuzzer found it accepted.
    let (status, v) = post_keyed(&d, "/api/v1/jobs", "abc\t2", card(1)).await;
    assert_eq!((status, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("Idempotency-Key")), "{v}");
    let jobs: Value = reqwest::get(d.at("/api/v1/jobs")).await.expect("list").json().await.expect("json");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "nothing else was queued: {jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_box_wide_event_stream_starts_with_what_happens_next() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    let card = json!({"kind": "testcard", "params": {"steps": 2, "step_ms": 0}});
    let old = submit(&c, &d, card.clone()).await["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &old, Duration::from_secs(20), is_final).await;

    let live = c.get(d.at("/api/v1/events")).send().await.expect("sse");
    let new = submit(&c, &d, card).await["id"].as_str().expect("id").to_string();
    let done = |got: &[(u64, Value)]| got.iter().any(|(_, e)| e["job"] == new.as_str() && e["state"] == "succeeded");
    let got = read_events(live, done).await;
    assert!(got.iter().all(|(_, e)| e["job"] == new.as_str()), "only what happened after it opened: {got:?}");
    assert_eq!(got.first().map(|(_, e)| e["state"].clone()), Some(json!("queued")), "{got:?}");
    // History on request: from the start, or after an id.
    let all = read_events(c.get(d.at("/api/v1/events?after=0")).send().await.expect("sse"), done).await;
    assert_eq!(all.first().map(|(_, e)| e["job"].clone()), Some(json!(old)), "{all:?}");
    let from = all.iter().find(|(_, e)| e["job"] == new.as_str()).map(|(id, _)| id - 1).expect("new job's events");
    let resumed = c.get(d.at("/api/v1/events")).header("Last-Event-ID", from.to_string()).send().await.expect("sse");
    assert_eq!(read_events(resumed, done).await, got, "resumed from an id");
}

/// A job retried after it ended has the retry's events in its stream, which ends at the
/// retry's end, not at the first try's (a watch of it showed only the first try).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_jobs_stream_goes_on_past_its_first_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    let card = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "fail": "fatal"}});
    let id = submit(&c, &d, card).await["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &id, Duration::from_secs(20), is_final).await;
    let retried = c.post(d.at(&format!("/api/v1/jobs/{id}/retry"))).send().await.expect("retry");
    assert!(retried.status().is_success(), "{:?}", retried.text().await);
    // The retry queued it again before answering: final now means the retry ended.
    wait_job(&c, &d, &id, Duration::from_secs(20), is_final).await;
    let stream = c.get(d.at(&format!("/api/v1/jobs/{id}/events?after=0"))).send().await.expect("sse");
    let events = tokio::time::timeout(Duration::from_secs(20), read_events(stream, |_| false))
        .await
        .expect("the stream of a final job ends");
    // The job's own states (a stage's events carry their stage's).
    let states: Vec<&str> =
        events.iter().filter(|(_, e)| e["stage"].is_null()).filter_map(|(_, e)| e["state"].as_str()).collect();
    assert_eq!(states.iter().filter(|s| **s == "failed").count(), 2, "both tries' ends: {states:?}");
    assert_eq!(states.last(), Some(&"failed"), "{states:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_answer_weak_etags_and_stale_if_range_and_keep_utf8_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let bytes = png(&test_picture(64, 48, 1));
    let art = upload(&d, None, "Café.png", bytes.clone()).await;
    let url = d.at(art["url"].as_str().expect("url"));
    let c = reqwest::Client::new();
    let resp = c.get(&url).send().await.expect("download");
    let disposition = resp.headers()["content-disposition"].to_str().expect("ascii").to_string();
    assert!(disposition.contains("filename*=UTF-8''Caf%C3%A9.png"), "{disposition}");
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();

    // A proxy that compressed the file made its tag weak: the copy is still current.
    let weak = c.get(&url).header("If-None-Match", format!("W/{etag}")).send().await.expect("weak");
    assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
    // A resume against another version gets the whole file; against this one, the range.
    let stale = c.get(&url).header("Range", "bytes=0-9").header("If-Range", "\"nope\"").send().await.expect("stale");
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.expect("bytes").as_ref(), bytes.as_slice());
    let current = c.get(&url).header("Range", "bytes=0-9").header("If-Range", &etag).send().await.expect("current");
    assert_eq!(current.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(current.bytes().await.expect("bytes").as_ref(), &bytes[..10]);
}

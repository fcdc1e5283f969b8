//! The durable core against the real daemon, real redb file and real HTTP.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::daemon::{DaemonProc, is_final, submit, wait_job};
use common::sse::read_events;
use reelbox::store::records::{Job, StageState};
use reelbox::store::{JobFilter, Store};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testcard_succeeds_and_its_png_downloads_with_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = http();
    let job =
        submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 3, "step_ms": 20, "width": 160, "height": 90}}))
            .await;
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&c, &d, &id, Duration::from_secs(20), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["fraction"], 1.0);
    let arts: Vec<Value> =
        c.get(d.at(&format!("/api/v1/jobs/{id}/artifacts"))).send().await.expect("list").json().await.expect("json");
    let png = arts.iter().find(|a| a["media_type"] == "image/png").expect("a PNG artifact");
    let url = d.at(png["url"].as_str().expect("url"));
    let resp = c.get(&url).send().await.expect("download");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
    let bytes = resp.bytes().await.expect("bytes");
    let img = image::load_from_memory(&bytes).expect("decodes as an image");
    assert_eq!((img.width(), img.height()), (160, 90));
    let part = c.get(&url).header("Range", "bytes=0-99").send().await.expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"].to_str().expect("cr"), format!("bytes 0-99/{}", bytes.len()));
    assert_eq!(part.bytes().await.expect("bytes")[..], bytes[..100]);
    let cached = c.get(&url).header("If-None-Match", etag).send().await.expect("conditional");
    assert_eq!(cached.status(), 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_20_jobs_loses_nothing_and_redoes_no_finished_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let mut d = DaemonProc::start(dir.path(), &[]);
    let mut ids = Vec::new();
    for _ in 0..20 {
        let job = submit(
            &c,
            &d,
            json!({"kind": "testcard", "params": {"steps": 3, "step_ms": 100, "width": 64, "height": 36}}),
        )
        .await;
        ids.push(job["id"].as_str().expect("id").to_string());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.kill9();

    // Read what was finished straight from the redb file while no daemon holds it.
    let before: BTreeMap<String, Job> = {
        let store = Store::open(dir.path(), true, 64).expect("open after kill -9");
        let jobs = store.list_jobs(&JobFilter::default(), None, 1000).expect("list");
        store.close();
        jobs.into_iter().map(|j| (j.id.to_string(), j)).collect()
    };
    assert_eq!(before.len(), 20, "every accepted job is in the database");
    let finished_before: usize =
        before.values().flat_map(|j| &j.stages).filter(|s| matches!(s.state, StageState::Done { .. })).count();
    assert!(finished_before > 0, "the kill should land after some stages finished");

    let d = DaemonProc::start(dir.path(), &[]);
    for id in &ids {
        let job = wait_job(&c, &d, id, Duration::from_secs(60), is_final).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    let page: Value = c.get(d.at("/api/v1/jobs?limit=500")).send().await.expect("list").json().await.expect("json");
    let listed: HashSet<String> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, ids.iter().cloned().collect::<HashSet<_>>(), "no job lost or duplicated");

    let store_jobs: Vec<Value> = futures::future::join_all(ids.iter().map(|id| {
        let c = c.clone();
        let url = d.at(&format!("/api/v1/jobs/{id}"));
        async move { c.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    }))
    .await;
    for job in store_jobs {
        let old = &before[job["id"].as_str().expect("id")];
        for (i, stage) in old.stages.iter().enumerate() {
            let new = &job["stages"][i];
            assert_eq!(
                new["artifacts"].as_array().map(|a| a.len()),
                Some(1),
                "each stage made exactly one artifact: {job}"
            );
            if let StageState::Done { finished_at, .. } = stage.state {
                let was = reelbox::api::views::time(finished_at);
                assert_eq!(
                    new["finished_at"].as_str(),
                    Some(was.as_str()),
                    "finished stage {} was redone: {job}",
                    stage.name
                );
                assert_eq!(new["artifacts"][0].as_str(), Some(stage.artifacts[0].to_string().as_str()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_times_forty_submissions_make_2000_distinct_visible_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = http();
    c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            let url = d.at("/api/v1/jobs");
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..40 {
                    let r = c
                        .post(&url)
                        .json(&json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}}))
                        .send()
                        .await
                        .expect("post");
                    assert_eq!(r.status(), 202);
                    let v: Value = r.json().await.expect("json");
                    ids.push(v["id"].as_str().expect("id").to_string());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    assert_eq!(all.len(), 2000);
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = d.at("/api/v1/jobs?limit=500");
        if let Some(cur) = &cursor {
            url.push_str(&format!("&cursor={cur}"));
        }
        let page: Value = c.get(url).send().await.expect("page").json().await.expect("json");
        for j in page["jobs"].as_array().expect("jobs") {
            assert!(seen.insert(j["id"].as_str().expect("id").to_string()), "a job listed twice");
        }
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumed_with_last_event_id_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = http();
    let job = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 10, "step_ms": 150}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    let events_url = d.at(&format!("/api/v1/jobs/{id}/events"));
    let first = read_events(c.get(&events_url).send().await.expect("sse"), |got| got.len() >= 4).await;
    let last = first.last().expect("some events").0;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rest =
        read_events(c.get(&events_url).header("Last-Event-ID", last.to_string()).send().await.expect("sse"), |_| false)
            .await;
    let full = read_events(c.get(&events_url).send().await.expect("sse"), |_| false).await;
    let joined: Vec<u64> = first.iter().chain(rest.iter()).map(|e| e.0).collect();
    let all: Vec<u64> = full.iter().map(|e| e.0).collect();
    assert_eq!(joined, all, "resumed stream = full stream");
    assert_eq!(full.last().map(|e| e.1["state"].clone()), Some(json!("succeeded")));
    assert!(full.iter().any(|e| e.1["type"] == "progress"), "progress events are sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_json_errors_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = http();
    let post = |body: String| c.post(d.at("/api/v1/jobs")).header("content-type", "application/json").body(body).send();
    let cases: Vec<(reqwest::Response, u16, &str, Option<&str>)> = vec![
        (post("{not json".into()).await.expect("r"), 400, "malformed_json", None),
        (post(json!({"kind": "nope"}).to_string()).await.expect("r"), 400, "unknown_kind", Some("kind")),
        (
            post(json!({"kind": "testcard", "params": {"steps": 0}}).to_string()).await.expect("r"),
            400,
            "invalid_param",
            Some("steps"),
        ),
        (
            post(json!({"kind": "testcard", "params": {"step_ms": 99999999}}).to_string()).await.expect("r"),
            400,
            "invalid_param",
            Some("step_ms"),
        ),
        (
            post(json!({"kind": "testcard", "params": {"colour": 1}}).to_string()).await.expect("r"),
            400,
            "invalid_param",
            Some("colour"),
        ),
        (
            c.get(d.at("/api/v1/artifacts/..%2F..%2Fetc%2Fpasswd")).send().await.expect("r"),
            400,
            "invalid_param",
            Some("id"),
        ),
        (c.get(d.at("/api/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV")).send().await.expect("r"), 404, "not_found", None),
        // Its own client: the daemon closes the connection after refusing the body.
        (
            http()
                .post(d.at("/api/v1/jobs"))
                .header("content-type", "application/json")
                .body(format!("{{\"kind\":\"testcard\",\"params\":{{\"pad\":\"{}\"}}}}", "x".repeat(2 << 20)))
                .send()
                .await
                .expect("r"),
            413,
            "body_too_large",
            None,
        ),
    ];
    for (resp, status, code, field) in cases {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.expect("error body is JSON");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{body}");
        }
    }
    let form = reqwest::multipart::Form::new()
        .text("name", "bad")
        .part("portrait", reqwest::multipart::Part::bytes(b"definitely not a png".to_vec()).file_name("p.png"));
    let resp = c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "portrait", "{body}");
    let form = reqwest::multipart::Form::new()
        .text("name", "bad voice")
        .part("voice_sample", reqwest::multipart::Part::bytes(Vec::new()).file_name("v.wav"));
    let resp = c.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), 400);
    let profiles: Value = c.get(d.at("/api/v1/profiles")).send().await.expect("list").json().await.expect("json");
    assert_eq!(profiles, json!([]), "a refused upload leaves nothing behind");
    assert_eq!(c.get(d.at("/healthz")).send().await.expect("health").status(), 200);
    let ok = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}})).await;
    assert_eq!(ok["state"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_controls_cancel_retry_priority_idempotency_and_backpressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_MAX_QUEUED", "5"), ("REELBOX_CPU_CONCURRENCY", "1")]);
    let c = http();
    // A running job is canceled through its token within a second.
    let long = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1000, "step_ms": 100}})).await;
    let long_id = long["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &long_id, Duration::from_secs(10), |j| j["state"] == "running").await;
    let t0 = std::time::Instant::now();
    c.post(d.at(&format!("/api/v1/jobs/{long_id}/cancel"))).send().await.expect("cancel");
    let canceled = wait_job(&c, &d, &long_id, Duration::from_secs(2), |j| j["state"] == "canceled").await;
    assert!(t0.elapsed() < Duration::from_millis(1500), "cancel took {:?}", t0.elapsed());
    // The stage it stopped is not left looking as if it still ran: it says where it stopped.
    let stages: Vec<&Value> = canceled["stages"].as_array().expect("stages").iter().collect();
    assert!(stages.iter().all(|s| s["state"] != "running"), "{canceled}");
    assert!(stages.iter().any(|s| s["state"] == "stopped"), "{canceled}");
    // A finished job cannot be canceled, and the refusal says why in plain words.
    let quick = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}})).await;
    let quick_id = quick["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &quick_id, Duration::from_secs(10), |j| j["state"] == "succeeded").await;
    let late = c.post(d.at(&format!("/api/v1/jobs/{quick_id}/cancel"))).send().await.expect("late cancel");
    assert_eq!(late.status(), 409);
    let body: Value = late.json().await.expect("json");
    assert_eq!(
        body["error"]["message"], "the job's state is succeeded; only queued or running jobs can be canceled",
        "{body}"
    );

    c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    let low = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}, "priority": 0})).await;
    let high = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}, "priority": 5})).await;
    // Idempotency: the same key returns the same job with 200.
    let keyed = |c: &reqwest::Client| {
        c.post(d.at("/api/v1/jobs")).header("Idempotency-Key", "abc").json(&json!({"kind": "testcard"})).send()
    };
    let a = keyed(&c).await.expect("first");
    assert_eq!(a.status(), 202);
    let a: Value = a.json().await.expect("json");
    let b = keyed(&c).await.expect("second");
    assert_eq!(b.status(), 200);
    let b: Value = b.json().await.expect("json");
    assert_eq!(a["id"], b["id"]);
    // A queued job is canceled at once.
    let q = submit(&c, &d, json!({"kind": "testcard"})).await;
    let r: Value = c
        .post(d.at(&format!("/api/v1/jobs/{}/cancel", q["id"].as_str().expect("id"))))
        .send()
        .await
        .expect("cancel")
        .json()
        .await
        .expect("json");
    assert_eq!(r["state"], "canceled");
    // Backpressure: 5 queued max.
    submit(&c, &d, json!({"kind": "testcard"})).await;
    submit(&c, &d, json!({"kind": "testcard"})).await;
    let full = c.post(d.at("/api/v1/jobs")).json(&json!({"kind": "testcard"})).send().await.expect("post");
    assert_eq!(full.status(), 429);
    assert!(full.headers().contains_key("retry-after"));
    // Priority: the high one runs first once resumed.
    c.post(d.at("/api/v1/queue/resume")).send().await.expect("resume");
    let h = wait_job(&c, &d, high["id"].as_str().expect("id"), Duration::from_secs(20), is_final).await;
    let l = wait_job(&c, &d, low["id"].as_str().expect("id"), Duration::from_secs(20), is_final).await;
    assert!(h["started_at"].as_str() < l["started_at"].as_str(), "priority 5 started before priority 0");
    // Retry re-queues the canceled long job.
    let r: Value =
        c.post(d.at(&format!("/api/v1/jobs/{long_id}/retry"))).send().await.expect("retry").json().await.expect("json");
    assert_eq!(r["state"], "queued");
    let r = c.post(d.at(&format!("/api/v1/jobs/{}/retry", h["id"].as_str().expect("id")))).send().await.expect("retry");
    assert_eq!(r.status(), 409, "a succeeded job cannot be retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_running_work_and_exits_zero_quickly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = http();
    let mut d = DaemonProc::start(dir.path(), &[]);
    let job = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 200, "step_ms": 100}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    wait_job(&c, &d, &id, Duration::from_secs(10), |j| j["state"] == "running").await;
    let (status, took) = d.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let store = Store::open(dir.path(), true, 8).expect("open");
    let job = store.job(id.parse().expect("ulid")).expect("read").expect("job kept");
    store.close();
    assert_eq!(job.state.name(), "queued", "the running job was checkpointed back into the queue");
}

#[test]
fn retriable_failures_back_off_then_fail_after_max_attempts() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = std::fs::File::create(dir.path().join("c.toml")).expect("cfg");
        std::io::Write::write_all(&mut cfg, b"[queue]\nmax_attempts = 2\nretry_backoff_s = 0\n").expect("write");
        let path = dir.path().join("c.toml");
        let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", path.to_str().expect("utf8"))]);
        let c = http();
        let job =
            submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "fail": "retriable"}}))
                .await;
        let done = wait_job(&c, &d, job["id"].as_str().expect("id"), Duration::from_secs(20), is_final).await;
        assert_eq!(done["state"], "failed");
        assert_eq!(done["attempts"], 2);
        assert!(done["error"].as_str().is_some_and(|e| e.contains("fail once more")), "{done}");
        // The stage it failed in says so, with its error (it stayed `running` on a failed job).
        let card = &done["stages"][0];
        assert_eq!((&card["state"], &done["stages"][1]["state"]), (&json!("failed"), &json!("pending")), "{done}");
        assert!(
            card["error"].as_str().is_some_and(|e| e.contains("fail once more")) && card["finished_at"].is_string()
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_to_try_again_says_why_in_its_view_and_the_daemon_log_says_it_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[queue]\nmax_attempts = 3\nretry_backoff_s = 600\n").expect("write config");
    let log = dir.path().join("serve.log");
    let d = DaemonProc::start_logged(dir.path(), &[("REELBOX_CONFIG", cfg.to_str().expect("utf8"))], &log);
    let c = http();
    let job =
        submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0, "fail": "retriable"}})).await;
    let id = job["id"].as_str().expect("id");
    let backing_off = |j: &Value| j["state"] == "queued" && j["attempts"] == 1;
    let j = wait_job(&c, &d, id, Duration::from_secs(20), backing_off).await;
    // Its view said nothing while it waited ten minutes to try again: the reason was only
    // an event on its stream.
    assert!(j["error"].as_str().is_some_and(|e| e.contains("stage card: testcard asked to fail once more")), "{j}");
    assert_eq!(j["stages"][0]["state"], "failed", "the stage it stopped in, until it runs again: {j}");
    let text = std::fs::read_to_string(&log).expect("daemon log");
    let line = text.lines().find(|l| l.contains(id)).unwrap_or_else(|| panic!("no line for the job in:\n{text}"));
    assert!(line.contains("attempt failed, trying again in") && line.contains("fail once more"), "{line}");
    // `reelbox jobs retry ID` tries it again now rather than in ten minutes (it answered 200
    // and left it waiting): the second attempt fails the same way, and the log says so.
    let r = c.post(d.at(&format!("/api/v1/jobs/{id}/retry"))).send().await.expect("retry");
    assert_eq!(r.status(), 200);
    let t0 = std::time::Instant::now();
    let said = || std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains(id)).count();
    while said() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the retried job did not run again:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A job that just waits its turn is not "retried" (that answered 200 and did nothing).
    assert!(c.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status().is_success());
    let waiting = submit(&c, &d, json!({"kind": "testcard", "params": {"steps": 1}})).await;
    let r = c
        .post(d.at(&format!("/api/v1/jobs/{}/retry", waiting["id"].as_str().expect("id"))))
        .send()
        .await
        .expect("retry");
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_strings_bodies_and_methods_get_json_errors_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = http();
    // Each was a plain-text 400 (`Failed to deserialize query string: ...`) or named `id`.
    for (path, field) in [
        ("/api/v1/jobs?limit=abc", "limit"),
        ("/api/v1/jobs?limit=-1", "limit"),
        ("/api/v1/jobs?cursor=zzz", "cursor"),
        ("/api/v1/events?after=soon", "after"),
        ("/api/v1/jobs?kind=imgae", "kind"),
    ] {
        let resp = c.get(d.at(path)).send().await.expect("get");
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with(field)), "{path}: {body}");
    }
    // An array body is told to be an object (it named a field `[0]`).
    let resp = c.post(d.at("/api/v1/jobs")).json(&json!([{"kind": "testcard"}])).send().await.expect("post");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("JSON object")), "{body}");
    // A route that exists answers a method it does not take with a JSON 405 and `Allow`.
    let resp = c.put(d.at("/api/v1/jobs")).send().await.expect("put");
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().get("allow").is_some_and(|a| a.to_str().is_ok_and(|a| a.contains("POST"))));
    let body: Value = resp.json().await.expect("405 is JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

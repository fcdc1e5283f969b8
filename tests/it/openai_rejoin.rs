//! An OpenAI client that stops waiting (its timeout) and sends the same request again gets
//! the job its first try started, not a new one at the back of the queue; a job nobody asks
//! for again is canceled once `openai.hangup_grace_s` has passed.

use crate::common;

use std::time::{Duration, Instant};

use common::compat::{TINY_SD, models_dir, run_client, start_daemon_with};
use common::daemon::DaemonProc;
use serde_json::{Value, json};

/// A daemon on the demo models with `openai.hangup_grace_s = grace_s`, its queue paused (so a
/// job stays queued until [`Paused::queue`] resumes it).
struct Paused {
    _models: tempfile::TempDir,
    _data: tempfile::TempDir,
    d: DaemonProc,
    c: reqwest::Client,
}

impl Paused {
    async fn start(grace_s: u64) -> Self {
        let models = models_dir(false);
        let data = tempfile::tempdir().expect("tempdir");
        let config = data.path().join("config.toml");
        std::fs::write(&config, format!("[openai]\nhangup_grace_s = {grace_s}\n")).expect("config");
        let d = start_daemon_with(data.path(), models.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf-8"))]);
        let b = Self { _models: models, _data: data, d, c: reqwest::Client::new() };
        b.queue("pause").await;
        b
    }

    /// `pause` or `resume`s the queue.
    async fn queue(&self, action: &str) {
        let resp = self.c.post(self.d.at(&format!("/api/v1/queue/{action}"))).send().await.expect(action);
        assert_eq!(resp.status(), 200, "{action}");
    }
}

/// Sends `body` with a client that gives up after 1.5 s, as an SDK does after its timeout;
/// the queue is paused, so the job is still queued when it does.
async fn give_up_waiting(d: &DaemonProc, body: &Value) {
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().expect("client");
    let err = impatient.post(d.at("/v1/images/generations")).json(body).send().await.expect_err("times out");
    assert!(err.is_timeout(), "{err}");
}

async fn image_jobs(d: &DaemonProc) -> Vec<Value> {
    let jobs: Value = reqwest::get(d.at("/api/v1/jobs?kind=image")).await.expect("jobs").json().await.expect("json");
    jobs["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_again_after_its_client_gave_up_gets_the_job_the_first_try_started() {
    let b = Paused::start(60).await;
    let (d, c) = (&b.d, &b.c);
    let body = json!({"prompt": "a red door", "model": TINY_SD, "size": "64x64", "response_format": "b64_json"});
    give_up_waiting(d, &body).await;
    let first = image_jobs(d).await;
    assert_eq!(first.len(), 1, "{first:?}");
    let first_id = first[0]["id"].as_str().expect("id").to_string();

    // The SDK sends the same request again; meanwhile the queue goes on (whether the job
    // runs before the request comes or after, the request is answered by it).
    let again = tokio::spawn({
        let (c, url, body) = (c.clone(), d.at("/v1/images/generations"), body.clone());
        // Marked as a retry, as the SDKs do: it joins the job even if the box has not yet
        // noticed the first try hang up.
        async move { c.post(url).header("x-stainless-retry-count", "1").json(&body).send().await.expect("again") }
    });
    b.queue("resume").await;
    let resp = again.await.expect("join");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-reelbox-job"].to_str().expect("header"), first_id, "answered by the first job");
    let answer: Value = resp.json().await.expect("json");
    assert!(answer["data"][0]["b64_json"].as_str().is_some_and(|b| !b.is_empty()), "{answer}");
    let jobs = image_jobs(d).await;
    assert_eq!(jobs.len(), 1, "no second job was queued: {jobs:?}");
    assert_eq!(jobs[0]["state"], "succeeded", "{jobs:?}");

    // Another request (another prompt) is another job, as before.
    b.queue("pause").await;
    give_up_waiting(d, &json!({"prompt": "a blue door", "model": TINY_SD, "size": "64x64"})).await;
    assert_eq!(image_jobs(d).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_retrying_after_its_timeout_gets_its_picture_from_one_job() {
    let b = Paused::start(60).await;
    let d = &b.d;
    let client = tokio::spawn(run_client("openai_retry.py", vec![d.url.clone(), TINY_SD.to_string()]));
    let t0 = Instant::now();
    while image_jobs(d).await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the client sent nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Held past the client's 2 s timeout, so it gives up at least once and sends again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.queue("resume").await;
    let summary = client.await.expect("join");
    assert!(summary["retries"].as_u64().is_some_and(|n| n >= 1), "the client never tried again: {summary}");
    assert_eq!(summary["png"], true, "{summary}");
    let jobs = image_jobs(d).await;
    assert_eq!(jobs.len(), 1, "every try waited on one job: {jobs:?}");
    assert_eq!(summary["job"], jobs[0]["id"], "{summary}");
    assert_eq!(jobs[0]["state"], "succeeded", "{jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_nobody_asks_for_again_is_canceled_after_the_grace() {
    let b = Paused::start(1).await;
    // Paused, the job stays queued, so only the hang-up can end it.
    let d = &b.d;
    give_up_waiting(d, &json!({"prompt": "a red door", "model": TINY_SD, "size": "64x64"})).await;
    let t0 = Instant::now();
    loop {
        let jobs = image_jobs(d).await;
        let job = &jobs[0];
        if job["state"] == "canceled" {
            // Whoever looks at the job later learns why it never made its picture.
            let why = "canceled because the client that asked for it disconnected before it finished";
            assert_eq!(job["error"], why, "{job}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "job not canceled after the client left: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

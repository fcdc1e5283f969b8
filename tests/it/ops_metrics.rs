//! `/metrics` is valid Prometheus text and moves when a job runs.

use crate::common;

use std::time::Duration;

use common::daemon::{DaemonProc, is_final, wait_job};
use serde_json::json;

async fn scrape(c: &reqwest::Client, d: &DaemonProc) -> prometheus_parse::Scrape {
    let resp = c.get(d.at("/metrics")).send().await.expect("scrape");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ct").starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.expect("text");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// Every series in a scrape, as `name{labels}`.
fn series(s: &prometheus_parse::Scrape) -> std::collections::BTreeSet<String> {
    s.samples.iter().map(|m| format!("{}{}", m.metric, m.labels)).collect()
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn histogram_count(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Histogram(b) => b.last().map(|c| c.count as u64).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_a_finished_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    let before = scrape(&c, &d).await;
    assert_eq!(value(&before, "reelbox_jobs", &[("kind", "testcard"), ("state", "succeeded")]), 0.0);

    let resp = c
        .post(d.at("/api/v1/jobs"))
        .json(&json!({"kind": "testcard", "params": {"steps": 2, "step_ms": 10, "width": 32, "height": 32}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), 202);
    let job: serde_json::Value = resp.json().await.expect("json");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&c, &d, &id, Duration::from_secs(20), is_final).await;
    assert_eq!(done["state"], "succeeded");

    let mut after = scrape(&c, &d).await;
    for _ in 0..50 {
        // The collector follows the event stream; give it a moment after the final state.
        if value(&after, "reelbox_jobs_finished_total", &[("kind", "testcard")]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = scrape(&c, &d).await;
    }
    assert_eq!(value(&after, "reelbox_jobs", &[("kind", "testcard"), ("state", "succeeded")]), 1.0);
    assert_eq!(value(&after, "reelbox_jobs_finished_total", &[("kind", "testcard"), ("state", "succeeded")]), 1.0);
    assert!(histogram_count(&after, "reelbox_stage_duration_seconds", &[("kind", "testcard")]) >= 1);
    assert_eq!(value(&after, "reelbox_queue_depth", &[]), 0.0);
    // The data dir's disk as the daemon sees it, and the floor an alert compares with.
    let free = value(&after, "reelbox_disk_free_bytes", &[("dir", "data")]);
    assert!(free > 0.0 && free <= value(&after, "reelbox_disk_size_bytes", &[("dir", "data")]), "{free}");
    assert_eq!(value(&after, "reelbox_disk_min_free_bytes", &[]), f64::from(1u32 << 30));
    let submits = value(
        &after,
        "reelbox_http_requests_total",
        &[("method", "POST"), ("route", "/api/v1/jobs"), ("status", "202")],
    );
    assert_eq!(submits, 1.0, "requests are counted by route pattern, not raw path");
    assert!(
        value(&after, "reelbox_http_requests_total", &[("route", "/api/v1/jobs/:id")]) >= 1.0,
        "job polls counted under the pattern"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let c = reqwest::Client::new();
    let size = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.expect("scrape").text().await.expect("text").len()
    };
    // Warm up every label the junk will hit, then measure.
    for i in 0..3 {
        let m = reqwest::Method::from_bytes(format!("JUNK{i}").as_bytes()).expect("method");
        let _ = c.request(m, d.at(&format!("/nope/{i}"))).send().await.expect("junk");
    }
    // The first scrape adds the /metrics route's own series.
    let _ = size(c.clone(), d.at("/metrics")).await;
    let before = size(c.clone(), d.at("/metrics")).await;
    let series_before = series(&scrape(&c, &d).await);
    let rss_before = common::proc_status_kib(d.pid(), "VmRSS");
    // 10,000 requests with made-up methods and paths, eight clients at a time.
    let mut clients = Vec::new();
    for t in 0..8 {
        let (c, base) = (c.clone(), d.url.clone());
        clients.push(tokio::spawn(async move {
            for i in (3 + t..10_000).step_by(8) {
                let m = reqwest::Method::from_bytes(format!("JUNK{i}").as_bytes()).expect("method");
                let _ = c.request(m, format!("{base}/nope/{i}")).send().await.expect("junk");
            }
        }));
    }
    for t in clients {
        t.await.expect("client");
    }
    let after = size(c.clone(), d.at("/metrics")).await;
    // Counter values gain digits and gauges move; no new series may appear.
    assert!(after <= before + 1024, "/metrics grew from {before} to {after} bytes");
    let rss_after = common::proc_status_kib(d.pid(), "VmRSS");
    assert!(rss_after < rss_before + 16 * 1024, "the daemon grew from {rss_before} KiB to {rss_after} KiB");
    let s = scrape(&c, &d).await;
    // Only HTTP series could come from the junk; others (the telemetry sampler's first
    // readings on a loaded machine) may appear on their own schedule.
    let new: Vec<String> =
        series(&s).difference(&series_before).filter(|k| k.starts_with("reelbox_http")).cloned().collect();
    assert!(new.is_empty(), "the junk added HTTP series: {new:#?}");
    assert!(value(&s, "reelbox_http_requests_total", &[("method", "other")]) >= 9_990.0);
}

//! What a render shows while it runs and after, on the real daemon over HTTP with the tiny
//! fixture models: its percent weighs each stage by what it takes, its film downloads under
//! the script's first words and the job's short id, and a cancel shows where it stopped.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common;
use common::daemon::{DaemonProc, get_json, is_final, post_json, submit, wait_job};
use common::render::{daemon, models_dir, render_request};

const WAIT: Duration = Duration::from_secs(600);

fn stage<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["stages"].as_array().and_then(|s| s.iter().find(|s| s["name"] == name)).expect("stage")
}

/// A daemon on a temp dir running a presenter render of the tiny models: the dir (kept while
/// the test runs), the daemon, a client and the job's id.
async fn presenter_render() -> (tempfile::TempDir, DaemonProc, reqwest::Client, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path(), &models_dir(dir.path()));
    let c = reqwest::Client::new();
    let id = submit(&c, &d, render_request(&c, &d, false).await).await["id"].as_str().expect("id").to_string();
    (dir, d, c, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presenter_films_percent_weighs_its_lip_sync_and_it_downloads_under_its_words() {
    let (_dir, d, c, id) = presenter_render().await;

    // Plan, keyframes and narration done, motion not yet: a few seconds of a job whose
    // lip-sync takes the most. Counted 1/7 a stage it was at least 3/7 (43 %).
    let short_done =
        |j: &Value| is_final(j) || (stage(j, "narration")["state"] == "done" && stage(j, "motion")["state"] != "done");
    let job = wait_job(&c, &d, &id, WAIT, short_done).await;
    assert_eq!(job["state"], "running", "caught while it runs: {job}");
    let fraction = job["progress"]["fraction"].as_f64().expect("fraction");
    assert!(fraction < 0.4, "{fraction} done after the short stages: {job}");
    let head = stage(&job, "talking_head")["weight"].as_f64().expect("weight");
    assert!(head > stage(&job, "motion")["weight"].as_f64().expect("weight"), "{job}");

    let job = wait_job(&c, &d, &id, WAIT, is_final).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    // The script starts "A red circle on a blue background."; the id as `reelbox top` shows it.
    let name = format!("a-red-circle-on-a-{}.mp4", &id[id.len() - 8..]);
    let arts = get_json(&c, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let film = arts.as_array().and_then(|a| a.iter().find(|a| a["name"] == "film.mp4")).expect("film");
    assert_eq!(film["download_name"], name.as_str(), "{film}");
    let resp = c.get(d.at(film["url"].as_str().expect("url"))).send().await.expect("download");
    let disposition = resp.headers().get("content-disposition").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(disposition, Some(format!("inline; filename=\"{name}\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_render_shows_the_stage_it_stopped_in_and_a_retry_finishes_it() {
    let (_dir, d, c, id) = presenter_render().await;

    let moving =
        |j: &Value| is_final(j) || (j["progress"]["stage"] == "motion" && j["progress"]["step"].as_u64() >= Some(1));
    wait_job(&c, &d, &id, WAIT, moving).await;
    let (status, _) =
        post_json(&c, &d, &format!("/api/v1/jobs/{id}/cancel"), json!({"reason": "typo in scene 2"})).await;
    assert_eq!(status, 200);
    let job = wait_job(&c, &d, &id, WAIT, is_final).await;
    assert_eq!(job["state"], "canceled", "{job}");

    // The stage it was in says stopped, when, and how far it had come; none says pending.
    let stopped: Vec<&Value> =
        job["stages"].as_array().expect("stages").iter().filter(|s| s["state"] == "stopped").collect();
    assert_eq!(stopped.len(), 1, "one stage stopped: {job}");
    let at = stopped[0];
    assert!(at["started_at"].is_string() && at["finished_at"].is_string(), "{at}");
    assert_eq!(job["progress"]["stage"], at["name"], "{job}");
    if at["name"] == "motion" {
        assert!(job["progress"]["step"].as_u64() >= Some(1), "its progress is kept: {job}");
    }
    assert_eq!(stage(&job, "narration")["state"], "done", "{job}");

    // A retry runs the stopped stage again and finishes the film.
    let (status, _) = post_json(&c, &d, &format!("/api/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 200);
    let job = wait_job(&c, &d, &id, WAIT, |j| j["state"] == "succeeded" || j["state"] == "failed").await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let name = at["name"].as_str().expect("name");
    assert_eq!(stage(&job, name)["state"], "done", "{job}");
}

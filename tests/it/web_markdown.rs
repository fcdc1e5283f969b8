//! New film takes a script written in Markdown, in the tests' Chromium against the real
//! daemon with the demo models: a `.md` file opened in the page turns Markdown on, its
//! preview is the daemon's own plan (a heading is a title scene, no `#` or `*` anywhere),
//! Listen says the first scene without its marks, and the film is asked for as Markdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::web_studio::browser::{both_shots, browser, find, go, js, wait_js};
use crate::web_studio_forms::daemon;

const STORY: &str = "# My trip\n\nWe went to the *sea*. It was **cold**.\n\n- [x] pack\n- [ ] swim\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_markdown_file_opened_in_new_film_is_previewed_listened_to_and_rendered_as_markdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let story = dir.path().join("story.md");
    std::fs::write(&story, STORY).expect("story.md");
    let b = browser(&dir.path().join("downloads")).await;
    let c = &b.client;
    go(c, &d, "#/new", "#script-file").await;
    find(c, "#script-file").await.send_keys(story.to_str().expect("utf-8")).await.expect("open the file");
    let previewed = "const t = document.querySelector('ol.scenes').textContent; \
                     return document.getElementById('script-markdown').checked \
                       && document.querySelectorAll('ol.scenes li').length === 3 && t";
    let text = wait_js(c, "the daemon's plan", previewed, Duration::from_secs(10)).await;
    let text = text.as_str().unwrap_or_default();
    assert!(text.starts_with("Scene 1. Picture: My trip Spoken: My trip"), "{text}");
    assert!(text.contains("Spoken: We went to the sea. It was cold."), "{text}");
    assert!(!text.contains('#') && !text.contains('*'), "no marks in the preview: {text}");
    both_shots(c, "new-film-markdown").await;

    // Listen says the title scene, not "hash My trip".
    js(c, "[...document.querySelectorAll('form.film button')].find(b => b.textContent === 'Listen').click()").await;
    let t0 = Instant::now();
    let said = loop {
        let jobs: Value =
            http.get(d.at("/api/v1/jobs?kind=speech")).send().await.expect("jobs").json().await.expect("json");
        if let Some(job) = jobs["jobs"].as_array().and_then(|j| j.first()) {
            break job["params"]["text"].clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "Listen made no speech job: {jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(said, json!("My trip"));

    find(c, "form.film button[type=submit]").await.click().await.expect("render");
    wait_js(c, "the watch view", "return location.hash.startsWith('#/watch/')", Duration::from_secs(20)).await;
    let jobs: Value =
        http.get(d.at("/api/v1/jobs?kind=render")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    // Read as Markdown by the daemon: the film's script is the plain one it planned.
    let script = job["params"]["script"].as_str().unwrap_or_default();
    assert!(script.starts_with("My trip\n\nWe went to the sea. It was cold.") && !script.contains('#'), "{job}");
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(http.post(cancel).send().await.expect("cancel").status(), 200);
    b.client.clone().close().await.expect("close the browser");
}

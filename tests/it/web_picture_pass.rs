//! The web studio's Picture view with a second pass (the hires fix), in the tests' Chromium
//! against the real daemon with the demo models: the pass's choices, the strength shown only
//! with a pass, the picture drawn again at twice the size and shown and downloaded alone (not
//! beside the first pass's), and a strength the box refuses said at its own field.

use std::time::Duration;

use serde_json::{Value, json};

use crate::web_studio::browser::{both_shots, browser, find, go, js, wait_js};
use crate::web_studio_forms::{daemon, downloaded, png_size};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_draws_the_picture_again_larger_and_shows_only_that_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    let strength_shown = "return !document.getElementById('pic-strength').closest('.field').hidden";
    assert_eq!(js(c, strength_shown).await, json!(false), "no strength to set without a second pass");
    let passes = js(c, "return [...document.querySelectorAll('#pic-pass option')].map(o => o.value)").await;
    assert_eq!(passes, json!(["", "1.5", "2"]));
    find(c, "#pic-pass").await.select_by_value("2").await.expect("pick 2x");
    assert_eq!(js(c, strength_shown).await, json!(true), "the strength is asked once a pass is picked");
    find(c, "#pic-size").await.select_by_value("256").await.expect("size");
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    both_shots(c, "picture-second-pass").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let shown = wait_js(
        c,
        "the picture",
        "const i = [...document.querySelectorAll('.picture-view .result img.picture')]; \
         return i.length > 0 && i.every(p => p.complete && p.naturalWidth > 0) \
           && i.map(p => [p.naturalWidth, p.naturalHeight])",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(shown, json!([[512, 512]]), "one picture, the second pass's, at twice the size");
    let jobs: Value = http.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    let stages: Vec<&str> =
        job["stages"].as_array().expect("stages").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!((&job["state"], stages), (&json!("succeeded"), vec!["generate", "refine"]), "{job}");
    assert_eq!(job["params"]["refine"]["strength"], json!(0.5), "the strength's default: {job}");
    let label =
        js(c, "return [...document.querySelectorAll('.picture-view a[download]')].map(a => a.textContent)").await;
    assert_eq!(label, json!(["Download PNG"]), "one download, the picture shown");
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    assert_eq!(png_size(&downloaded(&downloads, "png").await), (512, 512), "the second pass's PNG");

    // A strength the box refuses is said at its field, by the field's label.
    find(c, "#pic-again").await.click().await.expect("make another");
    assert_eq!(js(c, "return document.getElementById('pic-pass').value").await, "2", "the pass is kept");
    assert_eq!(js(c, strength_shown).await, json!(true), "and its strength shown again");
    let strength = find(c, "#pic-strength").await;
    strength.clear().await.expect("clear");
    strength.send_keys("2").await.expect("type");
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the refusal",
        "const s = document.querySelector('#pic-strength-error'); return s && s.textContent",
        Duration::from_secs(20),
    )
    .await;
    let said = said.as_str().unwrap_or_default();
    assert!(said.starts_with("Second pass changes (0.05–1): "), "said by the field's label: {said}");
    assert!(said.contains("at most 1"), "with what it takes: {said}");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-strength", "the focus is on the field to mend");
    b.client.clone().close().await.expect("close the browser");
}

//! The web studio's Picture view with its second pass on another model (A1111's "Hires
//! checkpoint"), in the tests' Chromium against the real daemon with two tiny SD models,
//! `tiny-sd` and its "fine-tune" `tiny-sd-2`: "Second pass model" is asked only with a pass,
//! offers "Same model" and the other installed model, follows the picture's model, is picked
//! and labelled by keyboard, sends `refine.model` (the picture's PNG text then says `Hires
//! checkpoint`, and its result and Library card say the model), and "Same model" sends none;
//! it is kept between visits, a model gone since the page loaded is refused at that field,
//! and on a 320 px phone at twice the text size the view still fits. Before, there was no
//! such choice: the second pass always ran on the picture's model.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::Client;
use fantoccini::key::Key;
use serde_json::{Value, json};

use common::compat::TINY_SD;

use crate::hires_checkpoint::TINY_SD_2;
use crate::web_a11y::ax::{controls, press, tab_to};
use crate::web_picture_settings::parameters_text;
use crate::web_studio::browser::{Browser, both_shots, browser, browser_with, find, go, js, shot, wait_js};
use crate::web_studio_forms::{daemon_over, downloaded};

/// Links fixture model `name` into `models`.
pub(crate) fn link(models: &Path, name: &str) {
    let from = common::fixture(&format!("models/{name}"));
    std::os::unix::fs::symlink(&from, models.join(name)).expect("link a fixture model");
}

/// The studio over both tiny models: the test's folder (gone when it is dropped), its models
/// dir and the browser's downloads in it, the daemon, a plain HTTP client and the browser.
pub(crate) struct TwoModels {
    pub dir: tempfile::TempDir,
    pub models: PathBuf,
    pub downloads: PathBuf,
    pub d: common::daemon::DaemonProc,
    pub http: reqwest::Client,
    pub b: Browser,
}

/// Starts [`TwoModels`].
pub(crate) async fn two_models() -> TwoModels {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    for name in [TINY_SD, TINY_SD_2] {
        link(&models, name);
    }
    let d = daemon_over(dir.path(), &models);
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    TwoModels { dir, models, downloads, d, http: reqwest::Client::new(), b }
}

/// The second pass's model choice: its value and its choices' values.
const PASS_MODEL: &str = "const s = document.getElementById('pic-pass-model'); \
     return [s.value, [...s.options].map(o => o.value)]";

/// Whether the second pass's model is shown.
const SHOWN: &str = "return !document.getElementById('pic-pass-model').closest('.field').hidden";

/// Makes the picture the form is set for and waits for its result; the newest image job.
pub(crate) async fn make(c: &Client, http: &reqwest::Client, d: &common::daemon::DaemonProc) -> Value {
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    wait_js(
        c,
        "the picture",
        "const i = [...document.querySelectorAll('.picture-view .result img.picture')]; \
         return i.length > 0 && i.every(p => p.complete && p.naturalWidth > 0)",
        Duration::from_secs(120),
    )
    .await;
    let jobs: Value = http.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let job = jobs["jobs"][0].clone();
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

/// What the shown result says of its second pass's model (null when nothing).
const SAYS: &str = "const p = document.querySelector('.picture-view .result .pass-model'); return p && p.textContent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_on_another_model_is_picked_sent_and_said() {
    let TwoModels { dir: _dir, models, downloads, d, http, b } = two_models().await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-model").await.select_by_value(TINY_SD).await.expect("pick tiny-sd");
    assert_eq!(js(c, SHOWN).await, json!(false), "no second pass model to pick without a pass");
    let named =
        || async { controls(c).await.into_iter().filter(|(_, n)| n == "Second pass model").collect::<Vec<_>>() };
    assert_eq!(named().await, vec![], "nor heard by a screen reader");

    // By keyboard: the pass, then its model, each picked with the arrow keys.
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    tab_to(c, "Second pass", 20).await;
    press(c, &[Key::Down]).await;
    assert_eq!(js(c, "return document.getElementById('pic-pass').value").await, "1.5", "1.5× by the arrow key");
    assert_eq!(js(c, SHOWN).await, json!(true), "asked once a pass is picked");
    assert_eq!(named().await, vec![("combobox".to_string(), "Second pass model".to_string())], "labelled");
    assert_eq!(js(c, PASS_MODEL).await, json!(["", ["", TINY_SD_2]]), "\"Same model\" and the other installed one");
    let same = js(c, "return document.querySelector('#pic-pass-model option').textContent").await;
    assert_eq!(same, "Same model", "the default sends nothing");
    let at = tab_to(c, "Second pass model", 3).await;
    assert!(at.starts_with("select#pic-pass-model"), "{at}");
    press(c, &[Key::Down]).await;
    assert_eq!(js(c, PASS_MODEL).await, json!([TINY_SD_2, ["", TINY_SD_2]]), "tiny-sd-2 by the arrow key");

    // It follows the picture's model: the picture's own is never its second pass's choice.
    find(c, "#pic-model").await.select_by_value(TINY_SD_2).await.expect("pick tiny-sd-2");
    assert_eq!(js(c, PASS_MODEL).await, json!(["", ["", TINY_SD]]), "the same model is \"Same model\"");
    find(c, "#pic-model").await.select_by_value(TINY_SD).await.expect("back to tiny-sd");
    find(c, "#pic-pass-model").await.select_by_value(TINY_SD_2).await.expect("tiny-sd-2 again");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    js(c, "document.querySelector('details.more').open = true").await;
    find(c, "#pic-steps").await.send_keys("2").await.expect("steps");
    both_shots(c, "picture-second-pass-model").await;

    let job = make(c, &http, &d).await;
    assert_eq!(job["params"]["refine"]["model"], TINY_SD_2, "{job}");
    assert_eq!(job["params"]["model"], TINY_SD, "{job}");
    let drawn = format!("Drawn with {TINY_SD}, its second pass with {TINY_SD_2}.");
    assert_eq!(js(c, SAYS).await, json!(drawn), "the result says the second pass's model");
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    let text = parameters_text(&downloaded(&downloads, "png").await);
    assert!(text.contains(&format!("Hires checkpoint: {TINY_SD_2},")), "{text}");
    let first = job["id"].as_str().expect("an id").to_string();

    // Kept on "Make another" and between visits.
    find(c, "#pic-again").await.click().await.expect("make another");
    assert_eq!(js(c, PASS_MODEL).await, json!([TINY_SD_2, ["", TINY_SD_2]]), "kept on Make another");
    go(c, &d, "#/box", "table tbody tr").await;
    go(c, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(c, PASS_MODEL).await, json!([TINY_SD_2, ["", TINY_SD_2]]), "kept between visits");
    assert_eq!(js(c, SHOWN).await, json!(true));

    // "Same model" sends none, and the result says nothing of one.
    find(c, "#pic-pass-model").await.select_by_value("").await.expect("same model");
    let job = make(c, &http, &d).await;
    assert_ne!(job["id"], json!(first), "a new job");
    assert_eq!(job["params"]["refine"].get("model"), None, "{job}");
    assert_eq!(js(c, SAYS).await, Value::Null, "nothing to say");

    // The Library's card says it too, on the picture that had one only.
    go(c, &d, "#/library", "#lib-kind").await;
    find(c, "#lib-kind").await.select_by_value("image").await.expect("pictures");
    let card = |id: &str| {
        format!("const p = document.querySelector(\"[data-job='{id}'] .pass-model\"); return p && p.textContent")
    };
    wait_js(
        c,
        "the library card",
        &format!("return !!document.querySelector(\"[data-job='{first}'] img\")"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(js(c, &card(&first)).await, json!(drawn), "the Library says the second pass's model");
    assert_eq!(js(c, &card(job["id"].as_str().unwrap_or_default())).await, Value::Null);

    // A model removed since the page loaded is refused at its field, by its label.
    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-pass-model").await.select_by_value(TINY_SD_2).await.expect("tiny-sd-2");
    std::fs::remove_file(models.join(TINY_SD_2)).expect("remove tiny-sd-2");
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the refusal",
        "const s = document.querySelector('#pic-pass-model-error'); return s && s.textContent",
        Duration::from_secs(20),
    )
    .await;
    let said = said.as_str().unwrap_or_default();
    assert!(said.starts_with("Second pass model: "), "said by the field's label: {said}");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-pass-model", "the focus is on the field to mend");
    link(&models, TINY_SD_2);
    b.client.clone().close().await.expect("close the browser");

    // On a 320 px phone at twice the text size, with the pass and its model shown, nothing is wider than the screen.
    let large = browser_with(&downloads, json!({"webkit": {"webprefs": {"default_font_size": 32}}})).await;
    let p = &large.client;
    go(p, &d, "#/picture", "#pic-prompt").await;
    find(p, "#pic-pass").await.select_by_value("2").await.expect("a pass");
    assert_eq!(js(p, SHOWN).await, json!(true));
    shot(p, "a11y-large-text-picture-pass-model", 320, 740).await;
    // Shown again scrolled to the choice, at the phone's size now.
    js(p, "document.getElementById('pic-pass-model').closest('.field').scrollIntoView()").await;
    shot(p, "a11y-large-text-picture-pass-model", 320, 740).await;
    let read =
        js(p, "return [getComputedStyle(document.body).fontSize, document.documentElement.scrollWidth - innerWidth]")
            .await;
    assert_eq!(read[0], "32px", "the reader's text size");
    assert!(read[1].as_i64().unwrap_or(1) <= 0, "the picture view is {} px wider than the phone", read[1]);
    let wide = "const s = document.getElementById('pic-pass-model'); const r = s.getBoundingClientRect(); \
                return r.width > 0 && r.right <= innerWidth";
    assert_eq!(js(p, wide).await, json!(true), "the choice itself fits");
    large.client.clone().close().await.expect("close the browser");
}

//! The web studio's Picture view with "More settings" (steps, guidance, sampler, schedule,
//! clip skip),
//! in the tests' Chromium against the real daemon with the demo models: folded away until
//! opened by keyboard; the samplers and schedules the box lists (`GET /api/v1/samplers`)
//! with the names A1111 users know; each left empty says the picked model's own and follows
//! a change of model; what is set reaches the job and the picture's PNG text, is kept on
//! "Make another" and between visits; a refusal is said at its field, opened if folded; and
//! on a 320 px phone at twice the text size the view still fits.

use crate::common;

use std::io::Cursor;
use std::time::Duration;

use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::web_a11y::ax::{press, tab_to, tree};
use crate::web_studio::browser::{both_shots, browser, browser_with, find, go, js, shot, wait_js};
use crate::web_studio::demo_models;
use crate::web_studio_forms::{daemon_over, downloaded};

/// The `parameters` text chunk of a PNG, as A1111 reads it.
pub(crate) fn parameters_text(bytes: &[u8]) -> String {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().expect("a PNG");
    let text =
        reader.info().uncompressed_latin1_text.iter().find(|c| c.keyword == "parameters").map(|c| c.text.clone());
    text.expect("a parameters text chunk")
}

/// What the settings say now: the placeholders of steps and guidance, the sampler's first
/// choice, and the three's hints (which wrap, where a phone cuts a placeholder).
const SAID: &str = "const e = (id) => document.getElementById(id); \
     return [e('pic-steps').placeholder, e('pic-guidance').placeholder, e('pic-sampler').options[0].textContent, \
       ...['pic-steps-hint', 'pic-guidance-hint', 'pic-sampler-hint'].map(i => e(i).textContent)]";

/// Whether "More settings" is open.
const OPEN: &str = "return document.querySelector('details.more').open";

/// What the settings say for model `m` as `/api/v1/models` lists it, the sampler by its label in `samplers`.
fn said_for(m: &Value, samplers: &Value) -> Value {
    let label = samplers["samplers"].as_array().expect("samplers").iter().find(|s| s["name"] == m["default_scheduler"]);
    let label = label.unwrap_or_else(|| panic!("{m}: its sampler is not listed: {samplers}"))["label"].clone();
    let label = label.as_str().unwrap_or_default();
    // As the page writes a number: 7, not 7.0.
    let (steps, guidance) = (&m["default_steps"], m["default_guidance"].as_f64().expect("guidance"));
    json!([
        format!("Model default: {steps}"),
        format!("Model default: {guidance}"),
        format!("Model default ({label})"),
        format!("More steps add detail and take longer. Left empty: {steps}, the model's own."),
        format!("How closely the picture follows the prompt. Left empty: {guidance}, the model's own."),
        format!("How each step draws. Left empty: {label}, the model's own."),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_settings_reach_the_picture_and_say_each_models_own_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models(dir.path());
    // A Turbo model draws with 1 step and no guidance: its defaults are not the demo's.
    common::byo::sdxl_at_1024(&models, "sdxl-turbo");
    let d = daemon_over(dir.path(), &models);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = d.at(path);
        async move { http.get(url).send().await.expect("get").json::<Value>().await.expect("json") }
    };
    let samplers = get("/api/v1/samplers").await;
    let listed = get("/api/v1/models").await;
    let model = |name: &str| {
        let m = listed["models"].as_array().expect("models").iter().find(|m| m["name"] == name).cloned();
        m.unwrap_or_else(|| panic!("{name} is not listed: {listed}"))
    };
    let (demo, turbo) = (model("demo-shapes"), model("sdxl-turbo"));
    assert_ne!(said_for(&demo, &samplers), said_for(&turbo, &samplers), "{demo} {turbo}");

    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;
    go(c, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(c, OPEN).await, json!(false), "folded away until asked for");
    assert_eq!(js(c, "return document.getElementById('pic-steps').checkVisibility()").await, json!(false));

    // The choices are the box's own, each with the name people know it by.
    let options =
        |id: &str| format!("return [...document.querySelectorAll('#{id} option')].map(o => [o.value, o.textContent])");
    let offered = js(c, &options("pic-sampler")).await;
    let mut want = vec![json!(["", said_for(&demo, &samplers)[2]])];
    want.extend(samplers["samplers"].as_array().expect("samplers").iter().map(|s| json!([s["name"], s["label"]])));
    assert_eq!(offered, Value::Array(want), "{samplers}");
    assert!(offered.as_array().into_iter().flatten().any(|o| o[1] == "DPM++ 2M"), "{offered}");
    let schedules = js(c, &options("pic-schedule")).await;
    let names: Vec<&Value> = schedules.as_array().expect("options").iter().map(|o| &o[0]).collect();
    assert_eq!(json!(names), json!(["", "normal", "karras", "exponential", "sgm_uniform", "simple"]));
    assert_eq!(schedules[2][1], "Karras");

    // Opened by keyboard: Tab to it, Enter; a screen reader hears it as folded, then open.
    find(c, "#pic-prompt").await.click().await.expect("focus the prompt");
    let at = tab_to(c, "More settings", 20).await;
    assert!(at.starts_with("summary"), "{at}");
    let disclosure = || async {
        let nodes = tree(c).await;
        let node = nodes.into_iter().find(|n| n.name == "More settings");
        node.map(|n| n.prop("expanded").clone()).expect("More settings in the accessibility tree")
    };
    assert_eq!(disclosure().await, json!(false), "said as folded");
    press(c, &[Key::Enter]).await;
    assert_eq!(js(c, OPEN).await, json!(true), "Enter opens it");
    assert_eq!(disclosure().await, json!(true), "said as open");

    // Each empty setting says the picked model's own, and follows the model.
    assert_eq!(js(c, SAID).await, said_for(&demo, &samplers));
    find(c, "#pic-model").await.select_by_value("sdxl-turbo").await.expect("pick the Turbo model");
    assert_eq!(js(c, SAID).await, said_for(&turbo, &samplers));
    find(c, "#pic-model").await.select_by_value("demo-shapes").await.expect("back to the demo");
    assert_eq!(js(c, SAID).await, said_for(&demo, &samplers));

    find(c, "#pic-size").await.select_by_value("256").await.expect("size");
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    find(c, "#pic-steps").await.send_keys("3").await.expect("steps");
    find(c, "#pic-guidance").await.send_keys("2").await.expect("guidance");
    find(c, "#pic-sampler").await.select_by_value("euler_a").await.expect("sampler");
    find(c, "#pic-schedule").await.select_by_value("karras").await.expect("schedule");
    both_shots(c, "picture-more-settings").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    wait_js(
        c,
        "the picture",
        "const i = [...document.querySelectorAll('.picture-view .result img.picture')]; \
         return i.length > 0 && i.every(p => p.complete && p.naturalWidth > 0)",
        Duration::from_secs(90),
    )
    .await;
    let jobs = get("/api/v1/jobs?kind=image").await;
    let job = &jobs["jobs"][0];
    let p = &job["params"];
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        (&p["steps"], &p["guidance"], &p["scheduler"], &p["schedule"]),
        (&json!(3), &json!(2.0), &json!("euler_a"), &json!("karras")),
        "{job}"
    );
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    let text = parameters_text(&downloaded(&downloads, "png").await);
    for said in ["Steps: 3,", "Sampler: Euler a,", "Schedule type: Karras,", "CFG scale: 2,"] {
        assert!(text.contains(said), "the PNG says {said:?}: {text}");
    }

    // "Make another" keeps them, and so does the next visit, opened to show them.
    find(c, "#pic-again").await.click().await.expect("make another");
    let values = "return ['pic-steps', 'pic-guidance', 'pic-sampler', 'pic-schedule'].map(i => document.getElementById(i).value)";
    assert_eq!(js(c, values).await, json!(["3", "2", "euler_a", "karras"]), "kept on Make another");
    go(c, &d, "#/box", "table tbody tr").await;
    go(c, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(c, values).await, json!(["3", "2", "euler_a", "karras"]), "kept between visits");
    assert_eq!(js(c, OPEN).await, json!(true), "open, so what is set is seen");

    // A refusal is said at its field, by its label, the settings opened when folded away.
    js(c, "document.querySelector('details.more').open = false").await;
    let steps = find(c, "#pic-steps").await;
    js(c, "document.getElementById('pic-steps').value = '500'").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the steps' refusal",
        "return document.querySelector('#pic-steps-error').textContent",
        Duration::from_secs(20),
    )
    .await;
    assert!(said.as_str().is_some_and(|s| s.starts_with("Steps: ") && s.contains("150")), "{said}");
    assert_eq!(js(c, OPEN).await, json!(true), "opened to show the refusal");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-steps", "the focus is on the field to mend");
    steps.clear().await.expect("clear");
    steps.send_keys("3").await.expect("steps");
    // LCM samples by its own schedule: asked with Karras, the schedule is what is refused.
    find(c, "#pic-sampler").await.select_by_value("lcm").await.expect("lcm");
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the schedule's refusal",
        "return document.querySelector('#pic-schedule-error').textContent",
        Duration::from_secs(20),
    )
    .await;
    assert!(said.as_str().is_some_and(|s| s.starts_with("Schedule: ") && s.contains("lcm")), "{said}");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-schedule");
    // The demo model gives its own text encoder layer only (as `GET /api/v1/models` says):
    // clip skip past it is not offered, and the hint says how to get a model that reads at any.
    assert_eq!((&demo["default_clip_skip"], &demo["max_clip_skip"]), (&json!(1), &json!(1)), "{demo}");
    let offered = "return [...document.getElementById('pic-clip-skip').options].map(o => [o.value, o.disabled])";
    assert_eq!(
        js(c, offered).await,
        json!([["", false], ["1", false], ["2", true], ["3", true], ["4", true]]),
        "past the demo model's own layer, nothing offered"
    );
    let hint = js(c, "return document.getElementById('pic-clip-skip-hint').textContent").await;
    assert!(hint.as_str().is_some_and(|h| h.contains("import its checkpoint")), "{hint}");
    // SDXL reads at its penultimate layer by its own, and at any its encoder has (the tiny
    // one's 3).
    find(c, "#pic-model").await.select_by_value("sdxl-turbo").await.expect("pick the Turbo model");
    let own = "return document.getElementById('pic-clip-skip').options[0].textContent";
    assert_eq!(js(c, own).await, "Model default (2)");
    assert_eq!(js(c, offered).await, json!([["", false], ["1", false], ["2", false], ["3", false], ["4", true]]));
    b.client.clone().close().await.expect("close the browser");

    // On a 320 px phone at twice the text size, open, the view is no wider than the screen.
    let large = browser_with(&downloads, json!({"webkit": {"webprefs": {"default_font_size": 32}}})).await;
    let p = &large.client;
    go(p, &d, "#/picture", "#pic-prompt").await;
    js(p, "document.querySelector('details.more').open = true").await;
    shot(p, "a11y-large-text-picture-settings", 320, 740).await;
    // Shown again scrolled to the settings, at the phone's size now.
    js(p, "document.querySelector('details.more').scrollIntoView()").await;
    shot(p, "a11y-large-text-picture-settings", 320, 740).await;
    let read =
        js(p, "return [getComputedStyle(document.body).fontSize, document.documentElement.scrollWidth - innerWidth]")
            .await;
    assert_eq!(read[0], "32px", "the reader's text size");
    assert!(read[1].as_i64().unwrap_or(1) <= 0, "the picture view is {} px wider than the phone", read[1]);
    large.client.clone().close().await.expect("close the browser");
}

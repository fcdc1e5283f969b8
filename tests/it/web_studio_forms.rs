//! The web studio's Picture and Speech views, New film's model choices and its plain words
//! for the daemon's refusals, in the tests' Chromium against the real daemon with the demo
//! models (the harness of `web_studio`): a picture from the tiny demo model appears and
//! downloads as a PNG of the asked size; picking a model picks its own size (1024 for
//! SDXL); a film's lip-sync and upscale models are picked among the installed ones, and a
//! profile's too, which New film then picks; a profile whose voice is gone is said as the
//! profile's, under its choice, and another voice picked there renders; a line
//! is spoken, plays and downloads as WAV; a model that is not installed
//! and a client key over its quota are said in one plain sentence with the daemon's own
//! message under "Details".

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::DaemonProc;
use common::provision;
use fantoccini::Client;
use serde_json::{Value, json};

use crate::web_studio::browser::{both_shots, browser, find, go, js, log_in, wait_js};
use crate::web_studio::demo_models;

/// A daemon over the demo models (demo-shapes, the joe voice) in `dir`.
pub(crate) fn daemon(dir: &Path) -> DaemonProc {
    daemon_over(dir, &demo_models(dir))
}

/// A daemon in `dir` over `models`.
pub(crate) fn daemon_over(dir: &Path, models: &Path) -> DaemonProc {
    let runtime = provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
    ];
    DaemonProc::start(&dir.join("data"), &env)
}

/// The bytes of the one file the browser downloads into `dir` whose name ends in `ext`.
pub(crate) async fn downloaded(dir: &Path, ext: &str) -> Vec<u8> {
    let t0 = Instant::now();
    loop {
        let done: Vec<_> = std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect())
            .unwrap_or_default();
        if let [file] = done.as_slice() {
            let bytes = std::fs::read(file).expect("read the download");
            if !bytes.is_empty() {
                return bytes;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no .{ext} downloaded into {}", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Width and height of a PNG from its header.
pub(crate) fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let side = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (side(16), side(20))
}

/// Opens the Library on everything and waits for job `id`'s card to show `what`.
async fn in_library(c: &Client, d: &DaemonProc, id: &str, what: &str) {
    go(c, d, "#/library", "#lib-kind").await;
    find(c, "#lib-kind").await.select_by_value("").await.expect("everything");
    let card = format!("return !!document.querySelector(\"[data-job='{id}'] {what}\")");
    wait_js(c, "the library card", &card, Duration::from_secs(10)).await;
}

/// The refusal shown in `slot` (a CSS selector): its sentence, and the Details text once opened.
pub(crate) async fn refusal(c: &Client, slot: &str) -> (String, String) {
    let said = wait_js(
        c,
        "the refusal",
        &format!("const s = document.querySelector('{slot} .said'); return s && s.textContent"),
        Duration::from_secs(20),
    )
    .await;
    find(c, &format!("{slot} details summary")).await.click().await.expect("open Details");
    let details = js(
        c,
        &format!(
            "const d = document.querySelector('{slot} details'); return d.open && d.querySelector('p').textContent"
        ),
    )
    .await;
    (said.as_str().unwrap_or_default().to_string(), details.as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_is_made_in_the_page_downloads_as_a_png_of_its_size_and_a_missing_model_is_said_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    // A presenter whose picture model the catalog knows but the box has not pulled.
    let resp = http.post(d.at("/api/v1/profiles")).json(&json!({"name": "Grandpa", "image_model": "sd-turbo"})).send();
    let grandpa: Value = resp.await.expect("profile").json().await.expect("json");
    let grandpa = grandpa["id"].as_str().unwrap_or_else(|| panic!("a profile: {grandpa}")).to_string();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    let nav = js(c, "return [...document.querySelectorAll('nav a')].slice(0, 4).map(a => a.textContent)").await;
    assert_eq!(nav, json!(["New film", "Picture", "Photo", "Speech"]), "Picture sits beside New film");
    let picked = js(c, "return document.getElementById('pic-model').value").await;
    assert_eq!(picked, "demo-shapes", "the default diffusion model `models list` tags is picked");
    let sizes = js(c, "return [...document.querySelectorAll('#pic-size option')].map(o => o.value)").await;
    assert_eq!(sizes, json!(["256", "512", "768"]), "the sizes the film form offers");
    find(c, "#pic-size").await.select_by_value("256").await.expect("size");
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    both_shots(c, "picture").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    // Progress as Watch shows it, then the picture large.
    wait_js(
        c,
        "the progress card",
        "return !!document.querySelector('.picture-view .watch #percent')",
        Duration::from_secs(20),
    )
    .await;
    let shown = wait_js(
        c,
        "the picture",
        "const i = document.querySelector('.picture-view .result img.picture'); \
         return i && i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!((shown[0].as_u64(), shown[1].as_u64()), (Some(256), Some(256)), "{shown}");
    let jobs: Value = http.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    assert_eq!(
        (&job["state"], &job["params"]["model"], &job["params"]["seed"]),
        (&json!("succeeded"), &json!("demo-shapes"), &json!(7)),
        "{job}"
    );
    both_shots(c, "picture-done").await;
    let wide =
        js(c, "return document.querySelector('.picture-view .result img.picture').getBoundingClientRect().width").await;
    assert!(wide.as_f64().unwrap_or(0.0) > 256.0, "the picture is shown large on a desktop: {wide} px");
    let label = js(c, "return document.querySelector('.picture-view a[download]').textContent").await;
    assert_eq!(label, "Download PNG");
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    let png = downloaded(&downloads, "png").await;
    assert_eq!(png_size(&png), (256, 256), "a PNG of the asked size");

    // "Make another" brings the form back as it was.
    find(c, "#pic-again").await.click().await.expect("make another");
    let kept =
        js(c, "return ['pic-prompt', 'pic-seed', 'pic-model'].map(id => document.getElementById(id).value)").await;
    assert_eq!(kept, json!(["a red circle on a blue background", "7", "demo-shapes"]), "the fields are kept");

    // The profile brings its picture model, which is not installed: one plain sentence at
    // the field, and the daemon's words under Details.
    find(c, "#pic-profile").await.select_by_value(&grandpa).await.expect("pick the profile");
    assert_eq!(js(c, "return document.getElementById('pic-model').value").await, "sd-turbo");
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let (said, details) = refusal(c, "#pic-model-error").await;
    assert_eq!(
        said,
        "Picture model: “sd-turbo” is not on the box yet. Ask whoever runs the box to install it (Box, then Pull).",
        "the refusal in plain words"
    );
    assert!(details.contains("`reelbox pull sd-turbo`"), "the daemon's message under Details: {details}");
    both_shots(c, "picture-refused").await;

    // The picture is in the Library like any other.
    let id = job["id"].as_str().expect("id");
    in_library(c, &d, id, "img.picture").await;

    // A job that fails says so, its error in full (not cut off in the status line) and its
    // stage by name, the daemon's words under Details.
    let failed = common::daemon::submit_testcard(&http, &d, json!({"steps": 1, "fail": "fatal"})).await;
    go(c, &d, &format!("#/watch/{failed}"), "#job-state").await;
    let (said, details) = refusal(c, ".watch .failure").await;
    assert_eq!(said, "Test card: testcard asked to fail", "a failed job's error is shown");
    assert_eq!(details, "stage card: testcard asked to fail");
    assert_eq!(js(c, "return document.querySelector('.watch .message').textContent").await, "Failed.");
    b.client.clone().close().await.expect("close the browser");
}

/// Refusals by code as the page words them (the daemon's message stays under Details).
const CODES: &str = "const done = arguments[arguments.length - 1]; import('/web/words.js').then(m => done([\
    {code: 'runtime_missing', status: 409, message: 'ONNX Runtime not found (searched …)'},\
    {code: 'queue_full', status: 429, message: 'queue full', retryAfter: 5},\
    {code: 'rate_limited', status: 429, message: 'rate', retryAfter: 2},\
    {code: 'body_too_large', status: 413, message: 'request body is larger than limits.max_body_bytes'},\
    {code: 'quota_exceeded', status: 413, message: 'storage'},\
    {code: 'disk_low', status: 507, message: 'the disk holding the data dir (/var/lib/reelbox) has 412.0 MB free'},\
    {code: 'admin_only', status: 403, message: 'this needs an admin key'},\
    {code: 'name_taken', status: 409, field: 'name', message: 'a profile named \"anna\" already exists (id 01J)'},\
    {code: 'session_expired', status: 401, message: 'the session has ended'},\
    {code: 'unreachable', status: 0, message: 'x'},\
    {code: 'internal', status: 500, message: 'disk I/O error'},\
    {code: '', status: 502, message: 'Bad Gateway'},\
    {code: 'invalid_param', status: 400, field: 'voice', message: 'voice: no tts model \"en_US-joe-medum\" is installed or in the catalog (did you mean en_US-joe-medium?); installed: x'},\
    {code: 'some_new_code', status: 409, message: 'the daemon says this'},\
    {code: 'invalid_param', status: 400, field: 'model', message: 'model: worded otherwise',\
     model: {kind: 'upscale', name: 'realesrgan-x4', state: 'not_installed', pull: 'realesrgan-x4'}},\
  ].map(e => m.plainError(e).text)))";

/// Picking a model picks the size it was trained at, as the CLI draws it: an SDXL model 1024
/// on Picture and New film (the studio set 512 and offered nothing above 768), the demo
/// model 256; on offer are the usual three sizes and each installed model's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picking_an_sdxl_model_picks_its_own_size_1024_on_picture_and_new_film() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models(dir.path());
    common::byo::sdxl_at_1024(&models, "sdxl-base");
    let d = daemon_over(dir.path(), &models);
    let http = reqwest::Client::new();
    let b = browser(&dir.path().join("downloads")).await;
    let c = &b.client;
    for (route, model, size) in [("#/picture", "#pic-model", "#pic-size"), ("#/new", "#model", "#size")] {
        go(c, &d, route, size).await;
        let options = format!("return [...document.querySelectorAll('{size} option')].map(o => o.value)");
        assert_eq!(js(c, &options).await, json!(["256", "512", "768", "1024"]), "{route}");
        let picked = format!(
            "const s = document.querySelector('{size}'); \
             return [document.querySelector('{model}').value, s.value, s.selectedOptions[0].textContent]"
        );
        assert_eq!(js(c, &picked).await, json!(["demo-shapes", "256", "256 × 256 (fast)"]), "{route}");
        find(c, model).await.select_by_value("sdxl-base").await.expect("pick SDXL");
        let own = json!(["sdxl-base", "1024", "1024 × 1024 (the model's own size)"]);
        assert_eq!(js(c, &picked).await, own, "{route}");
        find(c, model).await.select_by_value("demo-shapes").await.expect("back to the demo");
        assert_eq!(js(c, &picked).await, json!(["demo-shapes", "256", "256 × 256 (fast)"]), "{route}");
    }
    // The picture asked for is drawn at that size.
    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-model").await.select_by_value("sdxl-base").await.expect("pick SDXL");
    find(c, "#pic-prompt").await.send_keys("a red circle").await.expect("type");
    both_shots(c, "picture-sdxl").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let job = wait_js(
        c,
        "the job",
        "return document.querySelector('.picture-view .watch #percent') !== null",
        Duration::from_secs(20),
    );
    job.await;
    let jobs: Value = http.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    let p = &job["params"];
    assert_eq!((&p["model"], &p["width"], &p["height"]), (&json!("sdxl-base"), &json!(1024), &json!(1024)), "{job}");
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(http.post(cancel).send().await.expect("cancel").status(), 200);
}

/// The demo models with the demo upscaler, beside a user's imported `wav2lip_gan` and
/// `4x-UltraSharp` (the tiny fixtures under those names).
fn demo_models_with_imports(dir: &Path) -> std::path::PathBuf {
    let models = demo_models(dir);
    common::copy_dir(&common::source_tree().join("models/demo/upscaler"), &models.join("demo-upscaler"));
    let fixtures = common::fixture("models");
    common::tools::import_bare(dir, &models, "wav2lip_gan", "lipsync", &fixtures.join("tiny-wav2lip"));
    common::tools::import_bare(dir, &models, "4x-UltraSharp", "upscale", &fixtures.join("tiny-esrgan-x4"));
    models
}

/// New film chooses its lip-sync and upscale models among the installed ones, the box's
/// default picked: it had only an "Upscale" checkbox, so a user's imported wav2lip_gan and
/// 4x-UltraSharp were never used while the built-in demo models were installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_film_picks_its_lipsync_and_upscale_models_among_the_installed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models_with_imports(dir.path());
    let d = daemon_over(dir.path(), &models);
    let http = reqwest::Client::new();
    let b = browser(&dir.path().join("downloads")).await;
    let c = &b.client;
    go(c, &d, "#/new", "#upscale-model").await;
    let choice = |id: &str| {
        format!(
            "const s = document.getElementById('{id}'); \
             return [s.value, [...s.options].map(o => o.textContent)]"
        )
    };
    let lipsync = js(c, &choice("lipsync-model")).await;
    assert_eq!(lipsync, json!(["demo-presenter", ["demo-presenter (default)", "wav2lip_gan"]]));
    let upscale = js(c, &choice("upscale-model")).await;
    assert_eq!(upscale, json!(["demo-upscaler", ["4x-UltraSharp", "demo-upscaler (default)"]]));
    find(c, "#lipsync-model").await.select_by_value("wav2lip_gan").await.expect("pick lip-sync");
    find(c, "#upscale-model").await.select_by_value("4x-UltraSharp").await.expect("pick upscaler");
    find(c, "form.film .checks input[type=checkbox]").await.click().await.expect("upscale the film");
    both_shots(c, "new-film-models").await;
    find(c, "form.film button[type=submit]").await.click().await.expect("render");
    wait_js(c, "the watch view", "return location.hash.startsWith('#/watch/')", Duration::from_secs(20)).await;
    let jobs: Value =
        http.get(d.at("/api/v1/jobs?kind=render")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    let p = &job["params"];
    assert_eq!(
        (&p["lipsync_model"], &p["upscale_model"], &p["upscale"]),
        (&json!("wav2lip_gan"), &json!("4x-UltraSharp"), &json!(true)),
        "{job}"
    );
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(http.post(cancel).send().await.expect("cancel").status(), 200);
}

/// A profile's form picks its lip-sync and upscale models among the installed ones (and
/// "Default model" clears one), and choosing the profile in New film picks them there: New
/// film names the models it picked, so without following the profile its presenter would
/// speak with the box's default instead of the profile's wav2lip_gan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_form_keeps_its_lipsync_and_upscale_models_and_new_film_follows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models_with_imports(dir.path());
    let d = daemon_over(dir.path(), &models);
    let http = reqwest::Client::new();
    let b = browser(&dir.path().join("downloads")).await;
    let c = &b.client;
    let profile = async |id: &str| -> Value {
        http.get(d.at(&format!("/api/v1/profiles/{id}"))).send().await.expect("get").json().await.expect("json")
    };

    go(c, &d, "#/profiles", "#profile-upscale").await;
    let options = "return ['profile-lipsync', 'profile-upscale'].map(id => \
                   [...document.getElementById(id).options].map(o => o.textContent))";
    assert_eq!(
        js(c, options).await,
        json!([
            ["Default model", "demo-presenter", "wav2lip_gan"],
            ["Default model", "4x-UltraSharp", "demo-upscaler"]
        ])
    );
    find(c, "#profile-name").await.send_keys("Anna").await.expect("type");
    find(c, "#profile-lipsync").await.select_by_value("wav2lip_gan").await.expect("pick lip-sync");
    find(c, "#profile-upscale").await.select_by_value("4x-UltraSharp").await.expect("pick upscaler");
    both_shots(c, "profile-models").await;
    find(c, "#profile-form button[type=submit]").await.click().await.expect("create");
    let card = "const e = document.querySelector('[data-profile]'); return e && [e.dataset.profile, e.textContent]";
    let card = wait_js(c, "profile card", card, Duration::from_secs(10)).await;
    let id = card[0].as_str().expect("profile id").to_string();
    assert!(card[1].as_str().is_some_and(|t| t.contains("lip-sync wav2lip_gan · upscale 4x-UltraSharp")), "{card}");
    let saved = profile(&id).await;
    let style = &saved["style"];
    assert_eq!((&style["lipsync_model"], &style["upscale_model"]), (&json!("wav2lip_gan"), &json!("4x-UltraSharp")));

    // Edited, the form shows them; "Default model" clears the upscaler.
    find(c, &format!("[data-profile='{id}'] button.secondary")).await.click().await.expect("edit");
    let picked = "return [document.getElementById('profile-lipsync').value, \
                  document.getElementById('profile-upscale').value]";
    assert_eq!(js(c, picked).await, json!(["wav2lip_gan", "4x-UltraSharp"]));
    find(c, "#profile-upscale").await.select_by_value("").await.expect("default upscaler");
    find(c, "#profile-form button[type=submit]").await.click().await.expect("save");
    let t0 = Instant::now();
    while !profile(&id).await["style"]["upscale_model"].is_null() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the cleared upscaler was not saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(profile(&id).await["style"]["lipsync_model"], "wav2lip_gan");

    // New film: choosing the profile picks its lip-sync model; its upscaler is the box's default.
    go(c, &d, "#/new", &format!("#profile option[value='{id}']")).await;
    find(c, "#profile").await.select_by_value(&id).await.expect("pick the profile");
    let picked = "return [document.getElementById('lipsync-model').value, \
                  document.getElementById('upscale-model').value]";
    assert_eq!(js(c, picked).await, json!(["wav2lip_gan", "demo-upscaler"]));
    find(c, "form.film button[type=submit]").await.click().await.expect("render");
    wait_js(c, "the watch view", "return location.hash.startsWith('#/watch/')", Duration::from_secs(20)).await;
    let jobs: Value =
        http.get(d.at("/api/v1/jobs?kind=render")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    assert_eq!(job["params"]["lipsync_model"], "wav2lip_gan", "{job}");
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(http.post(cancel).send().await.expect("cancel").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_is_spoken_in_the_page_and_downloads_as_wav_and_a_key_over_its_quota_is_said_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/speech", "#speech-text").await;
    let count = "return document.getElementById('speech-count').textContent";
    assert_eq!(js(c, count).await, "0 / 8000 characters", "the daemon's limit (limits.max_prompt_chars)");
    assert_eq!(js(c, "return document.getElementById('speech-voice').value").await, "en_US-joe-medium");
    let line = "Hello from the box in the hall.";
    find(c, "#speech-text").await.send_keys(line).await.expect("type");
    assert_eq!(js(c, count).await, format!("{} / 8000 characters", line.len()));
    // Queued work says it waits, as Listen does.
    assert_eq!(http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status(), 200);
    find(c, "form.speech button[type=submit]").await.click().await.expect("speak");
    wait_js(
        c,
        "it waits",
        "return document.getElementById('speech-status').textContent.startsWith('Waiting')",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(http.post(d.at("/api/v1/queue/resume")).send().await.expect("resume").status(), 200);
    let played = wait_js(
        c,
        "the player",
        "const a = document.querySelector('.speech-result audio'); return a && a.readyState >= 1 && a.duration",
        Duration::from_secs(60),
    )
    .await;
    assert!(played.as_f64().is_some_and(|s| s > 0.5), "the line plays: {played} s");
    both_shots(c, "speech").await;
    assert_eq!(js(c, "return document.querySelector('.speech-result a[download]').textContent").await, "Download WAV");
    find(c, ".speech-result a[download]").await.click().await.expect("download");
    let wav = downloaded(&downloads, "wav").await;
    assert_eq!((&wav[..4], &wav[8..12]), (&b"RIFF"[..], &b"WAVE"[..]), "a WAV file");
    let jobs: Value =
        http.get(d.at("/api/v1/jobs?kind=speech")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    assert_eq!((&job["params"]["text"], &job["state"]), (&json!(line), &json!("succeeded")), "{job}");
    let id = job["id"].as_str().expect("id");
    in_library(c, &d, id, "audio").await;

    // Every refusal a family member can meet has its sentence; an unknown code keeps the daemon's.
    let words = c.execute_async(CODES, vec![]).await.expect("words.js");
    let words: Vec<&str> = words.as_array().expect("a list").iter().filter_map(Value::as_str).collect();
    assert_eq!(
        words,
        [
            "The box is missing the software that runs its models. Ask whoever runs the box to run “reelbox setup”.",
            "The box has too much work waiting. Try again in 5 seconds.",
            "Too many requests from this device at once. Try again in 2 seconds.",
            "That is more than the box accepts in one go. Try something smaller, or ask whoever runs the box to raise its limit.",
            "Your space on the box is full. Delete some of your work in Library, or ask whoever runs the box to give you more.",
            "The box's disk is nearly full, so it takes no new work for now. Delete finished work you have saved in Library, or ask whoever runs the box to free space on it.",
            "Only the box's admin may do that. Ask whoever runs the box to do it for you.",
            "You already have a profile of that name. Pick another name, or rename or delete that one.",
            "Your login has ended (the box may have restarted). Log in again with your key.",
            "Cannot reach the box: check that it is switched on and that this device is on its network.",
            "Something went wrong on the box. Try again; if it keeps happening, ask whoever runs the box to look at its log.",
            "Something went wrong on the box. Try again; if it keeps happening, ask whoever runs the box to look at its log.",
            "The box does not know the voice “en_US-joe-medum” and cannot fetch it. Did you mean en_US-joe-medium? Pick another, or ask whoever runs the box to add it.",
            "the daemon says this",
            // The model as data (`error.model`), whatever the words.
            "The upscaler “realesrgan-x4” is not on the box yet. Ask whoever runs the box to install it (Box, then Pull).",
        ]
    );

    // A client key whose one queued job is waiting: the page says so plainly, with the
    // daemon's words under Details.
    let admin: Value = http
        .post(d.at("/api/v1/keys"))
        .json(&json!({"name": "root", "scope": "admin"}))
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    let admin = admin["key"].as_str().expect("admin key").to_string();
    let mum = http.post(d.at("/api/v1/keys")).bearer_auth(&admin).json(&json!({"name": "mum", "max_queued": 1})).send();
    let mum: Value = mum.await.expect("key").json().await.expect("json");
    let mum = mum["key"].as_str().expect("mum's key").to_string();
    let pause = http.post(d.at("/api/v1/queue/pause")).bearer_auth(&admin).send().await.expect("pause");
    assert_eq!(pause.status(), 200);
    let first = http.post(d.at("/api/v1/speech")).bearer_auth(&mum).json(&json!({"text": "First."})).send();
    assert_eq!(first.await.expect("speech").status(), 202, "mum's first line waits in the queue");
    log_in(c, &d, &mum).await;
    go(c, &d, "#/speech", "#speech-text").await;
    find(c, "#speech-text").await.clear().await.expect("clear");
    find(c, "#speech-text").await.send_keys("Second.").await.expect("type");
    find(c, "form.speech button[type=submit]").await.click().await.expect("speak");
    let (said, details) = refusal(c, "form.speech .form-error").await;
    assert_eq!(
        said,
        "You have used your share of the box for now. Try again in 5 seconds, or ask whoever runs the box to raise your quota."
    );
    assert!(details.contains("max_queued is 1"), "the daemon's message under Details: {details}");
    both_shots(c, "speech-refused").await;
    b.client.clone().close().await.expect("close the browser");
}

/// A presenter profile whose voice was removed since: New film, which speaks with the
/// profile's voice while "Default voice" is picked, is refused naming the profile, and says
/// so under the profile's choice as the profile's voice (it said "“my-voice” is not on the
/// box yet" there, no word of a voice, or the field was `voice` under a Voice choice the
/// user had left alone); another voice picked in the form renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_film_says_a_profile_s_removed_voice_as_the_profile_s_and_another_voice_renders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models(dir.path());
    // The joe voice again, as a voice of the user's own name.
    let joe = provision::joe_voice();
    let mine = models.join("my-voice");
    std::fs::create_dir_all(&mine).expect("voice dir");
    std::fs::copy(&joe, mine.join("my-voice.onnx")).expect("voice");
    std::fs::copy(joe.with_extension("onnx.json"), mine.join("my-voice.onnx.json")).expect("voice config");
    let d = daemon_over(dir.path(), &models);
    let http = reqwest::Client::new();
    let made = http.post(d.at("/api/v1/profiles")).json(&json!({"name": "Anna", "voice": "my-voice"})).send();
    let made: Value = made.await.expect("profile").json().await.expect("json");
    let id = made["id"].as_str().expect("profile id").to_string();
    std::fs::remove_dir_all(&mine).expect("remove the voice");

    let b = browser(&dir.path().join("downloads")).await;
    let c = &b.client;
    go(c, &d, "#/new", &format!("#profile option[value='{id}']")).await;
    find(c, "#profile").await.select_by_value(&id).await.expect("pick the profile");
    find(c, "form.film button[type=submit]").await.click().await.expect("render");
    let (said, details) = refusal(c, "#profile-error").await;
    assert_eq!(
        said,
        "Presenter profile: its voice “my-voice” is no longer on the box. Pick another voice here, or change the \
         profile's in Profiles."
    );
    assert!(details.contains("`reelbox profiles update Anna --voice NAME`"), "the daemon's words: {details}");
    both_shots(c, "new-film-profile-voice-gone").await;

    find(c, "#voice").await.select_by_value(provision::JOE).await.expect("pick a voice");
    find(c, "form.film button[type=submit]").await.click().await.expect("render");
    wait_js(c, "the watch view", "return location.hash.startsWith('#/watch/')", Duration::from_secs(20)).await;
    let jobs: Value =
        http.get(d.at("/api/v1/jobs?kind=render")).send().await.expect("jobs").json().await.expect("json");
    let job = &jobs["jobs"][0];
    assert_eq!((&job["params"]["voice"], &job["params"]["profile"]), (&json!(provision::JOE), &json!(id)), "{job}");
    let cancel = d.at(&format!("/api/v1/jobs/{}/cancel", job["id"].as_str().expect("id")));
    assert_eq!(http.post(cancel).send().await.expect("cancel").status(), 200);
    b.client.clone().close().await.expect("close the browser");
}

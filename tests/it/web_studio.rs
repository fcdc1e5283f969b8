//! The web studio in a real headless Chromium (Debian's `chromium` through
//! `chromium-driver`) against the real daemon with the bundled demo models: write the demo
//! script, submit, watch it reach 100 %, play the film with its subtitles, download it;
//! make a profile and drag its face box; delete a job with its files; log in with a key and
//! see only that key's work. Screenshots at 1280×800 and 390×844 go to
//! `target/web-screenshots/` for a person to look at.

use crate::common;

pub(crate) mod browser;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use browser::{both_shots, browser, find, go, js, shot, wait_js};
use common::daemon::{DaemonProc, is_final, wait_job};
use common::{copy_dir, provision};
use fantoccini::Client;
use fantoccini::actions::{InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use reelbox::media::ffprobe::probe_with;
use serde_json::{Value, json};

/// The bundled demo models under the names the render defaults to, and the joe voice.
pub(crate) fn demo_models(root: &Path) -> PathBuf {
    let demo = common::source_tree().join("models/demo");
    let models = root.join("models");
    // demo-upscaler is left out: the admin pulls it in the Box view.
    for (from, to) in [("shapes", "demo-shapes"), ("presenter", "demo-presenter")] {
        copy_dir(&demo.join(from), &models.join(to));
    }
    let joe = provision::joe_voice();
    copy_dir(joe.parent().expect("voice dir"), &models.join("en_US-joe-medium"));
    // The UltraFace-interface fixture imported as the face detector (a bare model.onnx
    // needs its kind named), so the profile editor detects.
    common::tools::import_bare(root, &models, "face-detector", "face", &common::fixture("models/tiny-face-detector"));
    models
}

/// Files in `dir` and its folders.
fn files_under(dir: &Path) -> usize {
    let entries = std::fs::read_dir(dir).map(|r| r.flatten().collect::<Vec<_>>()).unwrap_or_default();
    entries.iter().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

async fn get(http: &reqwest::Client, d: &DaemonProc, path: &str) -> Value {
    http.get(d.at(path)).send().await.expect("get").json().await.expect("json")
}

/// Makes a profile in the page from the demo portrait and drags its face box; returns its id.
async fn make_profile(c: &Client, d: &DaemonProc, http: &reqwest::Client) -> String {
    go(c, d, "#/profiles", "#profile-name").await;
    find(c, "#profile-name").await.send_keys("Demo presenter").await.expect("type");
    let portrait = common::source_tree().join("assets/demo/portrait.png");
    find(c, "#profile-portrait").await.send_keys(&portrait.display().to_string()).await.expect("upload");
    let ready = "const i = document.querySelector('.face-wrap img'); return !document.querySelector('.face-wrap').hidden && i.naturalWidth > 0";
    wait_js(c, "portrait", ready, Duration::from_secs(10)).await;
    // The installed detector runs first (a face_detect job); its note says how it went.
    let settled =
        "const t = document.getElementById('face-note').textContent; return /^(Face found|No face found)/.test(t) && t";
    let note = wait_js(c, "face detection", settled, Duration::from_secs(30)).await;
    assert!(note.as_str().is_some_and(|t| t.contains("drag") || t.contains("place")), "{note}");
    let read = "return ['x','y','w','h'].map(k => Number(document.getElementById('face-' + k).value))";
    let before = js(c, read).await;
    let facebox = find(c, ".facebox").await;
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement { element: facebox, duration: None, x: 0.0, y: 0.0 })
        .then(PointerAction::Down { button: MOUSE_BUTTON_LEFT })
        .then(PointerAction::MoveBy { duration: Some(Duration::from_millis(200)), x: 40.0, y: 24.0 })
        .then(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    c.perform_actions(drag).await.expect("drag the face box");
    let after = js(c, read).await;
    let n = |v: &Value, i: usize| v[i].as_i64().unwrap_or(-1);
    assert!(n(&after, 0) > n(&before, 0) && n(&after, 1) > n(&before, 1), "the drag moved the box: {before} → {after}");
    assert_eq!((n(&after, 2), n(&after, 3)), (n(&before, 2), n(&before, 3)), "moving keeps the size");
    find(c, "#profile-picture").await.select_by_value("demo-shapes").await.expect("pick the picture model");
    both_shots(c, "profiles").await;
    find(c, "#profile-form button[type=submit]").await.click().await.expect("create");
    let id = wait_js(
        c,
        "profile card",
        "const e = document.querySelector('[data-profile]'); return e && e.dataset.profile",
        Duration::from_secs(10),
    )
    .await;
    let id = id.as_str().expect("profile id").to_string();
    let saved = get(http, d, &format!("/api/v1/profiles/{id}")).await;
    assert_eq!(saved["face_box"], after, "the dragged box is what was saved: {saved}");
    assert_eq!(saved["style"]["image_model"], "demo-shapes", "the picture model is saved: {saved}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_is_written_watched_downloaded_and_deleted_in_the_browser_and_keys_keep_work_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = demo_models(dir.path());
    let runtime = provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
    ];
    let data = dir.path().join("data");
    let mut d = DaemonProc::start(&data, &env);
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    let profile = make_profile(c, &d, &http).await;

    // New film: the demo script typed in, explained scene by scene; a field error shows at its field.
    go(c, &d, "#/new", &format!("#profile option[value='{profile}']")).await;
    let script_box = find(c, "#script").await;
    script_box.clear().await.expect("clear");
    find(c, "form.film button[type=submit]").await.click().await.expect("submit empty");
    let err = wait_js(
        c,
        "script error",
        "return document.getElementById('script-error').textContent",
        Duration::from_secs(10),
    )
    .await;
    let marked = js(c, "return document.getElementById('script').getAttribute('aria-invalid')").await;
    assert_eq!(marked, "true", "the API's field error ({err}) is shown at the script field");
    let script = std::fs::read_to_string(common::source_tree().join("assets/demo/script.txt")).expect("demo script");
    script_box.send_keys(script.trim_end()).await.expect("type the script");
    let scenes = js(c, "return [...document.querySelectorAll('.scenes li')].map(li => li.textContent)").await;
    assert_eq!(scenes.as_array().map(Vec::len), Some(3), "{scenes}");
    assert!(scenes[0].as_str().unwrap_or("").contains("Picture: a red circle on a blue background"), "{scenes}");
    // The preset list is the box's (GET /api/v1/presets), with its descriptions.
    let presets = js(c, "return [...document.querySelectorAll('#preset option')].map(o => o.value)").await;
    assert_eq!(presets, json!(["", "fast", "quality", "max"]), "model default, then the box's presets");
    // Listen speaks the first sentence of the script with the chosen voice and plays it;
    // while the line waits its turn (here: the queue is paused) it says so.
    let paused = http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause");
    assert_eq!(paused.status(), 200);
    js(c, "[...document.querySelectorAll('form.film button')].find(b => b.textContent === 'Listen').click()").await;
    wait_js(
        c,
        "listen waits",
        "return [...document.querySelectorAll('form.film .hint[aria-live]')].some(e => e.textContent.startsWith('Waiting'))",
        Duration::from_secs(10),
    )
    .await;
    let resumed = http.post(d.at("/api/v1/queue/resume")).send().await.expect("resume");
    assert_eq!(resumed.status(), 200);
    let heard = wait_js(
        c,
        "listen",
        "const s = [...document.querySelectorAll('form.film .hint[aria-live]')].map(e => e.textContent).join(' '); \
         return /Playing|failed|error/i.test(s) && s",
        Duration::from_secs(60),
    )
    .await;
    assert!(heard.as_str().is_some_and(|s| s.contains("Playing.")), "Listen: {heard}");
    let spoken = get(&http, &d, "/api/v1/jobs?kind=speech").await;
    let first = script.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('[')).unwrap_or_default();
    let said: Vec<&str> =
        spoken["jobs"].as_array().into_iter().flatten().filter_map(|j| j["params"]["text"].as_str()).collect();
    assert_eq!(said, [first.trim()], "Listen speaks the script's first sentence");
    find(c, "#profile").await.select_by_value(&profile).await.expect("pick the profile");
    find(c, "#size").await.select_by_value("256").await.expect("size");
    both_shots(c, "new-film").await;
    find(c, "form.film button[type=submit]").await.click().await.expect("submit");
    let id = wait_js(
        c,
        "watch view",
        "const m = location.hash.match(/^#\\/watch\\/(\\w+)/); return m && m[1]",
        Duration::from_secs(20),
    )
    .await;
    let id = id.as_str().expect("job id").to_string();

    // Watch: progress climbs to 100 % while keyframes appear; then the film plays with subtitles.
    let mut seen = Vec::new();
    let t0 = Instant::now();
    loop {
        let p = js(c, "const p = document.getElementById('percent'); return p ? p.textContent : ''").await;
        let p = p.as_str().unwrap_or("").trim_end_matches(" %").parse::<u32>().unwrap_or(0);
        if seen.last() != Some(&p) {
            seen.push(p);
        }
        if p == 100 || t0.elapsed() > Duration::from_secs(900) {
            break;
        }
        let job = get(&http, &d, &format!("/api/v1/jobs/{id}")).await;
        assert!(!matches!(job["state"].as_str(), Some("failed" | "canceled")), "{job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.last(), Some(&100), "progress reached {seen:?}");
    assert!(seen.iter().any(|p| (1..100).contains(p)), "progress was shown on the way: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {seen:?}");
    let video = "const v = document.querySelector('video'); const t = v && v.textTracks[0]; \
                 return v && v.readyState >= 1 && t && t.cues && t.cues.length > 0 && [v.duration, v.textTracks.length, t.cues.length]";
    let played = wait_js(c, "video", video, Duration::from_secs(30)).await;
    let keyframes = js(c, "return document.querySelectorAll('.keyframes img').length").await;
    assert_eq!(keyframes, 3, "one keyframe per scene");
    let job = get(&http, &d, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let arts = get(&http, &d, &format!("/api/v1/jobs/{id}/artifacts")).await;
    let film = arts.as_array().expect("artifacts").iter().find(|a| a["name"] == "film.mp4").expect("film.mp4").clone();
    let bytes =
        http.get(d.at(film["url"].as_str().expect("url"))).send().await.expect("film").bytes().await.expect("bytes");
    let probed = dir.path().join("probe.mp4");
    std::fs::write(&probed, &bytes).expect("write");
    let want = probe_with(&probed, false).expect("ffprobe").duration_s.expect("duration");
    let got = played[0].as_f64().expect("video duration");
    assert!((got - want).abs() <= 0.2, "the page plays {got:.2} s of a {want:.2} s film");
    let stages = js(c, "return [...document.querySelectorAll('.stage .name')].map(e => e.textContent)").await;
    assert_eq!(
        stages,
        json!(["Planning", "Pictures", "Voice", "Camera moves", "Presenter", "Upscaling", "Putting it together"]),
        "stages are named in words, not the API's names"
    );
    shot(c, "watch", 390, 844).await;
    let top = js(c, "return document.querySelector('video').getBoundingClientRect().top < innerHeight").await;
    assert_eq!(top, true, "on a phone the finished film starts on the first screen, above the stage list");
    let inline = js(c, "return document.querySelector('video').playsInline").await;
    assert_eq!(inline, true, "an iPhone plays the film in the page, not straight to fullscreen");
    both_shots(c, "watch").await;

    // The film downloads through its link, under a name that tells it from the last one
    // (its first words and the short id top shows), not every film's `film.mp4`.
    let link = find(c, "a[download$='.mp4']").await;
    let name = link.attr("download").await.expect("download attribute").unwrap_or_default();
    assert!(name.ends_with(&format!("-{}.mp4", &id[id.len() - 8..])) && name != "film.mp4", "{name}");
    link.click().await.expect("download");
    let target = downloads.join(&name);
    let t0 = Instant::now();
    while std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0) != bytes.len() as u64 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{name} did not download: {:?}",
            std::fs::read_dir(&downloads).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read(&target).expect("downloaded"), bytes.as_ref(), "the download is the film");

    // A picture watched while it is made: step previews, then only the finished picture.
    let queue = |what: &str| http.post(d.at(&format!("/api/v1/queue/{what}"))).send();
    assert_eq!(queue("pause").await.expect("pause").status(), 200);
    let resp = http.post(d.at("/api/v1/images")).json(&json!({"prompt": "a red circle", "steps": 25})).send();
    let picture: Value = resp.await.expect("image").json().await.expect("json");
    let picture = picture["id"].as_str().expect("id").to_string();
    go(c, &d, &format!("#/watch/{picture}"), "#job-state").await;
    // Noted the moment the page shows a preview: a loaded CI machine ran the 25 steps before a
    // 150 ms poll saw the preview the page had shown between.
    js(
        c,
        "const p = document.querySelector('.preview'); \
         new MutationObserver(() => { if (!p.hidden) window.__previewShown = true; }) \
           .observe(p, { attributes: true, attributeFilter: ['hidden'] }); return true",
    )
    .await;
    assert_eq!(queue("resume").await.expect("resume").status(), 200);
    wait_js(c, "a step preview", "return window.__previewShown === true", Duration::from_secs(30)).await;
    wait_js(
        c,
        "the picture",
        "return document.querySelectorAll('.result img.picture').length === 1",
        Duration::from_secs(30),
    )
    .await;
    let stale = js(c, "return !document.querySelector('.preview').hidden").await;
    assert_eq!(stale, false, "the last step preview goes once the picture is done");

    // The box, then the library: delete the film with its files.
    go(c, &d, "#/box", "table tbody tr").await;
    wait_js(c, "telemetry", "return document.querySelectorAll('.gauge').length > 0", Duration::from_secs(10)).await;
    both_shots(c, "box").await;
    let disk = "return [...document.querySelectorAll('.box h2')].find(h => h.textContent === 'Disk')\
                ?.nextElementSibling?.textContent";
    let disk = js(c, disk).await;
    assert!(disk.as_str().is_some_and(|t| t.contains("Films and uploads: ") && t.contains(" free of ")), "{disk}");
    // Pull, as the admin a keyless box's own user is: a non-commercial model asks first (and
    // nothing is pulled when the answer is no); the bundled demo upscaler installs.
    let pull = |name: &str| {
        format!(
            "const r = [...document.querySelectorAll('tbody tr')].find(r => r.cells[0]?.textContent === '{name}'); \
             const b = r && r.querySelector('button'); if (b) b.click(); return !!b"
        )
    };
    // The click opens the question at once, so the script's own answer is not awaited.
    js(c, &pull("sd-turbo")).await;
    let ask = c.get_alert_text().await.expect("sd-turbo's Pull asks about its licence");
    assert!(ask.contains("non-commercial"), "{ask}");
    c.dismiss_alert().await.expect("say no");
    assert_eq!(js(c, &pull("demo-upscaler")).await, json!(true), "demo-upscaler has a Pull button");
    let state = "return [...document.querySelectorAll('tbody tr')].find(r => r.cells[0]?.textContent === 'demo-upscaler')\
                 .cells[4].firstChild.textContent";
    let done = wait_js(
        c,
        "pull",
        &format!("const s = (() => {{ {state} }})(); return s !== 'not installed' && s"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done, "installed", "the pull ends installed");
    assert!(models.join("demo-upscaler").is_dir(), "the model is in the models dir");
    let pulls = get(&http, &d, "/api/v1/jobs?kind=model_pull").await;
    let names: Vec<&str> =
        pulls["jobs"].as_array().into_iter().flatten().filter_map(|j| j["params"]["name"].as_str()).collect();
    assert_eq!(names, ["demo-upscaler"], "declining the licence pulled nothing");
    // Removed again from the page (a disk filling up): asked first, then gone from the box.
    c.refresh().await.expect("reload the box");
    let remove = "button[aria-label='Remove demo-upscaler']";
    wait_js(c, "Remove", &format!("return !!document.querySelector({remove:?})"), Duration::from_secs(20)).await;
    find(c, remove).await.click().await.expect("remove");
    let ask = c.get_alert_text().await.expect("Remove asks first");
    assert!(ask.contains("Remove demo-upscaler"), "{ask}");
    c.accept_alert().await.expect("say yes");
    let done = wait_js(
        c,
        "removal",
        &format!("const s = (() => {{ {state} }})(); return s !== 'installed' && s"),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done, "removed");
    assert!(!models.join("demo-upscaler").exists(), "the model left the models dir");
    go(c, &d, "#/library", &format!("[data-job='{id}'] video")).await;
    both_shots(c, "library").await;
    let artifacts_dir = data.join("artifacts");
    let files_before = files_under(&artifacts_dir);
    find(c, &format!("[data-job='{id}'] button.danger")).await.click().await.expect("delete");
    c.accept_alert().await.expect("confirm the delete");
    wait_js(c, "deleted", &format!("return !document.querySelector(\"[data-job='{id}']\")"), Duration::from_secs(10))
        .await;
    let gone = http.get(d.at(&format!("/api/v1/jobs/{id}"))).send().await.expect("get");
    assert_eq!(gone.status(), 404);
    let removed = files_before - files_under(&artifacts_dir);
    assert_eq!(removed, arts.as_array().map(Vec::len).unwrap_or(0), "every file of the film went with it");

    // Keys: once they exist the page asks for one; each key sees only its own work.
    let key = |body: Value| {
        let http = http.clone();
        let url = d.at("/api/v1/keys");
        async move {
            let v: Value = http.post(url).json(&body).send().await.expect("key").json().await.expect("json");
            v["key"].as_str().expect("key").to_string()
        }
    };
    let admin = key(json!({"name": "root", "scope": "admin"})).await;
    let mut client_keys = Vec::new();
    for name in ["alice", "bob"] {
        let resp = http.post(d.at("/api/v1/keys")).bearer_auth(&admin).json(&json!({"name": name})).send().await;
        let v: Value = resp.expect("key").json().await.expect("json");
        let k = v["key"].as_str().expect("key").to_string();
        let line = format!("{name} reads this line.");
        let resp = http.post(d.at("/api/v1/speech")).bearer_auth(&k).json(&json!({"text": line})).send().await;
        let job: Value = resp.expect("speech").json().await.expect("json");
        let as_key = common::api::keyed_client(&k);
        wait_job(&as_key, &d, job["id"].as_str().expect("id"), Duration::from_secs(120), is_final).await;
        client_keys.push(k);
    }
    go(c, &d, "", "#login:not([hidden])").await;
    find(c, "#login-key").await.send_keys("rb_not-a-key").await.expect("type");
    find(c, "#login-form button[type=submit]").await.click().await.expect("log in");
    let err = wait_js(
        c,
        "login error",
        "return document.getElementById('login-key-error').textContent",
        Duration::from_secs(10),
    )
    .await;
    assert!(err.as_str().unwrap_or("").starts_with("Your key: this key is not valid"), "named by its label: {err}");
    let told = js(c, "return document.querySelector('#login-form p').textContent").await;
    assert!(
        told.as_str().is_some_and(|t| t.contains("rb_") && t.contains("12 hours")),
        "what a key is and how long a login lasts: {told}"
    );
    both_shots(c, "login-error").await;
    find(c, "#login-key").await.clear().await.expect("clear");
    find(c, "#login-key").await.send_keys(&client_keys[0]).await.expect("type");
    find(c, "#login-form button[type=submit]").await.click().await.expect("log in");
    wait_js(
        c,
        "signed in",
        "return !document.getElementById('who').hidden && document.getElementById('who-label').textContent",
        Duration::from_secs(10),
    )
    .await;
    go(c, &d, "#/library", "#lib-kind").await;
    find(c, "#lib-kind").await.select_by_value("").await.expect("everything");
    let text = wait_js(
        c,
        "alice's work",
        "const t = document.querySelector('.library').innerText; return t.includes('alice reads') && t",
        Duration::from_secs(10),
    )
    .await;
    assert!(!text.as_str().unwrap_or("").contains("bob reads"), "alice sees only her work: {text}");
    // Work that has not finished offers Cancel (the API would refuse a delete), then Delete.
    let queue = |what: &str| http.post(d.at(&format!("/api/v1/queue/{what}"))).bearer_auth(&admin).send();
    assert_eq!(queue("pause").await.expect("pause").status(), 200);
    let resp = http.post(d.at("/api/v1/speech")).bearer_auth(&client_keys[0]).json(&json!({"text": "Not yet."})).send();
    let waiting: Value = resp.await.expect("speech").json().await.expect("json");
    let waiting = waiting["id"].as_str().unwrap_or_else(|| panic!("a queued speech job: {waiting}")).to_string();
    let card = format!("[data-job='{waiting}']");
    // Its Watch view says why it waits in words, without the operator's command and route.
    go(c, &d, &format!("#/watch/{waiting}"), "#job-state").await;
    let why = wait_js(
        c,
        "why it waits",
        "return document.querySelector('.watch .message').textContent.trim()",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(why, "Waiting: the queue is paused", "the reason shown for a queued job");
    go(c, &d, "#/library", "#lib-kind").await;
    wait_js(c, "library", "return !!document.querySelector('#lib-kind')", Duration::from_secs(10)).await;
    find(c, "#lib-kind").await.select_by_value("speech").await.expect("speech");
    wait_js(c, "queued card", &format!("return !!document.querySelector(\"{card} button\")"), Duration::from_secs(10))
        .await;
    let offered =
        js(c, &format!("return [...document.querySelectorAll(\"{card} button\")].map(b => b.textContent)")).await;
    let shown = js(c, &format!("return document.querySelector(\"{card}\").innerText")).await;
    assert_eq!(offered, json!(["Cancel"]), "a queued job's card: {shown}");
    find(c, &format!("{card} button")).await.click().await.expect("cancel");
    let after = format!(
        "const b = document.querySelector(\"{card} button\"); \
         return b && b.textContent === 'Delete' && document.querySelector(\"{card}\").innerText"
    );
    let shown = wait_js(c, "canceled card", &after, Duration::from_secs(10)).await;
    assert!(shown.as_str().is_some_and(|t| t.contains("speech · canceled")), "{shown}");
    assert!(
        shown.as_str().is_some_and(|t| t.contains("Canceled by its owner")),
        "the card says who canceled it: {shown}"
    );
    // So does its Watch view.
    go(c, &d, &format!("#/watch/{waiting}"), "#job-state").await;
    let why = wait_js(
        c,
        "why it was canceled",
        "const w = document.querySelector('.watch .why'); return w && w.textContent.trim()",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(why, "Canceled by its owner", "the reason shown for a canceled job");
    assert_eq!(queue("resume").await.expect("resume").status(), 200);
    let stored = js(c, "return [document.cookie, localStorage.length, sessionStorage.getItem('reelbox.key')]").await;
    assert_eq!(stored, json!(["", 0, null]), "the session is HttpOnly and no key is stored by the page");

    // The daemon restarts while alice watches a job: sessions live in its memory, so the
    // page must ask for her key again (not sit there at its last percentage), then carry on.
    let as_alice = |r: reqwest::RequestBuilder| r.bearer_auth(&client_keys[0]);
    let resp = as_alice(http.post(d.at("/api/v1/jobs")))
        .json(&common::daemon::testcard(json!({"steps": 40, "step_ms": 200})))
        .send()
        .await;
    let card: Value = resp.expect("testcard").json().await.expect("json");
    let card = card["id"].as_str().expect("id").to_string();
    go(c, &d, &format!("#/watch/{card}"), "#percent").await;
    wait_js(
        c,
        "card running",
        "return document.getElementById('job-state').textContent === 'running'",
        Duration::from_secs(20),
    )
    .await;
    let bind = d.url.trim_start_matches("http://").to_string();
    d.kill9();
    // Down for a moment, as a real restart is: what the page asks meanwhile finds nobody.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Same port, so the page's address stays right; held until the test ends.
    let _restarted = DaemonProc::start_at(&data, &bind, &env);
    wait_js(
        c,
        "login after the restart",
        "return !document.getElementById('login').hidden && document.getElementById('who').hidden",
        Duration::from_secs(20),
    )
    .await;
    find(c, "#login-key").await.send_keys(&client_keys[0]).await.expect("type");
    find(c, "#login-form button[type=submit]").await.click().await.expect("log in again");
    wait_js(
        c,
        "the card finishes in the page",
        "return document.getElementById('job-state')?.textContent === 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    find(c, "#logout").await.click().await.expect("log out");
    wait_js(c, "logged out", "return !document.getElementById('login').hidden", Duration::from_secs(10)).await;
    let after = js(c, "return fetch('/api/v1/jobs').then(r => r.status)").await;
    assert_eq!(after, 401, "logout ended the session on the daemon");
    b.client.clone().close().await.expect("close the browser");
}

//! The web studio's Photo view in the tests' Chromium against the real daemon with the tiny
//! fixture models and the face detector: a phone photo
//! picked in the page is made larger (its PNG downloads at 4× the upright photo) and made to
//! talk from typed text (an MP4 plays in the page and downloads); without a face detector the
//! page says the box needs one and which to pull (the API's refusal carries the pull as
//! data), and trying again with a sound file does not store the sound again; a HEIC photo
//! and one past `limits.max_upload_side` are refused at the photo field in plain words, and a
//! photo picked while the box was away is sent when asked once it is back; a photo past
//! `limits.max_upload_bytes` is refused in the page, saying its size and the box's limit,
//! and never sent.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::api::{call, create_key, storage_bytes};
use common::media::{heic_head, phone_jpeg, png, speechy_16k, test_picture, wav_bytes};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::web_studio::browser::{both_shots, browser, find, go, js, log_in, wait_js};
use crate::web_studio_forms::{downloaded, png_size, refusal};
use common::daemon::DaemonProc;
use common::tools::import_bare;

/// The picked photo as the page shows it: its size once loaded, null while it is not shown.
const PREVIEW: &str = "const i = document.querySelector('.photo-form .photo-preview'); \
    return !i.hidden && i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]";

/// The tiny fixture models a photo needs, installed as their kinds (bare ONNX files, so
/// imported as a user bringing their own would), and the joe voice; a daemon over them
/// with `env`. No face detector yet: [`install_face_detector`] adds it.
fn daemon(root: &Path, env: &[(&str, &str)]) -> DaemonProc {
    let models = root.join("models");
    for (name, kind) in [("tiny-esrgan-x4", "upscale"), ("tiny-wav2lip", "lipsync")] {
        import_bare(root, &models, name, kind, &common::fixture(&format!("models/{name}")));
    }
    let joe = common::provision::joe_voice();
    common::copy_dir(joe.parent().expect("voice dir"), &models.join("en_US-joe-medium"));
    common::compat::start_daemon_with(&root.join("data"), &models, env)
}

/// The face detector fixture installed under `root`'s models, as the owner would.
fn install_face_detector(root: &Path) {
    import_bare(root, &root.join("models"), "face-detector", "face", &common::fixture("models/tiny-face-detector"));
}

/// Presses "Make it larger" and waits for the larger photo; its size.
async fn made_larger(c: &fantoccini::Client) -> Value {
    find(c, "#photo-larger").await.click().await.expect("make it larger");
    wait_js(
        c,
        "the larger photo",
        "const i = document.querySelector('.photo-view .result img.picture'); \
         return i && i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]",
        Duration::from_secs(120),
    )
    .await
}

/// Jobs of `kind` the daemon has.
async fn jobs(http: &reqwest::Client, d: &DaemonProc, kind: &str) -> Vec<Value> {
    let page = common::daemon::get_json(http, d, &format!("/api/v1/jobs?kind={kind}")).await;
    page["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_photo_is_made_larger_and_made_to_talk_in_the_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path(), &[]);
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    // Seen 120 wide and 160 tall; the phone stored it turned, with EXIF Orientation 6.
    let photo = dir.path().join("IMG_0001.jpg");
    std::fs::write(&photo, phone_jpeg(&image::imageops::rotate270(&test_picture(120, 160, 5)), 6)).expect("photo");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/photo", "#photo-file").await;
    let nav = js(c, "return [...document.querySelectorAll('nav a')].slice(1, 4).map(a => a.textContent)").await;
    assert_eq!(nav, json!(["Picture", "Photo", "Speech"]), "Photo sits between Picture and Speech");
    let accept = js(c, "return document.getElementById('photo-file').accept").await;
    assert_eq!(accept, "image/*", "a phone offers its camera and its photos");
    let asked = js(c, "return !!document.getElementById('photo-model')").await;
    assert_eq!(asked, false, "one upscaler is installed: no model to pick");
    find(c, "#photo-file").await.send_keys(&photo.display().to_string()).await.expect("pick the photo");
    let shown = wait_js(c, "the photo's preview", PREVIEW, Duration::from_secs(10)).await;
    assert_eq!(shown, json!([120, 160]), "the photo is shown upright");
    both_shots(c, "photo").await;

    // Larger: progress as Picture shows it, then the picture large and its PNG at 4×.
    let big = made_larger(c).await;
    assert_eq!(big, json!([480, 640]), "4× the upright photo");
    let progress = js(c, "return document.querySelector('.photo-view .watch #percent').textContent").await;
    assert_eq!(progress, "100 %", "followed live to its end");
    let what = js(c, "return document.querySelector('.photo-view .watch .summary').textContent").await;
    assert_eq!(what, "larger picture", "said in words, not the API's kind");
    both_shots(c, "photo-larger").await;
    assert_eq!(js(c, "return document.querySelector('.photo-view a[download]').textContent").await, "Download PNG");
    find(c, ".photo-view a[download]").await.click().await.expect("download");
    assert_eq!(png_size(&downloaded(&downloads, "png").await), (480, 640), "the download is 4× the photo");
    let upscaled = jobs(&http, &d, "upscale").await;
    assert_eq!((upscaled.len(), &upscaled[0]["state"]), (1, &json!("succeeded")), "{upscaled:?}");

    // Back to the same photo, which is made to talk. The box has no face detector yet: the
    // page says it needs one and which installs it (the catalog's, which Box offers to pull).
    // WebDriver scrolls a button to the top, under the sticky header: to the middle instead.
    js(c, "document.getElementById('photo-again').scrollIntoView({block: 'center'})").await;
    find(c, "#photo-again").await.click().await.expect("back to the photo");
    wait_js(c, "the photo again", PREVIEW, Duration::from_secs(10)).await;
    find(c, "#photo-text").await.send_keys("Hello from the photo in the hall.").await.expect("type");
    assert_eq!(js(c, "return document.getElementById('photo-voice').value").await, "en_US-joe-medium");
    find(c, "#photo-talk").await.click().await.expect("make it talk");
    let (said, details) = refusal(c, ".photo-form .form-error").await;
    assert_eq!(
        said,
        "To find the face in the photo the box needs a face detector: the box has none yet. \
         Ask whoever runs the box to install one (Box, then Pull “ultraface-320”)."
    );
    assert!(details.starts_with("face_box: ") && details.contains("`reelbox pull ultraface-320`"), "{details}");
    let models = common::daemon::get_json(&http, &d, "/api/v1/models").await;
    let pullable = models["models"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "ultraface-320"));
    let pullable = pullable.unwrap_or_else(|| panic!("the catalog has ultraface-320: {models}"));
    assert_eq!(pullable["kind"], "face");
    assert!(pullable["sources"].as_array().is_some_and(|s| !s.is_empty()), "Box offers to pull it: {pullable}");
    let beside = js(c, "return document.querySelector('.photo-form .form-error').nextElementSibling.contains(document.getElementById('photo-talk'))").await;
    assert_eq!(beside, true, "the refusal is beside the action refused");
    both_shots(c, "photo-no-detector").await;

    install_face_detector(dir.path());
    find(c, "#photo-talk").await.click().await.expect("make it talk");
    let played = wait_js(
        c,
        "the talking photo",
        "const v = document.querySelector('.photo-view .result video'); \
         return v && v.readyState >= 1 && v.duration > 0 && [v.videoWidth, v.videoHeight, v.duration]",
        Duration::from_secs(180),
    )
    .await;
    assert_eq!((&played[0], &played[1]), (&json!(120), &json!(160)), "the upright photo talks: {played}");
    assert!(played[2].as_f64().is_some_and(|s| s > 0.5), "it says the line: {played}");
    let what = js(c, "return document.querySelector('.photo-view .watch .summary').textContent").await;
    assert_eq!(what, "Hello from the photo in the hall.", "what the photo says");
    both_shots(c, "photo-talking").await;
    assert_eq!(js(c, "return document.querySelector('.photo-view a[download]').textContent").await, "Download MP4");
    find(c, ".photo-view a[download]").await.click().await.expect("download");
    let mp4 = downloaded(&downloads, "mp4").await;
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4");
    let talked = jobs(&http, &d, "lipsync").await;
    assert_eq!(
        (talked.len(), &talked[0]["state"]),
        (1, &json!("succeeded")),
        "one job, the refused one never was: {talked:?}"
    );
    // Coming back to the view, what they said is still there (this tab keeps it).
    go(c, &d, "#/speech", "#speech-text").await;
    go(c, &d, "#/photo", "#photo-file").await;
    let kept = js(c, "return ['photo-narration', 'photo-text'].map(id => document.getElementById(id).value)").await;
    assert_eq!(kept, json!(["text", "Hello from the photo in the hall."]), "the fields are kept");
    b.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heic_photo_and_one_too_large_are_refused_in_plain_words_and_one_picked_while_the_box_was_away_is_sent_later()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[limits]\nmax_upload_side = 256\n").expect("config");
    let env = [("REELBOX_CONFIG", config.to_str().expect("utf8"))];
    let mut d = daemon(dir.path(), &env);
    let http = reqwest::Client::new();
    let heic = dir.path().join("IMG_0002.HEIC");
    std::fs::write(&heic, heic_head()).expect("heic");
    let wide = dir.path().join("panorama.png");
    std::fs::write(&wide, png(&test_picture(300, 40, 2))).expect("png");
    let b = browser(dir.path()).await;
    let c = &b.client;

    go(c, &d, "#/photo", "#photo-file").await;
    find(c, "#photo-file").await.send_keys(&heic.display().to_string()).await.expect("pick the HEIC");
    let (said, details) = refusal(c, "#photo-file-error").await;
    assert_eq!(
        said,
        "Photo: this is an iPhone photo in HEIC, which the box cannot read. Share it as JPEG, or set the \
         iPhone's Settings › Camera › Formats to Most Compatible."
    );
    assert!(details.starts_with("file: is a HEIC/HEIF picture"), "the daemon's words under Details: {details}");
    assert_eq!(js(c, "return document.getElementById('photo-file').getAttribute('aria-invalid')").await, "true");
    both_shots(c, "photo-heic").await;
    // Asked to make it larger all the same, the page says it again and sends nothing.
    find(c, "#photo-larger").await.click().await.expect("make it larger");
    let (again, _) = refusal(c, "#photo-file-error").await;
    assert_eq!(again, said);
    assert_eq!(jobs(&http, &d, "upscale").await, Vec::<Value>::new(), "nothing was sent to be made");

    find(c, "#photo-file").await.send_keys(&wide.display().to_string()).await.expect("pick the panorama");
    let (said, _) = refusal(c, "#photo-file-error").await;
    assert_eq!(
        said,
        "Photo: the photo is 300 × 40 pixels; the box takes at most 256 a side. Send a smaller copy (your \
         phone's share or export can make one), or ask whoever runs the box to raise its limit."
    );

    // A photo picked while the box is away cannot go up; asked to make it larger once the box
    // is back, the page sends it (picking the same file again would fire nothing).
    let small = dir.path().join("IMG_0003.jpg");
    std::fs::write(&small, phone_jpeg(&test_picture(40, 30, 3), 1)).expect("photo");
    let bind = d.url.trim_start_matches("http://").to_string();
    d.kill9();
    find(c, "#photo-file").await.send_keys(&small.display().to_string()).await.expect("pick the photo");
    let away = "const s = document.querySelector('.photo-form .form-error .said'); \
        return !!s && s.textContent.startsWith('Cannot reach the box')";
    wait_js(c, "the box is away", away, Duration::from_secs(20)).await;
    // Back on the same port, so the page's address stays right.
    let d = common::compat::start_daemon_at(&dir.path().join("data"), &dir.path().join("models"), &bind, &env);
    let big = made_larger(c).await;
    assert_eq!(big, json!([160, 120]), "the photo picked while the box was away, 4× larger");
    assert_eq!(jobs(&http, &d, "upscale").await.len(), 1, "one job, made once the box was back");
    b.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talk_refused_for_want_of_a_face_detector_says_which_to_pull_and_keeps_one_copy_of_its_sound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path(), &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "root", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum"})).await;

    // The API says which detector to pull as data, not only in words.
    let photo_bytes = phone_jpeg(&test_picture(120, 160, 5), 1);
    let portrait = common::api::upload(&d, Some(&mum), "IMG_0004.jpg", photo_bytes.clone()).await;
    let body = json!({"portrait": portrait["id"], "text": "Hello."});
    let (status, v) = call(Some(&mum), Method::POST, d.at("/api/v1/lipsync"), Some(body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["field"], "face_box", "{v}");
    assert_eq!(
        (&v["error"]["model"]["kind"], &v["error"]["model"]["state"], &v["error"]["model"]["pull"]),
        (&json!("face"), &json!("none_installed"), &json!("ultraface-320")),
        "{v}"
    );

    // In the page, with a sound file: refused, and refused again after another press.
    let photo = dir.path().join("IMG_0004.jpg");
    std::fs::write(&photo, &photo_bytes).expect("photo");
    let wav = wav_bytes(speechy_16k(16_000), 16_000);
    let sound = dir.path().join("hello.wav");
    std::fs::write(&sound, &wav).expect("sound");
    let b = browser(dir.path()).await;
    let c = &b.client;
    log_in(c, &d, &mum).await;
    go(c, &d, "#/photo", "#photo-file").await;
    find(c, "#photo-file").await.send_keys(&photo.display().to_string()).await.expect("pick the photo");
    wait_js(c, "the photo's preview", PREVIEW, Duration::from_secs(10)).await;
    find(c, "#photo-narration").await.select_by_value("audio").await.expect("narrate with a sound file");
    find(c, "#photo-audio").await.send_keys(&sound.display().to_string()).await.expect("pick the sound");
    let mut stored = Vec::new();
    for _ in 0..2 {
        find(c, "#photo-talk").await.click().await.expect("make it talk");
        let (said, _) = refusal(c, ".photo-form .form-error").await;
        assert!(said.starts_with("To find the face in the photo the box needs a face detector"), "{said}");
        stored.push(storage_bytes(&d, &mum).await);
    }
    // The sound went up once, at the first press; the photo picked is the one sent above,
    // so the box keeps one copy of it.
    assert_eq!(stored[0], (photo_bytes.len() + wav.len()) as u64, "{stored:?}");
    assert_eq!(stored[1], stored[0], "the second press stored nothing more");
    b.client.clone().close().await.expect("close the browser");
}

/// Kilobytes or megabytes as the page writes them (ui.js `bytes`).
fn page_bytes(n: usize) -> String {
    if n < 1_000_000 { format!("{:.1} KB", n as f64 / 1e3) } else { format!("{:.1} MB", n as f64 / 1e6) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_past_the_upload_limit_is_refused_in_the_page_saying_both_sizes_and_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[limits]\nmax_upload_bytes = 65536\n").expect("config");
    let d = daemon(dir.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    let http = reqwest::Client::new();
    let bytes = phone_jpeg(&test_picture(1600, 1200, 4), 1);
    assert!(bytes.len() > 65536, "{} bytes", bytes.len());
    let photo = dir.path().join("IMG_0005.jpg");
    std::fs::write(&photo, &bytes).expect("photo");
    let b = browser(dir.path()).await;
    let c = &b.client;

    go(c, &d, "#/photo", "#photo-file").await;
    // Every upload the page makes is counted.
    js(
        c,
        "window.uploads = 0; const send = window.fetch; \
         window.fetch = function (url) { if (String(url).includes('/api/v1/artifacts')) window.uploads++; \
         return send.apply(this, arguments); }",
    )
    .await;
    find(c, "#photo-file").await.send_keys(&photo.display().to_string()).await.expect("pick the photo");
    let (said, details) = refusal(c, "#photo-file-error").await;
    let words = format!(
        "Photo: this file is {}; the box takes files up to 65.5 KB. Pick a smaller one (a phone's share or export \
         can make one), or ask whoever runs the box to raise its limit.",
        page_bytes(bytes.len())
    );
    assert_eq!(said, words);
    assert!(details.contains("limits.max_upload_bytes"), "the setting under Details: {details}");
    both_shots(c, "photo-too-large").await;
    // Asked to make it larger, or to talk, the page says it again and sends nothing.
    for button in ["#photo-larger", "#photo-larger", "#photo-talk"] {
        js(c, &format!("document.querySelector('{button}').scrollIntoView({{block: 'center'}})")).await;
        find(c, button).await.click().await.expect("press");
        let (again, _) = refusal(c, "#photo-file-error").await;
        assert_eq!(again, words, "{button}");
    }
    assert_eq!(js(c, "return window.uploads").await, json!(0), "the photo was never sent");
    assert_eq!(jobs(&http, &d, "upscale").await, Vec::<Value>::new(), "nothing was made");
    b.client.clone().close().await.expect("close the browser");
}

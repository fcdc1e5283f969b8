//! The web studio's Picture view started from a picture of the user's own, in the tests'
//! Chromium against the real daemon with the demo models: a PNG picked in the page, its left
//! half painted over by mouse and finger (real pointer input on the paint area), made into a
//! picture whose right half comes back pixel for pixel and whose left half is drawn again
//! (the job has `init_image`, `mask` and `strength`; the mask is the picture's own size, not
//! the size the page shows it at); with nothing painted no mask is sent and all of it is
//! drawn again, while a painted part takes the second pass away saying why; an iPhone's HEIC
//! photo (then removed) and a strength the box refuses are said at their own fields. The view had no way
//! to start from a picture before.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::daemon::DaemonProc;
use common::media::{heic_head, png, test_picture};
use fantoccini::Client;
use fantoccini::actions::{
    ActionSequence, InputSource as _, MOUSE_BUTTON_LEFT, MouseActions, PointerAction, TouchActions,
};
use image::RgbImage;
use serde_json::{Value, json};

use crate::web_studio::browser::{both_shots, browser, find, go, js, wait_js};
use crate::web_studio_forms::{daemon, downloaded};

/// The side of the picture started from: the demo model's smallest offered size.
const SIDE: u32 = 256;

/// The picked picture as the page shows it, once loaded with its paint area: its own size.
const SHOWN: &str = "const i = document.querySelector('.picture-form .start-preview'); \
    return !i.closest('[hidden]') && i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]";

/// Writes the test's picture as a PNG in `dir`; returns it and its path.
pub(crate) fn start_picture(dir: &Path) -> (RgbImage, String) {
    let picture = test_picture(SIDE, SIDE, 3);
    let path = dir.join("start.png");
    std::fs::write(&path, png(&picture)).expect("write the picture");
    (picture, path.display().to_string())
}

/// Opens Picture, types the prompt and picks the picture at `path`.
pub(crate) async fn pick(c: &Client, d: &DaemonProc, path: &str) {
    go(c, d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    find(c, "#pic-init").await.send_keys(path).await.expect("pick the picture");
    let shown = wait_js(c, "the picked picture", SHOWN, Duration::from_secs(10)).await;
    assert_eq!(shown, json!([SIDE, SIDE]));
}

/// What paints a stroke.
#[derive(Clone, Copy)]
pub(crate) enum Pointer {
    Mouse,
    Finger,
}

/// Drags `by` over the paint area through `points`, given in the picture's own pixels (the
/// page shows it at another size): one stroke.
pub(crate) async fn stroke(c: &Client, by: Pointer, points: &[(f64, f64)]) {
    js(c, "document.getElementById('pic-paint').scrollIntoView({block: 'center'})").await;
    let r = js(
        c,
        "const r = document.getElementById('pic-paint').getBoundingClientRect(); return [r.left, r.top, r.width]",
    )
    .await;
    let n = |i: usize| r[i].as_f64().unwrap_or(0.0);
    let k = n(2) / f64::from(SIDE);
    let at = |(x, y): (f64, f64)| ((n(0) + x * k).round(), (n(1) + y * k).round());
    let (x0, y0) = at(points[0]);
    let mut drag =
        vec![PointerAction::MoveTo { duration: None, x: x0, y: y0 }, PointerAction::Down { button: MOUSE_BUTTON_LEFT }];
    for &p in &points[1..] {
        let (x, y) = at(p);
        drag.push(PointerAction::MoveTo { duration: Some(Duration::from_millis(30)), x, y });
    }
    drag.push(PointerAction::Up { button: MOUSE_BUTTON_LEFT });
    let painted: ActionSequence = match by {
        Pointer::Mouse => drag.into_iter().fold(MouseActions::new("mouse".into()), |a, p| a.then(p)).into(),
        Pointer::Finger => drag.into_iter().fold(TouchActions::new("finger".into()), |a, p| a.then(p)).into(),
    };
    c.perform_actions(painted).await.expect("paint");
}

/// Presses "Make picture" and waits for the picture; its job, once succeeded.
async fn made(c: &Client, http: &reqwest::Client, d: &DaemonProc) -> Value {
    js(c, "document.querySelector('form.picture-form button[type=submit]').scrollIntoView({block: 'center'})").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    wait_js(
        c,
        "the picture",
        "const i = document.querySelector('.picture-view .result img.picture'); \
         return i && i.complete && i.naturalWidth > 0",
        Duration::from_secs(120),
    )
    .await;
    let jobs = common::daemon::get_json(http, d, "/api/v1/jobs?kind=image").await;
    let job = jobs["jobs"][0].clone();
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

/// Downloads the picture shown, as a person would; its pixels.
async fn download(c: &Client, downloads: &Path) -> RgbImage {
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    image::load_from_memory(&downloaded(downloads, "png").await).expect("a PNG").to_rgb8()
}

/// Columns `xs` of `a` and `b`: how many pixels differ.
fn differing(a: &RgbImage, b: &RgbImage, xs: std::ops::Range<u32>) -> u32 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.enumerate_pixels().filter(|&(x, y, p)| xs.contains(&x) && p != b.get_pixel(x, y)).count() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_painted_left_half_is_drawn_again_and_the_right_half_comes_back_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let (picture, path) = start_picture(dir.path());
    let b = browser(&downloads).await;
    let c = &b.client;

    pick(c, &d, &path).await;
    let hidden = "return document.getElementById('pic-size').closest('.field').hidden";
    assert_eq!(js(c, hidden).await, json!(true), "the picture sets the size: no size to pick");
    let said = js(c, "return document.getElementById('pic-start-size').textContent").await;
    assert_eq!(said, "The picture is made at 256 × 256, the size of yours.");
    let strength = js(c, "return document.getElementById('pic-change').value").await;
    assert_eq!(strength, "0.75", "the API's own default");
    let shown = js(c, "return document.getElementById('pic-paint').getBoundingClientRect().width").await;
    assert_ne!(shown.as_f64().map(|w| w.round()), Some(f64::from(SIDE)), "shown at another size than its own");
    find(c, "#pic-pass").await.select_by_value("2").await.expect("a second pass");

    // The left half painted row by row with the large brush (31 px across, in the
    // picture's pixels), its right edge 16 px short of the middle, by a finger and a mouse
    // in turn. A finger's drag on a phone must paint, not scroll the page (this headless
    // Chromium does not pan under WebDriver's touch, so the style is what is checked).
    let touch = js(c, "return getComputedStyle(document.getElementById('pic-paint')).touchAction").await;
    assert_eq!(touch, "none", "the paint area takes a finger's drag for itself");
    find(c, "#pic-brush").await.select_by_value("0.12").await.expect("large brush");
    for (row, y) in (0..=SIDE).step_by(24).enumerate() {
        let (y, by) = (f64::from(y), if row % 2 == 0 { Pointer::Finger } else { Pointer::Mouse });
        stroke(c, by, &[(8.0, y), (40.0, y), (72.0, y), (96.0, y)]).await;
    }
    let status = js(c, "return document.getElementById('pic-paint-status').textContent").await;
    assert_eq!(status, "Only what is painted is drawn again; the rest stays as it is.");
    let pass = js(
        c,
        "return [document.getElementById('pic-pass').disabled, document.getElementById('pic-pass-hint').textContent]",
    )
    .await;
    assert_eq!(pass[0], json!(true), "no second pass with a painted part: {pass}");
    assert!(pass[1].as_str().is_some_and(|s| s.starts_with("Not with a painted part")), "and why: {pass}");
    both_shots(c, "picture-edit").await;

    let job = made(c, &http, &d).await;
    let params = &job["params"];
    for field in ["init_image", "mask", "strength"] {
        assert!(!params[field].is_null(), "the job has {field}: {params}");
    }
    assert_eq!((&params["strength"], &params["width"], &params["height"]), (&json!(0.75), &json!(SIDE), &json!(SIDE)));
    assert!(params["refine"].is_null(), "the second pass was not asked for: {params}");
    // The mask: the picture's own size, white where painted, black where not.
    let url = d.at(&format!("/api/v1/artifacts/{}", params["mask"].as_str().expect("mask id")));
    let mask = http.get(url).send().await.expect("mask").bytes().await.expect("bytes");
    let mask = image::load_from_memory(&mask).expect("a PNG mask").to_luma8();
    assert_eq!(mask.dimensions(), (SIDE, SIDE), "the mask is made at the picture's own size");
    assert_eq!((mask.get_pixel(50, 128).0, mask.get_pixel(200, 128).0), ([255], [0]), "white painted, black kept");
    both_shots(c, "picture-edit-made").await;

    let out = download(c, &downloads).await;
    assert_eq!(differing(&out, &picture, SIDE / 2..SIDE), 0, "the right half is the picture's own, pixel for pixel");
    let redrawn = differing(&out, &picture, 0..100);
    assert!(redrawn > 100 * SIDE * 3 / 4, "the painted half is drawn again ({redrawn} px differ)");

    // "Make another" keeps the picture and its paint.
    js(c, "document.getElementById('pic-again').scrollIntoView({block: 'center'})").await;
    find(c, "#pic-again").await.click().await.expect("make another");
    wait_js(c, "the picture again", SHOWN, Duration::from_secs(10)).await;
    let status = js(c, "return document.getElementById('pic-paint-status').textContent").await;
    assert_eq!(status, "Only what is painted is drawn again; the rest stays as it is.", "the paint is kept");
    b.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_painted_the_whole_picture_is_drawn_again_without_a_mask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let (picture, path) = start_picture(dir.path());
    let b = browser(&downloads).await;
    let c = &b.client;

    pick(c, &d, &path).await;
    // A dab takes the second pass away; Undo takes the dab back, and the pass with it.
    stroke(c, Pointer::Finger, &[(128.0, 128.0)]).await;
    let pass = "return document.getElementById('pic-pass').disabled";
    assert_eq!(js(c, pass).await, json!(true), "a painted part takes no second pass");
    find(c, "#pic-undo").await.click().await.expect("undo");
    assert_eq!(js(c, pass).await, json!(false), "nothing painted: the second pass is offered again");
    let status = js(c, "return document.getElementById('pic-paint-status').textContent").await;
    assert_eq!(status, "Nothing painted: all of the picture is drawn again.");
    let strength = find(c, "#pic-change").await;
    strength.clear().await.expect("clear");
    strength.send_keys("0.9").await.expect("type");

    let job = made(c, &http, &d).await;
    let params = &job["params"];
    assert!(!params["init_image"].is_null(), "started from the picture: {params}");
    assert!(params["mask"].is_null(), "nothing painted, no mask: {params}");
    assert_eq!((&params["strength"], &params["width"]), (&json!(0.9), &json!(SIDE)), "{params}");
    let out = download(c, &downloads).await;
    for (half, xs) in [("left", 0..SIDE / 2), ("right", SIDE / 2..SIDE)] {
        let changed = differing(&out, &picture, xs);
        assert!(changed > SIDE * SIDE / 2 * 3 / 4, "the {half} half is drawn again too ({changed} px differ)");
    }
    b.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heic_photo_and_a_strength_the_box_refuses_are_said_at_their_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let (_, path) = start_picture(dir.path());
    let heic = dir.path().join("IMG_0002.HEIC");
    std::fs::write(&heic, heic_head()).expect("heic");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-init").await.send_keys(&heic.display().to_string()).await.expect("pick the HEIC");
    let said = wait_js(
        c,
        "the file's refusal",
        "const s = document.querySelector('#pic-init-error .said'); return s && s.textContent",
        Duration::from_secs(20),
    )
    .await;
    let said = said.as_str().unwrap_or_default();
    assert!(said.starts_with("Start from a picture (optional): "), "said at the picture's field: {said}");
    assert!(said.contains("Share it as JPEG"), "with what to do about it: {said}");
    let hidden = "return !!document.querySelector('.picture-form .start').hidden";
    assert_eq!(js(c, hidden).await, json!(true), "no paint area for a file the box refused");
    // It is taken away beside it: the size to pick comes back.
    find(c, "#pic-remove").await.click().await.expect("remove the picture");
    let size = "return !document.getElementById('pic-size').closest('.field').hidden";
    assert_eq!(js(c, size).await, json!(true), "no picture, so a size to pick");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-init", "the focus back on the file's field");

    find(c, "#pic-prompt").await.send_keys("a red circle").await.expect("type");
    find(c, "#pic-init").await.send_keys(&path).await.expect("pick the picture");
    wait_js(c, "the picked picture", SHOWN, Duration::from_secs(10)).await;
    let strength = find(c, "#pic-change").await;
    strength.clear().await.expect("clear");
    strength.send_keys("2").await.expect("type");
    js(c, "document.querySelector('form.picture-form button[type=submit]').scrollIntoView({block: 'center'})").await;
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the strength's refusal",
        "const s = document.querySelector('#pic-change-error'); return s && s.textContent",
        Duration::from_secs(20),
    )
    .await;
    let said = said.as_str().unwrap_or_default();
    assert!(said.starts_with("How much may change (0.05–1): "), "said by the field's label: {said}");
    assert!(said.contains("between 0 and 1"), "with what it takes: {said}");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-change", "the focus is on the field to mend");
    both_shots(c, "picture-edit-refused").await;
    b.client.clone().close().await.expect("close the browser");
}

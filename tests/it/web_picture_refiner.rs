//! The web studio's Picture view with a refiner (A1111's "Refiner": a model and "Switch at"),
//! in the tests' Chromium against the real daemon with two tiny SD models of one latent space,
//! `tiny-sd` and its "fine-tune" `tiny-sd-2`: "Refiner" offers "None" and the other installed
//! model, is picked and labelled by keyboard, asks "Switch at" (0.8) only once one is picked,
//! sends `refine: {switch_at, model}` (the box's base → refiner split: the job's switch and
//! model, the picture's PNG text `Refiner: tiny-sd-2`, the result saying so), and is kept
//! between visits; it and a second pass each stand aside while the other is picked, saying why
//! in their hints, as it does for a painted part; a switch the box refuses is said at "Switch
//! at"; with one model installed
//! it is not offered; on a 320 px phone at twice the text size the view still fits. Before,
//! there was no refiner in the studio: a split could only be asked for by the API. How the
//! refiner goes on is chosen too ("Refiner goes on as": A1111's one run, the default, or
//! ComfyUI's run of its own from the leftover noise), sent and kept as chosen; before, every
//! split the studio sent was `continue: run`.

use std::time::Duration;

use fantoccini::Client;
use fantoccini::key::Key;
use serde_json::json;

use common::compat::TINY_SD;

use crate::common;
use crate::hires_checkpoint::TINY_SD_2;
use crate::web_a11y::ax::{controls, press, tab_to};
use crate::web_picture_edit::{Pointer, pick, start_picture, stroke};
use crate::web_picture_pass_model::{TwoModels, make, two_models};
use crate::web_picture_settings::parameters_text;
use crate::web_studio::browser::{both_shots, browser_with, find, go, js, shot, wait_js};
use crate::web_studio_forms::downloaded;

/// The refiner's choice: its value, its choices' values, and whether it is shown and usable.
const REFINER: &str = "const s = document.getElementById('pic-refiner'); \
     return [s.value, [...s.options].map(o => o.value), !s.closest('.field').hidden, !s.disabled]";

/// Whether "Switch at" is shown, and its value.
const SWITCH_AT: &str =
    "const s = document.getElementById('pic-switch-at'); return [!s.closest('.field').hidden, s.value]";

/// The second pass's choice: whether it can be used, and its hint.
const PASS: &str = "return [!document.getElementById('pic-pass').disabled, \
     document.getElementById('pic-pass-hint').textContent]";

/// Whether "Refiner goes on as" is shown, and its value.
const CONTINUE: &str =
    "const s = document.getElementById('pic-refiner-continue'); return [!s.closest('.field').hidden, s.value]";

/// The refiner's hint.
const HINT: &str = "return document.getElementById('pic-refiner-hint').textContent";

/// The controls a screen reader hears named `name`.
async fn heard(c: &Client, name: &str) -> Vec<(String, String)> {
    controls(c).await.into_iter().filter(|(_, n)| n == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refiner_is_picked_by_keyboard_sent_as_a_split_and_said() {
    let TwoModels { dir, models, downloads, d, http, b } = two_models().await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-model").await.select_by_value(TINY_SD).await.expect("pick tiny-sd");
    assert_eq!(js(c, REFINER).await, json!(["", ["", TINY_SD_2], true, true]), "\"None\" and the other model");
    let none = js(c, "return document.querySelector('#pic-refiner option').textContent").await;
    assert_eq!(none, "None", "no refiner unless one is picked");
    assert_eq!(js(c, SWITCH_AT).await[0], json!(false), "no switch to set without a refiner");
    assert_eq!(heard(c, "Refiner").await, vec![("combobox".to_string(), "Refiner".to_string())], "labelled");

    // By keyboard: the refiner picked with the arrow keys, then its switch, with its hint.
    find(c, "#pic-prompt").await.send_keys("a red circle on a blue background").await.expect("type");
    let at = tab_to(c, "Refiner", 20).await;
    assert!(at.starts_with("select#pic-refiner"), "{at}");
    press(c, &[Key::Down]).await;
    assert_eq!(js(c, REFINER).await[0], TINY_SD_2, "tiny-sd-2 by the arrow key");
    assert_eq!(js(c, SWITCH_AT).await, json!([true, "0.8"]), "A1111's default switch, asked once a refiner is picked");
    let at = tab_to(c, "Switch at (0–1)", 3).await;
    assert!(at.starts_with("input#pic-switch-at"), "{at}");
    let described = js(c, "return document.getElementById('pic-switch-at').getAttribute('aria-describedby')").await;
    assert_eq!(described, "pic-switch-at-hint pic-switch-at-error", "its hint and error read with it");

    // A refiner and a second pass are each the request's one `refine`: the other steps aside, saying why.
    let pass = js(c, PASS).await;
    assert_eq!(pass[0], json!(false), "no second pass beside a refiner");
    assert!(pass[1].as_str().unwrap_or_default().starts_with("Not with a refiner"), "{pass}");
    find(c, "#pic-refiner").await.select_by_value("").await.expect("no refiner");
    assert_eq!(js(c, PASS).await[0], json!(true), "a second pass again");
    find(c, "#pic-pass").await.select_by_value("1.5").await.expect("a pass");
    assert_eq!(js(c, REFINER).await, json!(["", ["", TINY_SD_2], true, false]), "no refiner beside a second pass");
    let hint = js(c, HINT).await;
    assert!(hint.as_str().unwrap_or_default().starts_with("Not with a second pass"), "{hint}");
    find(c, "#pic-pass").await.select_by_value("").await.expect("no pass");
    assert_eq!(js(c, REFINER).await[3], json!(true), "a refiner again");
    assert!(js(c, HINT).await.as_str().unwrap_or_default().starts_with("Another installed model"));

    // Drawn: the split of tiny-sd's schedule, tiny-sd-2 finishing it.
    find(c, "#pic-refiner").await.select_by_value(TINY_SD_2).await.expect("tiny-sd-2");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    js(c, "document.querySelector('details.more').open = true").await;
    find(c, "#pic-steps").await.send_keys("10").await.expect("steps");
    both_shots(c, "picture-refiner").await;
    let job = make(c, &http, &d).await;
    let refine = &job["params"]["refine"];
    assert_eq!((&refine["model"], &refine["switch"]["at"]), (&json!(TINY_SD_2), &json!(0.8)), "{job}");
    assert_eq!(refine["switch"]["continue"], json!("run"), "the sampler's run goes on, as A1111's refiner's: {job}");
    assert_eq!((&job["params"]["model"], refine.get("resize")), (&json!(TINY_SD), None), "{job}");
    let step = refine["switch"]["step"].as_u64().expect("the switch's step");
    let drawn = format!("Drawn with {TINY_SD}, its refiner {TINY_SD_2} the last {} of 10 steps.", 10 - step);
    let says = "const p = document.querySelector('.picture-view .result .pass-model'); return p && p.textContent";
    assert_eq!(js(c, says).await, json!(drawn), "the result says the refiner");
    find(c, ".picture-view a[download]").await.click().await.expect("download");
    let text = parameters_text(&downloaded(&downloads, "png").await);
    assert!(text.contains(&format!("Refiner: {TINY_SD_2}")) && text.contains("Refiner switch at: 0.8"), "{text}");

    // Kept on "Make another" and between visits.
    find(c, "#pic-again").await.click().await.expect("make another");
    assert_eq!(js(c, REFINER).await[0], TINY_SD_2, "kept on Make another");
    go(c, &d, "#/box", "table tbody tr").await;
    go(c, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(c, REFINER).await, json!([TINY_SD_2, ["", TINY_SD_2], true, true]), "kept between visits");
    assert_eq!(js(c, SWITCH_AT).await, json!([true, "0.8"]));

    // A switch the box refuses is said at "Switch at", by its label, with the focus there.
    let switch = find(c, "#pic-switch-at").await;
    switch.clear().await.expect("clear");
    switch.send_keys("1.5").await.expect("a share past the end");
    find(c, "form.picture-form button[type=submit]").await.click().await.expect("make it");
    let said = wait_js(
        c,
        "the refusal",
        "const s = document.querySelector('#pic-switch-at-error'); return s && s.textContent",
        Duration::from_secs(20),
    )
    .await;
    let said = said.as_str().unwrap_or_default();
    assert!(said.starts_with("Switch at (0–1): "), "said by the field's label: {said}");
    assert_eq!(js(c, "return document.activeElement.id").await, "pic-switch-at", "the focus is on the field to mend");

    // A painted part takes no refiner (the box draws only that part again); Undo gives it back.
    let (_, start) = start_picture(dir.path());
    pick(c, &d, &start).await;
    assert_eq!(js(c, REFINER).await[3], json!(true), "a picture started from takes a refiner");
    stroke(c, Pointer::Mouse, &[(128.0, 128.0)]).await;
    assert_eq!(js(c, REFINER).await[3], json!(false), "not with a painted part");
    assert!(js(c, HINT).await.as_str().unwrap_or_default().starts_with("Not with a painted part"));
    assert_eq!(js(c, SWITCH_AT).await[0], json!(false), "nor its switch");
    find(c, "#pic-undo").await.click().await.expect("undo");
    assert_eq!(js(c, REFINER).await[3], json!(true), "nothing painted: the refiner again");
    b.client.clone().close().await.expect("close the browser");

    // On a 320 px phone at twice the text size, with the refiner and its switch shown, nothing is wider than the screen.
    let large = browser_with(&downloads, json!({"webkit": {"webprefs": {"default_font_size": 32}}})).await;
    let p = &large.client;
    go(p, &d, "#/picture", "#pic-prompt").await;
    find(p, "#pic-refiner").await.select_by_value(TINY_SD_2).await.expect("a refiner");
    shot(p, "a11y-large-text-picture-refiner", 320, 740).await;
    // Shown again scrolled to the choices, at the phone's size now.
    js(p, "document.getElementById('pic-refiner').closest('.field').scrollIntoView()").await;
    shot(p, "a11y-large-text-picture-refiner", 320, 740).await;
    let read =
        js(p, "return [getComputedStyle(document.body).fontSize, document.documentElement.scrollWidth - innerWidth]")
            .await;
    assert_eq!(read[0], "32px", "the reader's text size");
    assert!(read[1].as_i64().unwrap_or(1) <= 0, "the picture view is {} px wider than the phone", read[1]);
    let fits = "return ['pic-refiner', 'pic-switch-at'].every((id) => { \
                const r = document.getElementById(id).getBoundingClientRect(); return r.width > 0 && r.right <= innerWidth; })";
    assert_eq!(js(p, fits).await, json!(true), "the choices themselves fit");

    // With one diffusion model installed there is nothing to refine with: not offered, nor heard.
    std::fs::remove_file(models.join(TINY_SD_2)).expect("remove tiny-sd-2");
    go(p, &d, "#/box", "table tbody tr").await;
    go(p, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(p, REFINER).await, json!(["", [""], false, true]), "no refiner with one model");
    assert_eq!(js(p, SWITCH_AT).await[0], json!(false));
    assert_eq!(heard(p, "Refiner").await, Vec::<(String, String)>::new(), "nor heard by a screen reader");
    assert_eq!(js(p, PASS).await[0], json!(true), "the second pass as before");
    large.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn how_the_refiner_goes_on_is_chosen_sent_and_kept() {
    let TwoModels { dir: _dir, d, http, b, .. } = two_models().await;
    let c = &b.client;

    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-model").await.select_by_value(TINY_SD).await.expect("pick tiny-sd");
    assert_eq!(js(c, CONTINUE).await[0], json!(false), "not asked without a refiner");
    find(c, "#pic-refiner").await.select_by_value(TINY_SD_2).await.expect("tiny-sd-2");
    assert_eq!(js(c, CONTINUE).await, json!([true, "run"]), "A1111's one run unless chosen otherwise");
    assert_eq!(
        heard(c, "Refiner goes on as").await,
        vec![("combobox".to_string(), "Refiner goes on as".to_string())],
        "labelled"
    );

    find(c, "#pic-refiner-continue").await.select_by_value("leftover").await.expect("ComfyUI's");
    find(c, "#pic-prompt").await.send_keys("a red circle").await.expect("type");
    find(c, "#pic-seed").await.send_keys("7").await.expect("seed");
    js(c, "document.querySelector('details.more').open = true").await;
    find(c, "#pic-steps").await.send_keys("10").await.expect("steps");
    let job = make(c, &http, &d).await;
    let refine = &job["params"]["refine"];
    assert_eq!(refine["model"], json!(TINY_SD_2), "{job}");
    // A run of its own from the leftover noise is the split's default, which a job leaves unsaid.
    assert!(refine["switch"].is_object(), "a split: {job}");
    assert!(refine["switch"].get("continue").is_none_or(|c| c == "leftover"), "{job}");

    // Kept on "Make another" and between visits.
    find(c, "#pic-again").await.click().await.expect("make another");
    assert_eq!(js(c, CONTINUE).await, json!([true, "leftover"]), "kept on Make another");
    go(c, &d, "#/box", "table tbody tr").await;
    go(c, &d, "#/picture", "#pic-prompt").await;
    assert_eq!(js(c, CONTINUE).await, json!([true, "leftover"]), "kept between visits");
    b.client.clone().close().await.expect("close the browser");
}

//! The web studio used without a mouse, with a screen reader, and on a phone with large
//! text, in the tests' Chromium against the real daemon with the demo models (the harness
//! of `web_studio`). Keys are pressed as a keyboard does (WebDriver key actions to whatever
//! has the focus), the screen reader's view is Chromium's accessibility tree (CDP), and what
//! it would say is every change inside the page's live regions. A person: makes a film from
//! New film by Tab and Enter and hears it along, lands on what each action brought up (never
//! the page's start), hears a refusal and closes its Details with Escape, tells apart the
//! buttons of a list, keeps their place when a card goes, and reads every view on a
//! 360 and 320 px phone at twice the text size.

use crate::common;

pub(crate) mod ax;

use std::path::Path;
use std::time::Duration;

use ax::{CONTRAST, controls, focused, listen, press, said, tab_to, tree, type_keys, until, wait_focus};
use common::daemon::DaemonProc;
use common::provision;
use fantoccini::Client;
use fantoccini::key::Key;
use serde_json::{Value, json};

use crate::web_studio::browser::{browser, browser_with, find, go, js, shot, wait_js};
use crate::web_studio::demo_models;

/// A daemon over the demo models in `dir`.
fn daemon(dir: &Path) -> DaemonProc {
    let models = demo_models(dir);
    let runtime = provision::runtime();
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf8")),
    ];
    DaemonProc::start(&dir.join("data"), &env)
}

/// Makes a profile named `name` (with the demo portrait when `portrait`); returns its id.
async fn profile(http: &reqwest::Client, d: &DaemonProc, name: &str, portrait: bool) -> String {
    let mut form = reqwest::multipart::Form::new().text("name", name.to_string());
    if portrait {
        let png = std::fs::read(common::source_tree().join("assets/demo/portrait.png")).expect("demo portrait");
        form = form
            .text("face_box", "100,60,120,120")
            .text("image_model", "demo-shapes")
            .part("portrait", reqwest::multipart::Part::bytes(png).file_name("portrait.png"));
    }
    let resp = http.post(d.at("/api/v1/profiles")).multipart(form).send().await.expect("profile");
    let made: Value = resp.json().await.expect("json");
    made["id"].as_str().unwrap_or_else(|| panic!("a profile: {made}")).to_string()
}

/// Pauses (`pause`) or resumes (`resume`) the queue, as `key` when given.
async fn queue(http: &reqwest::Client, d: &DaemonProc, what: &str, key: Option<&str>) {
    let mut req = http.post(d.at(&format!("/api/v1/queue/{what}")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    assert_eq!(req.send().await.expect("queue").status(), 200, "queue {what}");
}

/// Buttons of the page that share their name with another (a screen reader's list of
/// buttons cannot tell them apart).
async fn same_named_buttons(c: &Client) -> Vec<String> {
    let mut names: Vec<String> =
        controls(c).await.into_iter().filter(|(role, _)| role == "button").map(|(_, name)| name).collect();
    names.sort();
    let mut twice: Vec<String> = names.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect();
    twice.dedup();
    twice
}

/// Views of the studio: every control has a name, and no live region holds a whole view.
async fn names_and_regions(c: &Client, d: &DaemonProc) {
    for (hash, ready) in [
        ("#/new", "#script"),
        ("#/picture", "#pic-prompt"),
        ("#/photo", "#photo-file"),
        ("#/speech", "#speech-text"),
        ("#/profiles", "[data-profile]"),
        ("#/box", "table tbody tr"),
    ] {
        go(c, d, hash, ready).await;
        named_and_quiet(c, hash).await;
    }
}

/// The view shown (`what` names it): every control has a name, no live region holds the
/// whole view, and no two buttons share a name.
async fn named_and_quiet(c: &Client, what: &str) {
    let nodes = tree(c).await;
    let nameless: Vec<String> = nodes
        .iter()
        .filter(|n| {
            ["button", "link", "textbox", "combobox", "checkbox", "spinbutton", "application"]
                .contains(&n.role.as_str())
        })
        .filter(|n| n.name.trim().is_empty())
        .map(|n| n.role.clone())
        .collect();
    assert_eq!(nameless, Vec::<String>::new(), "{what}: controls a screen reader cannot name");
    // A live region around the view reads every redraw out (a film's progress: hundreds).
    let loud: Vec<String> = nodes
        .iter()
        .filter(|n| n.prop("live").is_string() && ["main", "list", "form"].contains(&n.role.as_str()))
        .map(|n| n.role.clone())
        .collect();
    assert_eq!(loud, Vec::<String>::new(), "{what}: a whole view or list is a live region");
    assert_eq!(same_named_buttons(c).await, Vec::<String>::new(), "{what}: buttons named alike");
}

/// Every view read on a phone (`w` CSS px wide) with the text at twice its size: the text
/// follows the reader's setting and nothing makes the page wider than the screen.
async fn phone_at_double_text(c: &Client, d: &DaemonProc, film: &str) {
    for w in [360, 320] {
        for (hash, ready) in [
            ("#/new", "#script"),
            (&*format!("#/watch/{film}"), ".result video"),
            ("#/library", "[data-job] video"),
            ("#/profiles", "[data-profile]"),
            ("#/box", "table tbody tr"),
            ("#/speech", "#speech-text"),
            ("#/photo", "#photo-file"),
        ] {
            go(c, d, hash, ready).await;
            let view = hash.split('/').nth(1).unwrap_or_default();
            shot(c, &format!("a11y-large-text-{view}"), w, 740).await;
            let read = js(
                c,
                "return [getComputedStyle(document.body).fontSize, document.documentElement.scrollWidth - innerWidth]",
            )
            .await;
            assert_eq!(read[0], "32px", "{hash} at {w} px: the page keeps its own text size, not the reader's 32 px");
            assert!(
                read[1].as_i64().unwrap_or(1) <= 0,
                "{hash} at {w} px: the page is {} px wider than the phone",
                read[1]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_is_made_heard_and_read_by_keyboard_screen_reader_and_phone_at_double_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let presenter = profile(&http, &d, "Demo presenter", true).await;
    profile(&http, &d, "Grandpa", false).await;
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;
    names_and_regions(c, &d).await;

    // Fields' edges and placeholders can be seen (WCAG 1.4.11: 3:1; 1.4.3: 4.5:1).
    go(c, &d, "#/library", "#lib-search").await;
    let faint = js(
        c,
        &format!(
            "{CONTRAST} const card = getComputedStyle(document.querySelector('.card') || document.body).backgroundColor; \
             const s = getComputedStyle(document.getElementById('lib-search')); \
             const edge = ratio(s.borderTopColor, getComputedStyle(document.body).backgroundColor); \
             const hold = ratio(getComputedStyle(document.getElementById('lib-search'), '::placeholder').color, s.backgroundColor); \
             return [Math.round(edge * 100) / 100, Math.round(hold * 100) / 100, card]"
        ),
    )
    .await;
    assert!(faint[0].as_f64().unwrap_or(0.0) >= 3.0, "a field's edge against the page: {faint}");
    assert!(faint[1].as_f64().unwrap_or(0.0) >= 4.5, "a placeholder against its field: {faint}");
    go(c, &d, "#/new", "#script").await;
    let edge = js(
        c,
        &format!(
            "{CONTRAST} const card = getComputedStyle(document.querySelector('form.card')).backgroundColor; \
             return Math.min(...[...document.querySelectorAll('form.card textarea, form.card select')] \
               .map((e) => ratio(getComputedStyle(e).borderTopColor, card)))"
        ),
    )
    .await;
    assert!(edge.as_f64().unwrap_or(0.0) >= 3.0, "New film's fields' edges against the card: {edge}");

    // New film by keyboard only: the presenter picked with the arrow keys, Tab reaches
    // Render film, Enter submits, and the focus lands on the Watch view's heading.
    go(c, &d, "#/new", &format!("#profile option[value='{presenter}']")).await;
    tab_to(c, "Presenter profile", 20).await;
    for _ in 0..3 {
        if js(c, "return document.getElementById('profile').value").await == json!(presenter) {
            break;
        }
        press(c, &[Key::Down]).await;
    }
    assert_eq!(js(c, "return document.getElementById('profile').value").await, json!(presenter), "picked by arrows");
    assert_eq!(js(c, "return document.getElementById('size').value").await, "256", "the demo model's size");
    tab_to(c, "Render film", 20).await;
    listen(c).await;
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "after Render film", ".watch h1").await;
    assert!(at.starts_with("h1 \"Watch"), "{at}");
    assert_eq!(js(c, "return document.title").await, "Watch · reelbox studio", "the title says the view");
    let film = js(c, "return location.hash.split('/')[2]").await.as_str().unwrap_or_default().to_string();

    // Its progress is said as it goes, in a few lines, and its end.
    wait_js(
        c,
        "the film",
        "return document.getElementById('percent').textContent === '100 %'",
        Duration::from_secs(600),
    )
    .await;
    until(c, "its end said", "return (window.__said || []).some((s) => s.includes('ready'))").await;
    let heard = said(c).await;
    assert!(heard.iter().any(|s| s.contains(" % done")), "progress is said: {heard:?}");
    assert!(heard.len() <= 30, "{} things said while one film was made: {heard:?}", heard.len());
    let status = tree(c).await.into_iter().any(|n| n.role == "status" && n.prop("live") == "polite");
    assert!(status, "the progress line is a polite status region");
    let players = controls(c).await;
    assert!(
        players.iter().any(|(role, name)| role == "Video" && name.starts_with("Film: Welcome to reelbox")),
        "the film's player is named by what it says, not its [directions]: {players:?}"
    );

    // A picture by keyboard: the focus follows the form's step aside; Cancel hands it to
    // Retry; Retry back to Cancel; the finished picture is described by its prompt.
    queue(&http, &d, "pause", None).await;
    go(c, &d, "#/picture", "#pic-prompt").await;
    tab_to(c, "Prompt", 20).await;
    type_keys(c, "a red circle").await;
    tab_to(c, "Make picture", 10).await;
    listen(c).await;
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "after Make picture", ".watch h1").await;
    assert!(at.starts_with("h1 \"Your picture"), "{at}");
    tab_to(c, "Cancel", 10).await;
    press(c, &[Key::Enter]).await;
    until(c, "canceled", "return document.getElementById('job-state').textContent === 'canceled'").await;
    assert_eq!(wait_focus(c, "after Cancel", "button").await, "button \"Retry\"", "the focus moves to Retry");
    until(c, "the cancel said", "return window.__said.some((s) => s.includes('Canceled by its owner'))").await;
    queue(&http, &d, "resume", None).await;
    press(c, &[Key::Enter]).await;
    until(c, "the picture", "return document.getElementById('job-state').textContent === 'succeeded'").await;
    let pictures: Vec<String> = tree(c).await.into_iter().filter(|n| n.role == "image").map(|n| n.name).collect();
    assert!(pictures.iter().any(|n| n == "a red circle"), "the picture is described by its prompt: {pictures:?}");

    // The Library's cards: each button names its work.
    go(c, &d, "#/library", "[data-job]").await;
    tab_to(c, "Show", 20).await;
    press(c, &[Key::Down, Key::Down, Key::Down]).await;
    until(c, "everything", "return document.querySelectorAll('[data-job]').length === 2").await;
    assert_eq!(same_named_buttons(c).await, Vec::<String>::new(), "the Library's buttons named alike");

    // On a phone at twice the text size.
    let large = browser_with(&downloads, json!({"webkit": {"webprefs": {"default_font_size": 32}}})).await;
    phone_at_double_text(&large.client, &d, &film).await;
    large.client.clone().close().await.expect("close the phone");

    // With keys: logged in by keyboard, the focus on the first view's heading; a refusal
    // that names no field takes the focus; its Details close with Escape.
    let key = |body: Value, admin: Option<String>| {
        let mut req = http.post(d.at("/api/v1/keys")).json(&body);
        if let Some(a) = admin {
            req = req.bearer_auth(a);
        }
        async move {
            let v: Value = req.send().await.expect("key").json().await.expect("json");
            v["key"].as_str().expect("key").to_string()
        }
    };
    let admin = key(json!({"name": "root", "scope": "admin"}), None).await;
    let mum = key(json!({"name": "mum", "max_queued": 1}), Some(admin.clone())).await;
    queue(&http, &d, "pause", Some(&admin)).await;
    let first = http.post(d.at("/api/v1/speech")).bearer_auth(&mum).json(&json!({"text": "First."})).send();
    assert_eq!(first.await.expect("speech").status(), 202, "mum's first line waits");
    go(c, &d, "", "#login:not([hidden])").await;
    assert_eq!(focused(c).await, "input#login-key \"Your key\"");
    type_keys(c, &mum).await;
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "after logging in", "main h1").await;
    assert_eq!(at, "h1 \"New film\"");
    assert_eq!(js(c, "return document.title").await, "New film · reelbox studio");
    go(c, &d, "#/speech", "#speech-text").await;
    wait_focus(c, "Speech", "main h1").await;
    tab_to(c, "Text", 5).await;
    type_keys(c, "Second.").await;
    tab_to(c, "Speak", 5).await;
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "the refusal", "form.speech .form-error").await;
    assert!(at.contains("You have used your share of the box"), "{at}");
    press(c, &[Key::Tab]).await;
    assert_eq!(focused(c).await, "summary \"Details\"");
    press(c, &[Key::Enter]).await;
    assert_eq!(js(c, "return document.querySelector('form.speech details').open").await, true, "Enter opens Details");
    press(c, &[Key::Escape]).await;
    assert_eq!(js(c, "return document.querySelector('form.speech details').open").await, false, "Escape closes it");
    assert_eq!(focused(c).await, "summary \"Details\"", "and leaves the focus on it");
    b.client.clone().close().await.expect("close the browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyboard_user_keeps_their_place_as_cards_go_and_hears_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    for name in ["Grandpa", "Grandma"] {
        profile(&http, &d, name, false).await;
    }
    queue(&http, &d, "pause", None).await;
    for text in ["First line.", "Second line."] {
        let resp = http.post(d.at("/api/v1/speech")).json(&json!({"text": text})).send().await.expect("speech");
        assert_eq!(resp.status(), 202);
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    // Library: Cancel leaves the focus on the card's Delete; Delete on the next card.
    go(c, &d, "#/library", "#lib-kind").await;
    tab_to(c, "Show", 20).await;
    press(c, &[Key::Down, Key::Down]).await;
    until(c, "the speech cards", "return document.querySelectorAll('[data-job] button').length === 2").await;
    assert_eq!(same_named_buttons(c).await, Vec::<String>::new(), "the Library's buttons named alike");
    let at = tab_to(c, "Cancel speech: Second line.", 10).await;
    assert!(at.starts_with("button"), "{at}");
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "after Cancel", "[data-job] button.danger").await;
    assert_eq!(at, "button \"Delete speech: Second line.\"", "the canceled card's Delete has the focus");
    press(c, &[Key::Enter]).await;
    c.accept_alert().await.expect("confirm the delete");
    let at = wait_focus(c, "after Delete", "[data-job] h2 a").await;
    assert_eq!(at, "a \"First line.\"", "the next card's title has the focus");
    until(c, "the delete said", "return document.querySelector('.library > [role=status]').textContent === 'Deleted.'")
        .await;

    // Profiles: saving says so; Delete leaves the focus on the next profile's Edit.
    go(c, &d, "#/profiles", "[data-profile]").await;
    assert_eq!(same_named_buttons(c).await, Vec::<String>::new(), "the Profiles' buttons named alike");
    tab_to(c, "Edit Grandma", 30).await;
    press(c, &[Key::Enter]).await;
    assert_eq!(focused(c).await, "input#profile-name \"Name\"");
    listen(c).await;
    tab_to(c, "Save profile", 20).await;
    press(c, &[Key::Enter]).await;
    until(c, "saved", "return window.__said.some((s) => s.includes('Saved Grandma.'))").await;
    tab_to(c, "Delete Grandma", 20).await;
    press(c, &[Key::Enter]).await;
    c.accept_alert().await.expect("confirm the delete");
    until(c, "one profile left", "return document.querySelectorAll('[data-profile]').length === 1").await;
    let at = wait_focus(c, "after deleting a profile", "[data-profile] button").await;
    assert_eq!(at, "button \"Edit Grandpa\"");

    // Box: each Pull names its model; a pull keeps the focus on its button and says its end.
    queue(&http, &d, "resume", None).await;
    go(c, &d, "#/box", "table tbody tr").await;
    assert_eq!(same_named_buttons(c).await, Vec::<String>::new(), "the Box's buttons named alike");
    listen(c).await;
    tab_to(c, "Pull demo-upscaler", 40).await;
    press(c, &[Key::Enter]).await;
    until(c, "the pull said", "return window.__said.some((s) => s.includes('demo-upscaler: installed.'))").await;
    assert_eq!(focused(c).await, "button \"Pull demo-upscaler\"", "the focus stays on the Pull pressed");
    b.client.clone().close().await.expect("close the browser");
}

/// Picture started from a picture, by keyboard and screen reader: every control the picture
/// brings has a name; Tab reaches the paint area, named by its label; the arrow keys move its
/// brush, Space starts and stops painting and what is painted is said; the picture made
/// redraws the part painted by keys (its mask white there, black elsewhere, at the picture's
/// own size); on a 320 px phone at twice the text size the view still fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_to_redraw_is_painted_by_keyboard_and_every_new_control_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    let http = reqwest::Client::new();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let start = dir.path().join("start.png");
    std::fs::write(&start, common::media::png(&common::media::test_picture(256, 256, 3))).expect("picture");
    let start = start.display().to_string();
    let shown = "const i = document.querySelector('.start-preview'); \
        return !i.closest('[hidden]') && i.complete && i.naturalWidth > 0";
    let b = browser(&downloads).await;
    let c = &b.client;

    // The file is picked in the browser's own dialog, which WebDriver cannot drive.
    go(c, &d, "#/picture", "#pic-prompt").await;
    find(c, "#pic-prompt").await.send_keys("a red circle").await.expect("type");
    find(c, "#pic-init").await.send_keys(&start).await.expect("pick");
    until(c, "the picture", shown).await;
    named_and_quiet(c, "#/picture with a picture").await;
    let area = tree(c).await.into_iter().find(|n| n.role == "application");
    let area = area.map(|n| n.name);
    assert_eq!(area.as_deref(), Some("Paint what to redraw (optional)"), "the paint area is named by its label");

    js(c, "document.getElementById('pic-init').focus()").await;
    let at = tab_to(c, "Paint what to redraw (optional)", 10).await;
    assert!(at.starts_with("canvas#pic-paint"), "{at}");
    listen(c).await;
    // The medium brush (15 px of 256) starts in the middle and moves half its size a
    // press: down there, six up, and up.
    press(c, &[Key::Space, Key::Up, Key::Up, Key::Up, Key::Up, Key::Up, Key::Up, Key::Space]).await;
    let heard = said(c).await;
    assert!(heard.iter().any(|s| s.starts_with("pic-paint-status: Painting")), "painting is said: {heard:?}");
    let last = heard.last().map(String::as_str);
    assert_eq!(last, Some("pic-paint-status: Only what is painted is drawn again; the rest stays as it is."));
    let pass = "return document.getElementById('pic-pass').disabled";
    assert_eq!(js(c, pass).await, json!(true), "a painted part takes no second pass");
    shot(c, "a11y-picture-painted-by-keys", 1280, 800).await;

    // Undo by keyboard takes the stroke back; painted again from where the brush is, back
    // down to the middle, the picture is made.
    tab_to(c, "Undo", 10).await;
    press(c, &[Key::Enter]).await;
    assert_eq!(js(c, pass).await, json!(false), "nothing painted again");
    js(c, "document.getElementById('pic-init').focus()").await;
    tab_to(c, "Paint what to redraw (optional)", 10).await;
    press(c, &[Key::Space, Key::Down, Key::Down, Key::Down, Key::Down, Key::Down, Key::Down, Key::Space]).await;
    tab_to(c, "Make picture", 30).await;
    press(c, &[Key::Enter]).await;
    let at = wait_focus(c, "after Make picture", ".watch h1").await;
    assert!(at.starts_with("h1 \"Your picture"), "{at}");
    until(c, "the picture made", "return document.getElementById('job-state').textContent === 'succeeded'").await;
    let jobs: Value = http.get(d.at("/api/v1/jobs?kind=image")).send().await.expect("jobs").json().await.expect("json");
    let mask = jobs["jobs"][0]["params"]["mask"].as_str().unwrap_or_else(|| panic!("a mask: {jobs}")).to_string();
    let bytes = http.get(d.at(&format!("/api/v1/artifacts/{mask}"))).send().await.expect("mask").bytes().await;
    let mask = image::load_from_memory(&bytes.expect("bytes")).expect("a PNG").to_luma8();
    assert_eq!(mask.dimensions(), (256, 256), "the picture's own size");
    // The brush went between the middle (128, 128) and 6 × 7.7 px above it.
    let column: Vec<u8> = [140, 128, 100, 85, 60].iter().map(|&y| mask.get_pixel(128, y).0[0]).collect();
    assert_eq!(column, vec![0, 255, 255, 255, 0], "painted where the keys moved the brush, nowhere else");
    assert_eq!((mask.get_pixel(148, 100).0[0], mask.get_pixel(30, 128).0[0]), (0, 0), "and nothing to its side");

    // On a phone at twice the text size, with the picture and its paint area.
    let large = browser_with(&downloads, json!({"webkit": {"webprefs": {"default_font_size": 32}}})).await;
    let p = &large.client;
    go(p, &d, "#/picture", "#pic-prompt").await;
    find(p, "#pic-init").await.send_keys(&start).await.expect("pick");
    until(p, "the picture on the phone", shown).await;
    js(p, "document.getElementById('pic-paint').scrollIntoView({block: 'center'})").await;
    shot(p, "a11y-large-text-picture-edit", 320, 740).await;
    let wider = js(p, "return document.documentElement.scrollWidth - innerWidth").await;
    assert!(wider.as_i64().unwrap_or(1) <= 0, "the picture view is {wider} px wider than the phone");
    large.client.clone().close().await.expect("close the phone");
    b.client.clone().close().await.expect("close the browser");
}

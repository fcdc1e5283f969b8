//! The web studio for a family that does not read English, in the tests' Chromium against
//! the real daemon: New film's Listen speaks the script's first sentence by the render's own
//! rule (the page's mirror of it checked against `plan::sentences` on the same scripts), the
//! script box takes the chosen voice's language rather than the page's `en`, a German film's
//! subtitle track is offered as "Deutsch", and Library search ignores accents.

use crate::common;

use std::time::{Duration, Instant};

use common::render::{models_dir, rendered, tiny_voice};
use reelbox::pipelines::render::plan;
use serde_json::{Value, json};

use crate::web_studio::browser::{browser, find, go, js, wait_js};

/// Scripts whose first sentence the page and the render must agree on.
const SCRIPTS: [&str; 10] = [
    "Dr. Müller kam am 3. Oktober 1987 nach Ærø. Dann ging er.",
    "Dr. Müller kam nach Hause. Dann ging er.",
    "Mr. J. Smith Jr. said hello. Then he left.",
    "It was Smith Jr. Then he left.",
    "Version 1.5 is out! Ok",
    "„Komm her!“, rief Oma. Sie ging.",
    "Elle a crié\u{a0}: «\u{202f}Attention\u{202f}!\u{a0}» Mais non. Oui.",
    "¿Qué? Nada.",
    "El Sr. García llegó. Luego nada.",
    "No full stop at all",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_film_is_listened_to_labelled_and_found_as_its_family_expects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let de = tiny_voice(&models, "de");
    let d = common::render::daemon(dir.path(), &models);
    let http = reqwest::Client::new();
    let body = json!({"script": "Guten Abend, Zoë. Die Katze schläft.", "voice": de, "model": "tiny-sd",
                      "steps": 2, "width": 64, "height": 64});
    let film = rendered(&http, &d, body).await;
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let b = browser(&downloads).await;
    let c = &b.client;

    go(c, &d, "#/new", &format!("#voice option[value='{de}']")).await;
    // The page's sentence rule is the render's: "Dr." and "J." read on, "1.5" is a number.
    let page = c
        .execute_async(
            "const [scripts, done] = arguments; import('/web/sentences.js').then(m => done(scripts.map(m.firstSentence)));",
            vec![json!(SCRIPTS)],
        )
        .await
        .expect("sentences.js");
    let render: Vec<String> = SCRIPTS
        .iter()
        .map(|s| plan::sentences(s, reelbox::text::Language::of("en")).into_iter().next().unwrap_or_default())
        .collect();
    assert_eq!(page, json!(render), "assets/web/sentences.js must cut sentences as plan::sentences does");

    // The script is not marked English (the page is): checked as the voice's language.
    let lang = "return document.getElementById('script').getAttribute('lang')";
    assert_eq!(js(c, lang).await, "", "no language before a voice is chosen");
    find(c, "#voice").await.select_by_value(&de).await.expect("pick the German voice");
    assert_eq!(js(c, lang).await, "de-DE");

    // Listen speaks the first sentence, not "Dr." (a split at every full stop).
    let script = find(c, "#script").await;
    script.clear().await.expect("clear");
    script.send_keys("Dr. Müller kam nach Hause. Dann ging er.").await.expect("type");
    js(c, "[...document.querySelectorAll('form.film button')].find(b => b.textContent === 'Listen').click()").await;
    let t0 = Instant::now();
    let said = loop {
        let jobs: Value =
            http.get(d.at("/api/v1/jobs?kind=speech")).send().await.expect("jobs").json().await.expect("json");
        if let Some(text) = jobs["jobs"][0]["params"]["text"].as_str() {
            break text.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "Listen made no speech job");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(said, "Dr. Müller kam nach Hause.");

    // The German film's subtitles are offered as "Deutsch" (the track said English).
    go(c, &d, &format!("#/watch/{film}"), "video track").await;
    let track = "const t = document.querySelector('video track'); const v = document.querySelector('video'); \
                 return t && t.srclang && [t.srclang, t.label, v.textTracks[0].language, v.textTracks[0].label]";
    let shown = wait_js(c, "track language", track, Duration::from_secs(20)).await;
    assert_eq!(shown, json!(["de", "Deutsch", "de", "Deutsch"]));

    // Library search without the accent finds "Zoë".
    go(c, &d, "#/library", "#lib-kind").await;
    find(c, "#lib-kind").await.select_by_value("").await.expect("everything");
    let both = "return document.querySelectorAll('ul.items > *').length === 2";
    wait_js(c, "the film and the Listen line", both, Duration::from_secs(10)).await;
    find(c, "#lib-search").await.send_keys("zoe").await.expect("type");
    let found = "const t = document.querySelector('ul.items').textContent; \
                 return document.querySelectorAll('ul.items > *').length === 1 && t.includes('Zoë')";
    wait_js(c, "search zoe", found, Duration::from_secs(10)).await;
}

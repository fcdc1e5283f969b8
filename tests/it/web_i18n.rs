//! The web studio for a family that does not read English, in the tests' Chromium against
//! the real daemon: New film's Listen speaks the script's first sentence by the render's own
//! rule in the voice's language (the page's mirror of it checked against `plan::sentences` on
//! the same scripts in English, German, Spanish, French and Portuguese), the
//! script box takes the chosen voice's language rather than the page's `en`, a German film's
//! subtitle track is offered as "Deutsch", and Library search ignores accents.

use crate::common;

use std::time::{Duration, Instant};

use common::render::{models_dir, rendered, tiny_voice};
use reelbox::pipelines::render::plan;
use reelbox::text::Language;
use serde_json::{Value, json};

use crate::web_studio::browser::{browser, find, go, js, wait_js};

/// Scripts, each with its voice's language, whose sentences the page and the render must
/// cut alike: titles, initials, abbreviations (spaced ones too) and German ordinals.
const SCRIPTS: [(&str, &str); 20] = [
    ("en", "Dr. Müller kam am 3. Oktober 1987 nach Ærø. Dann ging er."),
    ("en", "Mr. J. Smith Jr. said hello. Then he left."),
    ("en", "It was Smith Jr. Then he left."),
    ("en", "Milk, eggs, etc. and bread. Then Fähre Nr. 5. Done."),
    ("en", "Version 1.5 is out! Ok"),
    ("en", "¿Qué? Nada."),
    ("en", "No full stop at all"),
    ("de", "Dr. Müller kam am 3. Mai. Dann ging er."),
    (
        "de",
        "Am 3. Oktober 1987 kam Dr. Müller nach Ærø – z. B. mit der Fähre Nr. 5. Oma sagte: „Grüß Gott!“ \
         Am 24. Dezember kam Nr. 7 zurück. Das war 1987. Dann nichts.",
    ),
    ("de", "Hans bzw. Grete kam u. a. mit Prof. Weber und Frl. Roth. Das ist ein Gen. Dann nichts."),
    ("de-DE", "„Komm her!“, rief Oma am 1. März. Sie ging."),
    ("de", "Er kam vgl. Abb. 3 z. T. spät. Dann nichts."),
    ("es", "El Sr. García y la Sra. López llegaron el 1.º de mayo, p. ej. en tren. Compraron pan, etc. Luego nada."),
    ("es", "Dña. Ana habló con la Srta. Gil y el Ing. Pérez. Luego nada."),
    ("es", "Fue a la Avda. Libertad con el Lic. Ruiz. Nada más."),
    ("fr", "Le Dr. Martin et Mgr. Dubois, p. ex. Lundi. Puis rien."),
    ("fr", "Elle vit Ste. Anne, c.-à-d. Marie. Fin."),
    ("fr", "M. Dupont et Mlle. Roux sont venus. Ensuite rien."),
    ("fr", "Elle a crié\u{a0}: «\u{202f}Attention\u{202f}!\u{a0}» Mais non. Oui."),
    ("pt_BR", "O Sr. Silva e a Profa. Lima chegaram. Depois nada."),
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
    // The page's sentence rule is the render's in the voice's language: "Dr.", "J.", "z. B.",
    // "Sr." and "p. ex." read on, "3. Mai" is an ordinal in German, "1.5" is a number.
    let page = c
        .execute_async(
            "const [scripts, done] = arguments; \
             import('/web/sentences.js').then(m => done(scripts.map(([lang, s]) => [lang, m.sentences(s, lang)])));",
            vec![json!(SCRIPTS)],
        )
        .await
        .expect("sentences.js");
    let render: Vec<(&str, Vec<String>)> =
        SCRIPTS.iter().map(|(lang, s)| (*lang, plan::sentences(s, Language::of(lang)))).collect();
    assert_eq!(page, json!(render), "assets/web/sentences.js must cut sentences as plan::sentences does");

    // The script is not marked English (the page is): checked as the voice's language.
    let lang = "return document.getElementById('script').getAttribute('lang')";
    assert_eq!(js(c, lang).await, "", "no language before a voice is chosen");
    find(c, "#voice").await.select_by_value(&de).await.expect("pick the German voice");
    assert_eq!(js(c, lang).await, "de-DE");

    // Listen speaks the first sentence as the German film cuts it, not "Dr." (a split at
    // every full stop) nor "Am 3." (English's rule).
    let job = listen_to(c, &d, "Am 3. Mai kam Dr. Müller, z. B. mit der Fähre Nr. 5. Dann ging er.", 1).await;
    assert_eq!(job["params"]["text"], "Am 3. Mai kam Dr. Müller, z. B. mit der Fähre Nr. 5.");

    // With "Default voice", Listen speaks as the film will: with the presenter profile's own
    // voice and by its language (it spoke with the box's English voice, cut at "Am 3.").
    let made = http.post(d.at("/api/v1/profiles")).json(&json!({"name": "Oma", "voice": de})).send().await;
    let oma: Value = made.expect("profile").json().await.expect("json");
    let oma = oma["id"].as_str().expect("profile id").to_string();
    // Away and back, so New film lists the new profile.
    go(c, &d, "#/library", "#lib-search").await;
    go(c, &d, "#/new", &format!("#profile option[value='{oma}']")).await;
    find(c, "#profile").await.select_by_value(&oma).await.expect("pick the profile");
    find(c, "#voice").await.select_by_value("").await.expect("Default voice");
    let job = listen_to(c, &d, "Am 3. Mai schlief die Katze. Dann ging sie.", 2).await;
    assert_eq!(
        (&job["params"]["text"], &job["params"]["voice"]),
        (&json!("Am 3. Mai schlief die Katze."), &json!(de)),
        "{job}"
    );

    // The German film's subtitles are offered as "Deutsch" (the track said English).
    go(c, &d, &format!("#/watch/{film}"), "video track").await;
    let track = "const t = document.querySelector('video track'); const v = document.querySelector('video'); \
                 return t && t.srclang && [t.srclang, t.label, v.textTracks[0].language, v.textTracks[0].label]";
    let shown = wait_js(c, "track language", track, Duration::from_secs(20)).await;
    assert_eq!(shown, json!(["de", "Deutsch", "de", "Deutsch"]));

    // Library search without the accent finds "Zoë".
    go(c, &d, "#/library", "#lib-kind").await;
    find(c, "#lib-kind").await.select_by_value("").await.expect("everything");
    let all = "return document.querySelectorAll('ul.items > *').length === 3";
    wait_js(c, "the film and the two Listen lines", all, Duration::from_secs(10)).await;
    find(c, "#lib-search").await.send_keys("zoe").await.expect("type");
    let found = "const t = document.querySelector('ul.items').textContent; \
                 return document.querySelectorAll('ul.items > *').length === 1 && t.includes('Zoë')";
    wait_js(c, "search zoe", found, Duration::from_secs(10)).await;
}

/// Types `script` into New film, clicks Listen and returns the speech job it made, the
/// `nth` of the daemon's speech jobs.
async fn listen_to(c: &fantoccini::Client, d: &common::daemon::DaemonProc, script: &str, nth: usize) -> Value {
    let field = find(c, "#script").await;
    field.clear().await.expect("clear");
    field.send_keys(script).await.expect("type");
    js(c, "[...document.querySelectorAll('form.film button')].find(b => b.textContent === 'Listen').click()").await;
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    loop {
        let jobs: Value =
            http.get(d.at("/api/v1/jobs?kind=speech")).send().await.expect("jobs").json().await.expect("json");
        if jobs["jobs"].as_array().is_some_and(|j| j.len() == nth) {
            return jobs["jobs"][0].clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "Listen made no speech job {nth}: {jobs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

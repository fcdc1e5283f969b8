//! A storyteller's scripts in German, Spanish and French, filmed with the tiny voices of
//! those languages on the real daemon, voice and ffmpeg, as the viewer meets them: the
//! subtitles (`.srt` beside the film) and the film's `title` tag read on through the
//! language's titles, abbreviations and ordinals; a line of Japanese or Arabic under a
//! German voice is shown, not read out character by character, and the render says so.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::daemon::DaemonProc;
use common::render::models_dir;
use common::tools::reelbox_at;
use serde_json::{Value, json};

/// Installs the tiny fixture voice of `lang` (`de`, `es`, `fr`) as `<lang>-tiny` in `models`.
fn install_voice(models: &Path, lang: &str) -> String {
    common::render::tiny_voice_as(models, lang, &format!("{lang}-tiny"))
}

/// A daemon on the tiny models with the German, Spanish and French voices.
fn start(dir: &Path) -> DaemonProc {
    let models = models_dir(dir);
    for lang in ["de", "es", "fr"] {
        install_voice(&models, lang);
    }
    common::render::daemon(dir, &models)
}

/// `reelbox render FILE --voice VOICE` of `script` (bytes as a file holds them) on the tiny
/// picture model; the film's path and what the command printed.
fn render_said(d: &DaemonProc, dir: &Path, name: &str, script: &[u8], voice: &str) -> (PathBuf, String) {
    std::fs::write(dir.join(format!("{name}.txt")), script).expect("script");
    let film = format!("{name}.mp4");
    let args = ["render", &format!("{name}.txt"), "-o", &film, "--voice", voice];
    let size = ["--model", "tiny-sd", "--width", "448", "--height", "64"];
    let out = reelbox_at(d, dir, &[&args[..], &size].concat(), Stdio::null());
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    (dir.join(film), said)
}

/// [`render_said`]'s film.
fn render(d: &DaemonProc, dir: &Path, name: &str, script: &[u8], voice: &str) -> PathBuf {
    render_said(d, dir, name, script, voice).0
}

/// A film's length in seconds.
fn duration(film: &Path) -> f64 {
    reelbox::media::ffprobe::probe(film).expect("ffprobe").duration_s.expect("a duration")
}

/// Seconds of `text` spoken by `voice` without noise (the same samples each time).
async fn spoken_seconds(c: &reqwest::Client, d: &DaemonProc, voice: &str, text: &str) -> f64 {
    let body = json!({"model": "tts-1", "voice": voice, "input": text, "response_format": "wav",
                      "noise_scale": 0.0, "noise_w": 0.0});
    let resp = c.post(d.at("/v1/audio/speech")).json(&body).send().await.expect("speech");
    assert_eq!(resp.status(), 200, "{text}");
    let wav = resp.bytes().await.expect("bytes");
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV");
    f64::from(reader.duration()) / f64::from(reader.spec().sample_rate)
}

/// The texts of the cues of the `.srt` beside `film`.
fn srt_cues(film: &Path) -> Vec<String> {
    let srt = std::fs::read_to_string(film.with_extension("srt")).expect("srt");
    srt.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let lines: Vec<&str> = block.lines().skip(2).collect();
            (!lines.is_empty()).then(|| lines.join(" "))
        })
        .collect()
}

/// The film's `title` tag, as players and file managers show it.
fn title(film: &Path) -> String {
    reelbox::media::ffprobe::probe(film).expect("ffprobe").title.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn german_and_spanish_narration_reads_on_through_titles_abbreviations_and_ordinals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());

    // The cues were `Am 3.` (0.24 s) | `Oktober 1987 kam Dr. Müller nach Ærø – z.` | `B. mit
    // der Fähre Nr.` | `5.`, and the film was titled `Am 3`.
    let script = "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5. Oma lachte.\n\n\
                  Am 24. Dezember kam Nr. 7 zurück, d. h. u. a. mit Hans bzw. Grete.";
    let film = render(&d, dir.path(), "oma", script.as_bytes(), "de-tiny");
    assert_eq!(
        srt_cues(&film),
        [
            "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5.",
            "Oma lachte.",
            "Am 24. Dezember kam Nr. 7 zurück, d. h. u. a. mit Hans bzw. Grete."
        ]
    );
    assert_eq!(title(&film), "Am 3. Oktober kam Dr. Müller – z. B. mit der Fähre Nr. 5");

    // `El Sr.` | `García y la Sra.` | `López llegaron…`, titled `El Sr`; "etc." before a
    // capital still ends its sentence.
    let script = "El Sr. García y la Sra. López llegaron, p. ej. en tren. Compraron pan, leche, etc. Luego nada.";
    let film = render(&d, dir.path(), "cuento", script.as_bytes(), "es-tiny");
    assert_eq!(
        srt_cues(&film),
        ["El Sr. García y la Sra. López llegaron, p. ej. en tren.", "Compraron pan, leche, etc.", "Luego nada."]
    );
    assert_eq!(title(&film), "El Sr. García y la Sra. López llegaron, p. ej. en tren");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_in_a_writing_the_voice_does_not_read_is_shown_but_not_spoken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();

    // espeak-ng read each kana "japanischer Buchstabe" and each Arabic letter by its name:
    // 5–6 s cues of noise. Now the voice says the German words and the sentence marks.
    let script = "Oma las vor: 今日はとても良い天気ですね。明日は京都へ行きましょう。 \
                  Dann sagte Opa auf Arabisch: مرحبا بكم في بيتنا. Schön!";
    let heard = "Oma las vor: . Dann sagte Opa auf Arabisch: . Schön!";
    assert_eq!(spoken_seconds(&c, &d, "de-tiny", script).await, spoken_seconds(&c, &d, "de-tiny", heard).await);

    let (film, said) = render_said(&d, dir.path(), "mischung", script.as_bytes(), "de-tiny");
    // Said once each, in the render's output (its job log).
    for writing in
        ["Japanese text (今日はとても良い天気ですね。明日は京都へ行きまし…)", "Arabic text (مرحبا بكم في بيتنا.)"]
    {
        let line = format!("{writing} is not spoken by the German voice de-tiny");
        assert_eq!(said.matches(&line).count(), 1, "{line:?} in\n{said}");
    }
    // Shown with the words before it, while they are said.
    let cues = srt_cues(&film);
    assert!(cues.iter().any(|c| c.contains("今日は")) && cues.iter().any(|c| c.contains("مرحبا")), "{cues:?}");
    assert_eq!(cues.last().map(String::as_str), Some("Schön!"), "{cues:?}");
    let words = spoken_seconds(&c, &d, "de-tiny", heard).await;
    assert!(duration(&film) < words + 1.0, "{} s of film for {words} s of German", duration(&film));

    // Speech of such text alone has nothing to say, as emoji alone has.
    let resp = c.post(d.at("/api/v1/speech")).json(&json!({"text": "今日は。", "voice": "de-tiny"})).send().await;
    let resp = resp.expect("speech");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "text", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Japanese text (今日は。) is not spoken by the German voice de-tiny"), "{body}");
    let body = json!({"model": "tts-1", "voice": "de-tiny", "input": "مرحبا بكم"});
    let resp = c.post(d.at("/v1/audio/speech")).json(&body).send().await.expect("speech");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["param"], "input", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_saved_by_windows_notepad_starts_with_its_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    let c = reqwest::Client::new();

    // Notepad's UTF-8: a byte-order mark and CRLF. The first cue started with the mark and a
    // space, and so did the film's title and its plan.
    let script = "\u{feff}Oma erzählt von früher.\r\nSie lachte.\r\n";
    let film = render(&d, dir.path(), "notepad", script.as_bytes(), "de-tiny");
    assert_eq!(srt_cues(&film), ["Oma erzählt von früher.", "Sie lachte."]);
    assert_eq!(title(&film), "Oma erzählt von früher");
    // From standard input too.
    let file = std::fs::File::open(dir.path().join("notepad.txt")).expect("script");
    let args = ["render", "-", "-o", "piped.mp4", "--voice", "de-tiny", "--model", "tiny-sd", "--width", "448"];
    let out = reelbox_at(&d, dir.path(), &[&args[..], &["--height", "64"]].concat(), Stdio::from(file));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(title(&dir.path().join("piped.mp4")), "Oma erzählt von früher");

    // The API's text: the speech's sentences as written.
    let body = json!({"text": "\u{feff}Hallo Oma.", "voice": "de-tiny"});
    let resp = c.post(d.at("/api/v1/speech")).json(&body).send().await.expect("speech");
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.expect("json");
    let id = job["id"].as_str().expect("id");
    let done =
        common::daemon::wait_job(&c, &d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let timing: Value =
        serde_json::from_slice(&common::render::artifact(&c, &d, id, "speech.json").await).expect("timing");
    assert_eq!(timing["sentences"][0]["text"], "Hallo Oma.", "{timing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latin_1_script_is_refused_saying_where_and_how_to_convert_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = start(dir.path());
    // "Oma erzählt.\nVon früher." as an old editor saves it: ä is 0xe4, ü 0xfc.
    let latin1: &[u8] = b"Oma erz\xe4hlt.\nVon fr\xfcher.\n";
    std::fs::write(dir.path().join("latin1.txt"), latin1).expect("script");
    let text = |out: &std::process::Output| {
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    // It said `stream did not contain valid UTF-8`, and nothing of where or what to do.
    let said = text(&reelbox_at(&d, dir.path(), &["render", "latin1.txt", "--voice", "de-tiny"], Stdio::null()));
    assert!(
        said.contains("cannot read the script file latin1.txt: it is not UTF-8 text: byte 8 of line 1 is 0xe4"),
        "{said}"
    );
    assert!(said.contains("save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 latin1.txt > latin1-utf8.txt`"), "{said}");

    let stdin = || Stdio::from(std::fs::File::open(dir.path().join("latin1.txt")).expect("script"));
    let said = text(&reelbox_at(&d, dir.path(), &["render", "-", "--voice", "de-tiny"], stdin()));
    assert!(
        said.contains("cannot read the script from standard input: it is not UTF-8 text: byte 8 of line 1"),
        "{said}"
    );
    assert!(said.contains("`iconv -f latin1 -t utf-8`"), "{said}");

    let said = text(&reelbox_at(&d, dir.path(), &["say", "--file", "latin1.txt", "-o", "o.wav"], Stdio::null()));
    assert!(
        said.contains("cannot read the text file latin1.txt: it is not UTF-8 text: byte 8 of line 1 is 0xe4"),
        "{said}"
    );
    let said = text(&reelbox_at(&d, dir.path(), &["say", "-", "-o", "o.wav"], stdin()));
    assert!(said.contains("cannot read the text from standard input: it is not UTF-8 text"), "{said}");

    // The same file as UTF-8 (the iconv it names) is said.
    std::fs::write(dir.path().join("story.txt"), "Oma erzählt.\nVon früher.\n").expect("script");
    let out = reelbox_at(
        &d,
        dir.path(),
        &["say", "--file", "story.txt", "-o", "story.wav", "--voice", "de-tiny"],
        Stdio::null(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("story.wav").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_names_pasted_from_a_mac_are_the_words_they_look_like() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // A profile named on a Mac before names were composed: "Mu" and a combining diaeresis.
    let nfd_name = "Mu\u{308}ller";
    {
        let store = reelbox::store::Store::open(&data, true, 8).expect("open");
        let style = reelbox::store::records::Style::default();
        let voice = reelbox::store::records::Voice {
            model: "de-tiny".into(),
            speaker: None,
            length_scale: None,
            noise_scale: None,
            noise_w: None,
        };
        let profile = reelbox::store::records::Profile {
            id: store.new_id(),
            owner: "local".into(),
            name: nfd_name.into(),
            portrait: None,
            face_box: None,
            voice_sample: None,
            voice,
            style,
            created_at: 0,
        };
        store.put_profile(profile).await.expect("profile");
        store.close();
    }
    let d = start(dir.path());
    let c = reqwest::Client::new();

    // espeak-ng read "Müller fährt" pasted from a Mac as "mˈuːlɜ fˈɑhɾt": other sounds.
    let nfd = "Mu\u{308}ller fa\u{308}hrt nach Lo\u{301}dz\u{301}.";
    assert_eq!(
        spoken_seconds(&c, &d, "de-tiny", nfd).await,
        spoken_seconds(&c, &d, "de-tiny", "Müller fährt nach Lódź.").await
    );

    // Its download is named by its words (it was `mu-ller-fa-hrt-…`).
    let resp = c.post(d.at("/api/v1/speech")).json(&json!({"text": nfd, "voice": "de-tiny"})).send().await;
    let job: Value = resp.expect("speech").json().await.expect("json");
    let id = job["id"].as_str().expect("id");
    common::daemon::wait_job(&c, &d, id, std::time::Duration::from_secs(120), common::daemon::is_final).await;
    let arts: Value =
        c.get(d.at(&format!("/api/v1/jobs/{id}/artifacts"))).send().await.expect("list").json().await.expect("json");
    let name = arts[0]["download_name"].as_str().unwrap_or_default();
    assert!(name.starts_with("müller-fährt-nach-lódź-"), "{arts}");

    // The old profile is found by its name typed on Linux, and the same name is not taken twice.
    let found = c.get(d.at("/api/v1/profiles/M%C3%BCller")).send().await.expect("get");
    assert_eq!(found.status(), 200, "the NFD profile by its NFC name");
    let again = c.post(d.at("/api/v1/profiles")).json(&json!({"name": "Müller"})).send().await.expect("create");
    assert_eq!(again.status(), 409, "a look-alike of an existing name");
    // A new one from a Mac is kept composed, and found typed.
    let made = c.post(d.at("/api/v1/profiles")).json(&json!({"name": "Scha\u{308}fer"})).send().await.expect("create");
    assert_eq!(made.status(), 201);
    assert_eq!(made.json::<Value>().await.expect("json")["name"], "Schäfer");
    let render = json!({"script": "Guten Abend.", "profile": "Schäfer", "model": "tiny-sd", "steps": 2,
                        "width": 64, "height": 64});
    let resp = c.post(d.at("/api/v1/renders")).json(&render).send().await.expect("render");
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
}

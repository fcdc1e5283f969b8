//! Piper parity: the same texts spoken by Python `piper-tts` 1.8.0 (its bundled espeak-ng
//! and its own sentence splitting) and by reelbox (the pinned espeak-ng that `reelbox
//! setup` installs: the same espeak-ng commit, built from `assets/espeak-ng/`) give
//! identical phoneme ids and sentence boundaries for every text, equal sample counts at
//! noise 0, and audio within 1e-3 of full scale. Voices: tiny
//! Piper-interface voices for English, German, French and Spanish
//! (`tests/fixtures/make_tiny_piper_voices.py`) and the real joe voice; texts:
//! `tests/fixtures/tts/parity_texts.json` (20 per language).
//!
//! espeak-ng's 1.52.0 release, which reelbox pinned before, wrote some words differently
//! (no `ʲ` glide between vowels, `ðɪ ˈoʊld` for Piper's `ðɪʲ ˈoʊld`; German `ɾ` for `r`):
//! 12 of the 20 English texts matched then, so every text must match here.
//!
//! The Python side runs in a venv that `.ci/test` creates (and caches) at
//! `${XDG_CACHE_HOME:-~/.cache}/reelbox-ci/piper-tts-1.8.0/`, or the one
//! `REELBOX_PIPER_VENV` names. Without it the tests fail and say how to make it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::{fixture, provision, source_tree};
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::pipelines::tts::{self, SpeechOptions, SynthesisRun, Voice, espeak, sentence_ids, text_to_sentences};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Audio may differ by this much of full scale (1e-3 of 32767, plus int16 rounding).
const MAX_SAMPLE_DIFF: i32 = 34;
const VENV_NAME: &str = "piper-tts-1.8.0";

#[derive(Deserialize)]
struct PiperOut {
    piper_version: String,
    texts: Vec<PiperText>,
}

#[derive(Deserialize)]
struct PiperText {
    text: String,
    sentences: Vec<PiperSentence>,
}

#[derive(Deserialize)]
struct PiperSentence {
    phonemes: String,
    ids: Vec<i64>,
    samples: Vec<i16>,
}

/// The parity venv's Python; panics with the fix when it is missing.
fn piper_python() -> PathBuf {
    let venv = std::env::var_os("REELBOX_PIPER_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("reelbox-ci").join(VENV_NAME)
    });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "the Piper parity venv is missing ({} does not exist); create it with `.ci/piper-venv` \
         (what .ci/test runs), or point REELBOX_PIPER_VENV at a venv with piper-tts==1.8.0",
        python.display()
    );
    python
}

/// The pinned espeak-ng, installed by reelbox's own installer into the shared
/// provision dir (as `reelbox setup` installs it), and used for every phonemization here.
fn pinned_espeak() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let config = Config { data_dir: provision::root(), ..Config::default() };
        let dir = provision::locked(|| {
            let config = config.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
                rt.block_on(reelbox::setup::espeak::install(&config, false, &Default::default(), &|_| {}))
            })
            .join()
            .expect("install thread")
            .unwrap_or_else(|e| {
                panic!("cannot install the pinned espeak-ng: {e}; fix: make `pip download espeakng-loader` work")
            })
        });
        espeak::use_pinned(&dir.dir);
        let loaded = espeak::loaded().expect("the pinned espeak-ng loads");
        assert!(loaded.pinned && loaded.version == espeak::PINNED_VERSION, "espeak-ng in use: {loaded:?}");
    });
}

fn texts(lang: &str) -> Vec<String> {
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tts/parity_texts.json")).expect("texts")).expect("json");
    all[lang].as_array().expect("a list of texts").iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()
}

fn speak_with_piper(model: &Path, texts: &[String]) -> PiperOut {
    let mut child = Command::new(piper_python())
        .arg(source_tree().join("tests/fixtures/make_tiny_piper_speech.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parity venv's python");
    let request = serde_json::json!({"model": model, "texts": texts});
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), request.to_string().as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("piper-tts runs");
    assert!(out.status.success(), "piper-tts failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("piper-tts output is JSON")
}

/// Speaks every text both ways and lists each difference (all of them, not the first).
fn parity(model: &Path, lang: &str) {
    pinned_espeak();
    let texts = texts(lang);
    assert_eq!(texts.len(), 20, "20 texts per language");
    let piper = speak_with_piper(model, &texts);
    assert_eq!(piper.piper_version, "1.8.0");
    let voice = Voice::load(model).expect("voice loads");
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let opts = SpeechOptions {
        noise_scale: Some(0.0),
        noise_w: Some(0.0),
        length_scale: Some(1.0),
        sentence_silence: 0.0,
        max_batch: Some(1),
        ..SpeechOptions::default()
    };
    let mut problems = Vec::new();
    for expected in &piper.texts {
        let text = &expected.text;
        let sentences = text_to_sentences(&voice, text).expect("phonemizes");
        let ids = sentence_ids(&voice, &sentences);
        let want: Vec<&Vec<i64>> = expected.sentences.iter().map(|s| &s.ids).collect();
        if ids.iter().collect::<Vec<_>>() != want {
            let ours: Vec<String> = sentences.iter().map(|s| s.phonemes.concat()).collect();
            let theirs: Vec<&str> = expected.sentences.iter().map(|s| s.phonemes.as_str()).collect();
            problems.push(format!("{text:?}: phonemes differ\n  reelbox: {ours:?}\n  piper:   {theirs:?}"));
            continue;
        }
        let mut chunks: Vec<Vec<i16>> = Vec::new();
        let cancel = CancellationToken::new();
        let mut collect = |_: usize, pcm: &[i16]| chunks.push(pcm.to_vec());
        let run =
            SynthesisRun { device: DeviceId::Cpu, progress: &|_| {}, cancel: &cancel, on_sentence: Some(&mut collect) };
        let speech = tts::synthesize(&engine, &voice, text, &opts, run).expect("synthesizes");
        assert_eq!(speech.sentences.len(), chunks.len());
        for (i, (ours, theirs)) in chunks.iter().zip(&expected.sentences).enumerate() {
            if ours.len() != theirs.samples.len() {
                problems.push(format!("{text:?} sentence {i}: {} samples, piper {}", ours.len(), theirs.samples.len()));
                continue;
            }
            let worst = ours.iter().zip(&theirs.samples).map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs()).max();
            if worst.unwrap_or(0) > MAX_SAMPLE_DIFF {
                problems.push(format!("{text:?} sentence {i}: samples differ by up to {worst:?}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{lang}: {} of {} texts differ from piper-tts:\n{}",
        problems.len(),
        texts.len(),
        problems.join("\n")
    );
}

fn tiny(lang: &str) -> PathBuf {
    fixture(&format!("models/tiny-piper/{lang}/tiny-{lang}.onnx"))
}

#[test]
fn english_matches_piper() {
    parity(&tiny("en"), "en");
}

#[test]
fn german_matches_piper() {
    parity(&tiny("de"), "de");
}

#[test]
fn french_matches_piper() {
    parity(&tiny("fr"), "fr");
}

#[test]
fn spanish_matches_piper() {
    parity(&tiny("es"), "es");
}

#[test]
fn the_real_joe_voice_matches_piper() {
    parity(&provision::joe_voice(), "en");
}

//! Piper TTS against the real ONNX Runtime, the system espeak-ng and the real joe voice.

use crate::common;

use std::path::Path;

use common::provision;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::pipelines::tts::{
    self, Speech, SpeechOptions, SynthesisRun, TtsError, Voice, audio::rms, espeak, sentence_ids, text_to_sentences,
};
use tokio_util::sync::CancellationToken;

fn joe() -> Voice {
    Voice::load(&provision::joe_voice()).expect("joe voice loads")
}

fn ids_of(voice: &Voice, text: &str) -> Vec<Vec<i64>> {
    let sentences = text_to_sentences(voice, text).expect("phonemizes");
    sentence_ids(voice, &sentences)
}

fn say(engine: &Engine, voice: &Voice, text: &str, opts: &SpeechOptions) -> Result<Speech, TtsError> {
    let cancel = CancellationToken::new();
    tts::synthesize(
        engine,
        voice,
        text,
        opts,
        SynthesisRun { device: DeviceId::Cpu, progress: &|_| {}, cancel: &cancel, on_sentence: None },
    )
}

fn noiseless() -> SpeechOptions {
    SpeechOptions { noise_scale: Some(0.0), noise_w: Some(0.0), sentence_silence: 0.0, ..SpeechOptions::default() }
}

#[test]
fn espeak_ng_that_produced_the_ids_is_recorded() {
    let (version, data) = espeak::info().expect("espeak-ng loads; fix: apt-get install libespeak-ng1 espeak-ng-data");
    // The goldens hold for 1.51 (Debian 12) and 1.52 (Piper's wheel); say which ran.
    eprintln!("espeak-ng {version}, data {data}");
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).expect("version like 1.51");
    assert!(version.starts_with("1.") && minor >= 51, "espeak-ng {version} is older than 1.51");
}

#[test]
fn doctor_warns_when_the_systems_espeak_ng_is_not_pipers_version_and_names_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // No pinned copy in this data dir: the system's espeak-ng speaks.
    let checks = reelbox::setup::doctor(&provision::test_config(tmp.path()));
    let check = checks.iter().find(|c| c.name == "espeak-ng").expect("the espeak-ng check");
    let (version, _) = espeak::info().expect("espeak-ng loads");
    assert!(check.detail.contains(&version), "{}", check.detail);
    if version == espeak::PINNED_VERSION {
        assert_eq!(check.status, reelbox::setup::CheckStatus::Ok);
    } else {
        assert_eq!(check.status, reelbox::setup::CheckStatus::Warn, "{}", check.detail);
        assert!(check.fix.as_deref().is_some_and(|f| f.contains("reelbox setup")));
    }
}

#[test]
fn models_md_golden_ids_match_exactly() {
    let v = joe();
    assert_eq!(
        ids_of(&v, "Test 1. Test 2."),
        vec![
            vec![1, 0, 32, 0, 120, 0, 61, 0, 31, 0, 32, 0, 3, 0, 35, 0, 120, 0, 102, 0, 26, 0, 10, 0, 2],
            vec![1, 0, 32, 0, 120, 0, 61, 0, 31, 0, 32, 0, 3, 0, 32, 0, 120, 0, 33, 0, 122, 0, 10, 0, 2],
        ]
    );
    assert_eq!(
        ids_of(&v, "This is a test."),
        vec![vec![
            1, 0, 41, 0, 74, 0, 31, 0, 3, 0, 74, 0, 38, 0, 3, 0, 50, 0, 3, 0, 32, 0, 120, 0, 61, 0, 31, 0, 32, 0, 10,
            0, 2
        ]]
    );
}

#[test]
fn punctuation_numbers_abbreviations_and_quotes_match_pipers_ids() {
    let v = joe();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tts/golden_ids.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("json");
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let sentences = text_to_sentences(&v, text).expect("phonemizes");
        let got_phonemes: Vec<String> = sentences.iter().map(|s| s.phonemes.concat()).collect();
        let want_phonemes: Vec<String> = case["sentences"]
            .as_array()
            .expect("sentences")
            .iter()
            .map(|s| s["phonemes"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(got_phonemes, want_phonemes, "phonemes of {text:?}");
        let want_ids: Vec<Vec<i64>> = case["sentences"]
            .as_array()
            .expect("sentences")
            .iter()
            .map(|s| s["ids"].as_array().expect("ids").iter().map(|i| i.as_i64().expect("int")).collect())
            .collect();
        assert_eq!(sentence_ids(&v, &sentences), want_ids, "ids of {text:?}");
    }
}

#[test]
fn sentence_texts_follow_the_source() {
    let v = joe();
    let texts: Vec<String> = text_to_sentences(&v, "Dr. Smith arrived. “Hello,” he said! Was it 3.14?")
        .expect("phonemizes")
        .into_iter()
        .map(|s| s.text)
        .collect();
    assert_eq!(texts, ["Dr.", "Smith arrived.", "“Hello,” he said!", "Was it 3.14?"]);
}

#[test]
fn this_is_a_test_at_zero_noise_gives_25344_samples_and_the_same_bytes_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let a = say(&engine, &v, "This is a test.", &noiseless()).expect("synthesizes");
    assert_eq!(a.samples.len(), 25344);
    assert_eq!(a.sample_rate, 22050);
    let b = say(&engine, &v, "This is a test.", &noiseless()).expect("synthesizes again");
    assert_eq!(a.wav_bytes().expect("wav"), b.wav_bytes().expect("wav"));
    assert!(rms(&a.samples) > 0.05, "speech must not be silent, rms {}", rms(&a.samples));
    // The session was created once and reused.
    let loaded = engine.loaded_sessions();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].uses, 2);
}

#[test]
fn longer_text_lasts_proportionally_longer_and_timings_tile_the_audio() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let one = say(&engine, &v, "The quick brown fox jumps over the lazy dog.", &noiseless()).expect("one");
    let opts = SpeechOptions { sentence_silence: 0.25, ..noiseless() };
    let text = "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog. \
                The quick brown fox jumps over the lazy dog.";
    let three = say(&engine, &v, text, &opts).expect("three");
    let expected = 3.0 * one.duration() + 2.0 * 0.25;
    assert!((three.duration() - expected).abs() < 0.02, "3 sentences: {} s, expected ≈{expected} s", three.duration());
    assert_eq!(three.sentences.len(), 3);
    assert_eq!(three.sentences[0].start, 0.0);
    for pair in three.sentences.windows(2) {
        assert!((pair[1].start - pair[0].end - 0.25).abs() < 1e-3, "silence between sentences: {pair:?}");
    }
    let last = three.sentences.last().expect("last");
    assert!((last.end - three.duration()).abs() < 1e-9);
    assert!(rms(&three.samples) > 0.05);
    let json = three.timing_json();
    assert_eq!(json["sample_rate"], 22050);
    assert_eq!(json["sentences"][1]["text"], "The quick brown fox jumps over the lazy dog.");
}

#[test]
fn length_scale_slows_speech_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let normal = say(&engine, &v, "Slow and steady wins the race.", &noiseless()).expect("normal");
    let slow =
        say(&engine, &v, "Slow and steady wins the race.", &SpeechOptions { length_scale: Some(1.5), ..noiseless() })
            .expect("slow");
    let ratio = slow.duration() / normal.duration();
    assert!((1.3..1.7).contains(&ratio), "length_scale 1.5 gave {ratio:.2}× the duration");
}

#[test]
fn corrupt_model_fails_with_a_message_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = provision::joe_voice();
    let bad = tmp.path().join("broken.onnx");
    let bytes = std::fs::read(&src).expect("read voice");
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).expect("write truncated copy");
    std::fs::copy(src.with_extension("onnx.json"), tmp.path().join("broken.onnx.json")).expect("copy config");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = Voice::load(&bad).expect("config is fine");
    let err = say(&engine, &v, "Hello.", &noiseless()).expect_err("truncated model must fail");
    let msg = err.to_string();
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    // The engine keeps serving: the real voice still works afterwards.
    assert!(say(&engine, &joe(), "Hello.", &noiseless()).is_ok());
}

#[test]
fn voice_without_its_config_names_the_missing_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lone = tmp.path().join("lonely.onnx");
    std::fs::write(&lone, b"x").expect("write");
    let err = Voice::load(&lone).expect_err("no config").to_string();
    assert!(err.contains("lonely.onnx.json"), "{err}");
}

#[test]
fn a_path_that_is_no_voice_is_named_without_a_pull_to_make() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let png = tmp.path().join("red.png");
    std::fs::write(&png, b"\x89PNG").expect("write");
    let err = Voice::find(tmp.path(), &png.display().to_string()).expect_err("not a voice").to_string();
    // It said "not installed … fix: `reelbox pull /…/red.png`".
    assert!(err.contains("red.png: not a Piper voice") && !err.contains("reelbox pull"), "{err}");
}

#[test]
fn single_speaker_voice_rejects_a_named_speaker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let opts = SpeechOptions { speaker: Some("alice".into()), ..noiseless() };
    let err = say(&engine, &joe(), "Hello.", &opts).expect_err("joe has one speaker");
    assert!(err.to_string().contains("one speaker"), "{err}");
}

#[test]
fn fast_start_session_gives_the_same_audio_as_a_steady_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let v = joe();
    let steady =
        say(&Engine::new(&provision::test_config(tmp.path())), &v, "This is a test.", &noiseless()).expect("steady");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let opts = SpeechOptions { fast_start_max_ids: tts::FAST_START_MAX_IDS, ..noiseless() };
    let fast = say(&engine, &v, "This is a test.", &opts).expect("fast start");
    let loaded = engine.loaded_sessions();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].profile, reelbox::engine::SessionProfile::FastStart);
    assert_eq!(fast.samples, steady.samples);
}

#[test]
fn batched_sentences_split_back_to_the_lengths_of_single_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let text = "A short one. This second sentence is quite a bit longer than the first. Third!";
    let single = say(&engine, &v, text, &noiseless()).expect("one sentence per run");
    let batched =
        say(&engine, &v, text, &SpeechOptions { max_batch: Some(3), ..noiseless() }).expect("one batched run");
    let lengths =
        |s: &Speech| s.sentences.iter().map(|t| ((t.end - t.start) * 22050.0).round() as i64).collect::<Vec<_>>();
    assert_eq!(lengths(&batched), lengths(&single));
    // Padding changes the convolutions' view near each sentence's end only slightly.
    let diff: f64 =
        single.samples.iter().zip(&batched.samples).map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs()).sum::<f64>()
            / single.samples.len() as f64;
    eprintln!("mean |single - batched| = {diff:.1} (int16 units)");
    assert!(diff < 200.0, "batched audio differs too much: {diff}");
    let variants: Vec<String> = engine.loaded_sessions().into_iter().map(|s| s.variant).collect();
    assert!(variants.contains(&"durations".to_string()), "{variants:?}");
}

#[test]
fn durations_variant_exposes_the_ceil_output_and_runs_real_batches() {
    use reelbox::engine::{SessionProfile, TransformError};
    use reelbox::pipelines::tts::{align, synth};
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let transform =
        |b: &[u8]| -> Result<Option<Vec<u8>>, TransformError> { Ok(align::add_duration_output(b)?.map(|(p, _)| p)) };
    let session = engine
        .session_variant(&v.model, DeviceId::Cpu, SessionProfile::Steady, "durations", &transform)
        .expect("patched voice loads");
    let mut session = session.lock().expect("lock");
    let io = synth::ModelIo::inspect(&session, &v.model).expect("interface");
    assert_eq!(io.durations.as_deref(), Some("/Ceil_output_0"));
    assert_eq!(io.max_batch(), usize::MAX);
    let rows = ids_of(&v, "A short one. This second sentence is quite a bit longer than the first.");
    let refs: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
    let scales = synth::Scales { noise_scale: 0.0, length_scale: 1.0, noise_w: 0.0 };
    let batched = synth::run_batch(&mut session, &io, &v.model, &refs, scales, None, 256).expect("batch of 2");
    for (row, audio) in refs.iter().zip(&batched) {
        let single = synth::run_batch(&mut session, &io, &v.model, &[row], scales, None, 256).expect("single");
        assert_eq!(audio.len(), single[0].len());
        let max = audio.iter().zip(&single[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        eprintln!("row of {} ids: {} samples, max |batched - single| = {max:e}", row.len(), audio.len());
    }
    assert!(batched[0].len() < batched[1].len(), "the short sentence is not padded to the long one's length");
}

#[test]
fn a_model_that_is_not_a_voice_fails_naming_the_model_and_tensor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fake = tmp.path().join("not-a-voice.onnx");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-esrgan-x4/model.onnx"), &fake)
        .expect("copy");
    std::fs::copy(provision::joe_voice().with_extension("onnx.json"), tmp.path().join("not-a-voice.onnx.json"))
        .expect("copy config");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = Voice::load(&fake).expect("config parses");
    let err = say(&engine, &v, "Hello.", &noiseless()).expect_err("an upscaler is not a voice").to_string();
    assert!(err.contains("not-a-voice.onnx") && err.contains("tensor"), "{err}");
}

#[test]
fn concurrent_syntheses_share_espeak_and_the_session_safely() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let v = joe();
    let texts = ["One fish, two fish.", "Red fish; blue fish!", "This is a test.", "Is it raining? Yes."];
    let alone: Vec<Vec<i16>> =
        texts.iter().map(|t| say(&engine, &v, t, &noiseless()).expect("alone").samples).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .iter()
            .map(|t| {
                let (engine, v) = (&engine, &v);
                scope.spawn(move || say(engine, v, t, &noiseless()).expect("concurrent").samples)
            })
            .collect();
        for (h, want) in handles.into_iter().zip(&alone) {
            assert_eq!(&h.join().expect("thread"), want);
        }
    });
}

/// A tiny Piper-interface voice (the parity fixture's) speaking espeak-ng voice `espeak`.
fn tiny_voice_for(dir: &Path, espeak: &str) -> Voice {
    let src = common::fixture("models/tiny-piper/en/tiny-en.onnx");
    let model = dir.join(format!("tiny-{espeak}.onnx"));
    std::fs::copy(&src, &model).expect("copy the tiny voice");
    let config = std::fs::read_to_string(src.with_extension("onnx.json")).expect("tiny config");
    let mut config: serde_json::Value = serde_json::from_str(&config).expect("json");
    config["espeak"]["voice"] = serde_json::json!(espeak);
    std::fs::write(model.with_extension("onnx.json"), config.to_string()).expect("write config");
    Voice::load(&model).expect("voice loads")
}

#[test]
fn cyrillic_and_greek_texts_get_their_own_sentences_timings_and_subtitles() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    for (espeak, text, want) in [
        ("ru", "Привет, мир. Как дела? Хорошо!", vec!["Привет, мир.", "Как дела?", "Хорошо!"]),
        ("el", "Καλημέρα σας. Είμαι καλά!", vec!["Καλημέρα σας.", "Είμαι καλά!"]),
    ] {
        let voice = tiny_voice_for(tmp.path(), espeak);
        let speech = say(&engine, &voice, text, &noiseless()).expect("speaks");
        let texts: Vec<&str> = speech.sentences.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, want, "{espeak}");
        // The timings tile the audio: each sentence starts where the last one ended.
        assert_eq!(speech.sentences[0].start, 0.0);
        for pair in speech.sentences.windows(2) {
            assert!(pair[0].end > pair[0].start && (pair[0].end - pair[1].start).abs() < 1e-9, "{espeak}: {pair:?}");
        }
        let last = speech.sentences.last().expect("sentences");
        assert!((last.end - speech.duration()).abs() < 1e-9);
        let cues: Vec<reelbox::media::subtitles::Cue> = speech
            .sentences
            .iter()
            .map(|s| reelbox::media::subtitles::Cue::new(s.start, s.end, s.text.clone()))
            .collect();
        let srt = reelbox::media::subtitles::to_srt(&cues);
        assert!(want.iter().all(|w| srt.contains(w)), "{espeak}: {srt}");
    }
}

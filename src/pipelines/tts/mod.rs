//! Piper text-to-speech: espeak-ng phonemes → Piper ids → VITS model → int16 audio with
//! per-sentence start/end times (subtitles use them).
//!
//! Ids match Piper 1.8.0 exactly for the same phonemes. Phonemes come from the espeak-ng
//! 1.52 that `reelbox setup` pins (the version Piper's wheel bundles), else the system's;
//! Debian 12 ships 1.51, and a few words differ between them (see MODELS.md §1).

use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Engine, EngineError, SessionProfile, TransformError};
use crate::gpu::DeviceId;
use crate::pipelines::{Progress, ProgressFn, check_cancel};

pub mod align;
pub mod audio;
pub mod bench;
pub mod clause;
pub mod espeak;
pub mod phonemes;
pub mod synth;
pub mod text;
pub mod voice;

pub use espeak::EspeakError;
pub use phonemes::SentencePhonemes;
pub use synth::Scales;
pub use voice::{PhonemeType, Voice, VoiceConfig};

/// The voice `speech` jobs and `reelbox say` use when none is named and `[defaults] voice`
/// is not set (the config owns the name).
pub use crate::config::defaults::DEFAULT_VOICE;
/// Silence between sentences by default, seconds (Piper's C++ default).
pub const DEFAULT_SENTENCE_SILENCE: f32 = 0.2;

/// Why speech synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error(transparent)]
    Espeak(#[from] EspeakError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("voice {path}: {reason}")]
    Voice { path: PathBuf, reason: String },
    #[error("voice {path}: {source}")]
    VoiceIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("voice {path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("voice {path}: {source}")]
    VoiceConfig {
        path: PathBuf,
        #[source]
        source: voice::VoiceConfigError,
    },
    #[error("voice {name:?} is not installed (looked in {dir}); fix: `reelbox pull {name}`")]
    VoiceNotInstalled { name: String, dir: PathBuf },
    #[error("voice model {model}: tensor {tensor}: {reason}")]
    Tensor { model: PathBuf, tensor: String, reason: String },
    #[error("voice model {model} has no durations output, so it cannot run batches")]
    Unbatchable { model: PathBuf },
    #[error("speaker: {0}")]
    Speaker(#[from] voice::SpeakerError),
    #[error("the text has nothing to say")]
    EmptyText,
    #[error("canceled")]
    Canceled,
}

impl From<crate::pipelines::Canceled> for TtsError {
    fn from(_: crate::pipelines::Canceled) -> Self {
        TtsError::Canceled
    }
}

/// Per-request synthesis settings; `None` takes the voice's own defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeechOptions {
    pub noise_scale: Option<f32>,
    pub length_scale: Option<f32>,
    pub noise_w: Option<f32>,
    /// Speaker name or number (multi-speaker voices only).
    pub speaker: Option<String>,
    /// Silence between sentences, seconds.
    pub sentence_silence: f32,
    /// Most sentences per model run; `None` picks by device (1 on CPU, where padding costs
    /// more than the saved calls; 8 on GPUs).
    pub max_batch: Option<usize>,
    /// Build a `FastStart` session (when none is loaded yet) for texts of at most this many
    /// phoneme ids; 0 never does. One-shot callers set it (see [`FAST_START_MAX_IDS`]).
    pub fast_start_max_ids: usize,
    /// Read a title's full stop before a word ("Dr. Åsa", "Sr. García") as part of its
    /// sentence in the voice's language, not as the sentence's end (see
    /// [`text::for_voice`]). Off, sentences are Piper's own.
    pub titles_run_on: bool,
}

/// Up to about this much text a one-shot synthesis finishes sooner on a `FastStart`
/// session (quick to create, slower to run) than on a `Steady` one. 1 600 ids is ~40 s of
/// speech for joe-medium; the crossover measured on a 2-core box (see the bench docs).
pub const FAST_START_MAX_IDS: usize = 1600;

/// Where one sentence sits in the audio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentenceTiming {
    pub text: String,
    /// Seconds from the start of the audio.
    pub start: f64,
    pub end: f64,
}

/// Synthesized speech: int16 mono samples and sentence timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
    pub sentences: Vec<SentenceTiming>,
}

impl Speech {
    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }

    /// The audio as a 16-bit mono WAV file.
    pub fn wav_bytes(&self) -> Result<Vec<u8>, std::io::Error> {
        audio::wav_bytes(&self.samples, self.sample_rate).map_err(std::io::Error::other)
    }

    /// The timing document: `{sample_rate, duration, sentences: [{text, start, end}]}`.
    pub fn timing_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sample_rate": self.sample_rate,
            "duration": self.duration(),
            "sentences": self.sentences,
        })
    }
}

/// Splits text into sentences of phonemes with the voice's phonemizer.
pub fn text_to_sentences(voice: &Voice, text: &str) -> Result<Vec<SentencePhonemes>, TtsError> {
    let cfg = &voice.config;
    let sentences = match cfg.phoneme_type {
        PhonemeType::Espeak => {
            let clauses = espeak::phonemize(text, &cfg.espeak_voice)?;
            let views: Vec<phonemes::ClausePhonemes> = clauses
                .iter()
                .map(|c| phonemes::ClausePhonemes { phonemes: &c.phonemes, terminator: c.terminator, text: &c.text })
                .collect();
            phonemes::sentences(&views, &cfg.vowel_clusters)
        }
        // Piper reads a text voice's whole input as one sentence; reelbox splits at sentence
        // punctuation first so timings and batching work (each sentence's ids are still Piper's).
        PhonemeType::Text => split_text_sentences(text)
            .into_iter()
            .map(|s| SentencePhonemes { phonemes: phonemes::text_phonemes(&s), text: s })
            .collect(),
        PhonemeType::Other(ref kind) => {
            return Err(TtsError::Voice {
                path: voice.model.clone(),
                reason: format!("phoneme_type {kind:?} unsupported"),
            });
        }
    };
    Ok(sentences
        .into_iter()
        .map(|s| SentencePhonemes { phonemes: phonemes::apply_phoneme_map(s.phonemes, &cfg.phoneme_map), ..s })
        .collect())
}

/// Sentence ends for text voices: `.`, `!`, `?` followed by whitespace or the end.
pub fn split_text_sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        cur.push(c);
        if matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|n| n.is_whitespace()) {
            out.push(std::mem::take(&mut cur).trim().to_string());
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Phoneme ids per sentence, warning once about each phoneme the voice does not know.
pub fn sentence_ids(voice: &Voice, sentences: &[SentencePhonemes]) -> Vec<Vec<i64>> {
    let mut warned: Vec<String> = Vec::new();
    sentences
        .iter()
        .map(|s| {
            let (ids, missing) = phonemes::to_ids(&s.phonemes, &voice.config.phoneme_id_map);
            for m in missing {
                if !warned.contains(&m) {
                    tracing::warn!(voice = %voice.name, phoneme = %m, codepoint = ?m.chars().map(|c| c as u32).collect::<Vec<_>>(), "phoneme missing from the voice's id map; skipped");
                    warned.push(m);
                }
            }
            ids
        })
        .collect()
}

/// The model transform behind the `durations` session variant.
fn with_durations(bytes: &[u8]) -> Result<Option<Vec<u8>>, TransformError> {
    Ok(align::add_duration_output(bytes)?.map(|(patched, _)| patched))
}

/// What the synthesis loop reports after each sentence (for streaming and benchmarks).
pub type SentenceFn<'a> = &'a mut dyn FnMut(usize, &[i16]);

/// Where and how a synthesis runs: device, progress, cancellation, per-sentence hook.
pub struct SynthesisRun<'a> {
    pub device: DeviceId,
    pub progress: ProgressFn<'a>,
    pub cancel: &'a CancellationToken,
    pub on_sentence: Option<SentenceFn<'a>>,
}

/// Synthesizes `text` with `voice`, reporting progress per sentence.
pub fn synthesize(
    engine: &Engine,
    voice: &Voice,
    text: &str,
    opts: &SpeechOptions,
    run: SynthesisRun,
) -> Result<Speech, TtsError> {
    let SynthesisRun { device, progress, cancel, mut on_sentence } = run;
    espeak::use_pinned(&espeak::pinned_dir(&engine.config().data_dir));
    let cfg = &voice.config;
    let sid = cfg.speaker_id(opts.speaker.as_deref())?;
    let scales = Scales {
        noise_scale: opts.noise_scale.unwrap_or(cfg.noise_scale),
        length_scale: opts.length_scale.unwrap_or(cfg.length_scale),
        noise_w: opts.noise_w.unwrap_or(cfg.noise_w),
    };
    // Emoji are dropped (never read out by name); sentence texts are reported as written.
    let prepared = text::for_voice(text, opts.titles_run_on, crate::text::Language::of(&cfg.espeak_voice));
    let sentences = text_to_sentences(voice, &prepared.spoken)?;
    let written = prepared.written(&sentences.iter().map(|s| s.text.clone()).collect::<Vec<_>>());
    if sentences.is_empty() {
        return Err(TtsError::EmptyText);
    }
    let ids = sentence_ids(voice, &sentences);
    check_cancel(cancel)?;
    let total_ids: usize = ids.iter().map(Vec::len).sum();
    let profile = if total_ids <= opts.fast_start_max_ids { SessionProfile::FastStart } else { SessionProfile::Steady };
    let wanted = opts.max_batch.unwrap_or(if device == DeviceId::Cpu { 1 } else { 8 }).max(1);
    let session = if wanted > 1 && ids.len() > 1 {
        // Batches need per-sentence lengths: load the voice with its durations exposed.
        engine.session_variant(&voice.model, device, profile, "durations", &with_durations)?
    } else {
        engine.session_with(&voice.model, device, profile)?
    };
    let mut session = engine::lock(&session, &voice.model.display().to_string())?;
    let io = synth::ModelIo::inspect(&session, &voice.model)?;
    let batch = wanted.min(io.max_batch());

    let total = sentences.len() as u64;
    let silence = audio::silence_samples(opts.sentence_silence, cfg.sample_rate);
    let mut samples: Vec<i16> = Vec::new();
    let mut timings = Vec::with_capacity(sentences.len());
    let mut done = 0usize;
    for group in ids.chunks(batch) {
        check_cancel(cancel)?;
        let rows: Vec<&[i64]> = group.iter().map(Vec::as_slice).collect();
        let audios = synth::run_batch(&mut session, &io, &voice.model, &rows, scales, sid, cfg.hop_length)?;
        for raw in audios {
            if done > 0 && silence > 0 {
                samples.resize(samples.len() + silence, 0);
            }
            let start = samples.len();
            let pcm = audio::to_int16(&raw);
            samples.extend_from_slice(&pcm);
            let rate = f64::from(cfg.sample_rate);
            timings.push(SentenceTiming {
                text: written.get(done).unwrap_or(&sentences[done].text).clone(),
                start: start as f64 / rate,
                end: samples.len() as f64 / rate,
            });
            if let Some(f) = on_sentence.as_mut() {
                f(done, &pcm);
            }
            done += 1;
            progress(Progress { step: done as u64, total, message: Some(sentences[done - 1].text.clone()) });
        }
    }
    Ok(Speech { sample_rate: cfg.sample_rate, samples, sentences: timings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_voices_split_at_sentence_punctuation() {
        assert_eq!(
            split_text_sentences("Hi there. Version 1.5 is out! Ok"),
            vec!["Hi there.", "Version 1.5 is out!", "Ok"]
        );
    }
}

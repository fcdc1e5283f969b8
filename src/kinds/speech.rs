//! `speech`: text to a WAV file with a Piper voice, plus a JSON document of sentence
//! start/end times (subtitles use it). One stage; progress is reported per sentence.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::fields::{float_field, float_in, opt_f32_in, reject_unknown, string_field};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;
use crate::kinds::StageName;
use crate::models::manifest::valid_name;
use crate::models::{Catalog, ModelKind};
use crate::pipelines::Progress;
use crate::pipelines::tts::{
    self, DEFAULT_SENTENCE_SILENCE, DEFAULT_VOICE, Speech, SpeechOptions, SynthesisRun, TtsError, Voice,
};
use crate::text::Language;
use crate::text::scripts::{has_words, unspoken_notes};

/// The `speech` job kind.
pub struct SpeechKind;

const KNOWN: &[&str] =
    &["text", "voice", "noise_scale", "length_scale", "noise_w", "speaker", "sentence_silence", "format"];
const STAGE: StageName = StageName::Speech;

/// `speech` parameters as a request gives them; [`SpeechRequest::resolve`] checks them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechRequest {
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_scale: Option<f64>,
    /// Above 1 is slower.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_scale: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_w: Option<f64>,
    /// A speaker name or a non-negative number; kept as given so the check (and its
    /// message) is the same from every route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentence_silence: Option<f64>,
    /// Only `wav`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Validated `speech` parameters, as stored with the job (and inside a lip-sync job that
/// speaks first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeechParams {
    pub text: String,
    pub voice: String,
    pub noise_scale: Option<f32>,
    pub length_scale: Option<f32>,
    pub noise_w: Option<f32>,
    pub speaker: Option<String>,
    pub sentence_silence: f32,
    /// Always `wav`.
    pub format: String,
}

impl Default for SpeechParams {
    fn default() -> Self {
        Self {
            text: String::new(),
            voice: DEFAULT_VOICE.into(),
            noise_scale: None,
            length_scale: None,
            noise_w: None,
            speaker: None,
            sentence_silence: DEFAULT_SENTENCE_SILENCE,
            format: "wav".into(),
        }
    }
}

impl SpeechParams {
    /// The synthesis options these parameters ask for.
    pub fn options(&self) -> SpeechOptions {
        SpeechOptions {
            noise_scale: self.noise_scale,
            length_scale: self.length_scale,
            noise_w: self.noise_w,
            speaker: self.speaker.clone(),
            sentence_silence: self.sentence_silence,
            max_batch: None,
            // The daemon serves many requests: build the session for run speed.
            fast_start_max_ids: 0,
            titles_run_on: false,
        }
    }
}

impl SpeechRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, KNOWN)?;
        Ok(Self {
            text: string_field(params, "text")?,
            voice: string_field(params, "voice")?,
            noise_scale: float_field(params, "noise_scale")?,
            length_scale: float_field(params, "length_scale")?,
            noise_w: float_field(params, "noise_w")?,
            speaker: params.get("speaker").filter(|v| !v.is_null()).cloned(),
            sentence_silence: float_field(params, "sentence_silence")?,
            format: string_field(params, "format")?,
        })
    }

    /// Checks the parameters and fills the defaults; `max_chars` bounds the text. The voice
    /// is checked by name only ([`SpeechRequest::resolve`] also looks for it).
    pub fn check(self, max_chars: usize) -> Result<SpeechParams, ParamError> {
        let text = crate::text::clean(self.text.as_deref().unwrap_or_default());
        let text = text.trim();
        if text.is_empty() {
            return Err(ParamError::new("text", "is required and must not be empty"));
        }
        // A voice is never given emoji (espeak-ng reads them by name), so text of only emoji,
        // symbols and punctuation would run as a job that fails having nothing to say.
        if !text.chars().any(|c| c.is_alphanumeric() && !crate::pipelines::tts::text::is_pictograph(c)) {
            return Err(ParamError::new(
                "text",
                "has nothing to say: emoji, symbols and punctuation alone are not spoken; write a word",
            ));
        }
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(ParamError::new("text", format!("is {chars} characters; the limit is {max_chars}")));
        }
        let voice = self.voice.as_deref().filter(|v| !v.is_empty()).unwrap_or(DEFAULT_VOICE);
        if !valid_name(voice) {
            return Err(ParamError::new("voice", "must be an installed voice's name"));
        }
        let speaker = match self.speaker {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s),
            Some(serde_json::Value::Number(n)) if n.as_u64().is_some() => Some(n.to_string()),
            Some(_) => return Err(ParamError::new("speaker", "must be a speaker name or a non-negative number")),
        };
        match self.format.as_deref() {
            None | Some("wav") => {}
            Some(other) => return Err(ParamError::new("format", format!("{other:?} is not supported; use \"wav\""))),
        }
        Ok(SpeechParams {
            text: text.to_string(),
            voice: voice.to_string(),
            noise_scale: opt_f32_in("noise_scale", self.noise_scale, 0.0..=2.0)?,
            length_scale: opt_f32_in("length_scale", self.length_scale, 0.1..=5.0)?,
            noise_w: opt_f32_in("noise_w", self.noise_w, 0.0..=2.0)?,
            speaker,
            sentence_silence: float_in(
                "sentence_silence",
                self.sentence_silence.unwrap_or(f64::from(DEFAULT_SENTENCE_SILENCE)),
                0.0..=10.0,
            )? as f32,
            format: "wav".into(),
        })
    }

    /// Checks the parameters against the config's limits and the installed voices:
    /// refused at the edge rather than failing later on the worker.
    pub fn resolve(self, config: &Config) -> Result<SpeechParams, ParamError> {
        let named = self.voice.as_deref().is_some_and(|v| !v.is_empty());
        let mut p = self.check(config.limits.max_prompt_chars)?;
        if !named {
            p.voice = super::inputs::default_model("voice", ModelKind::Tts, config)?;
        }
        let voice = match Voice::find(&config.models_dir(), &p.voice) {
            Ok(voice) => voice,
            Err(e) => {
                // A voice the catalog can pull gets that pull (`piper:NAME` for the voice index),
                // an unknown one the close names (not a pull that cannot work, nor the daemon's
                // paths); an installed one that does not load, the loader's reason.
                super::inputs::require_installed("voice", ModelKind::Tts, &p.voice, config)?;
                // On a head, a voice only its live worker boxes have is spoken there; the
                // speaker is checked by the box that loads it.
                let here = crate::models::Catalog::installed_dir_of(config, ModelKind::Tts, &p.voice).is_some();
                if !here && super::box_models::has(ModelKind::Tts, &p.voice) {
                    return Ok(p);
                }
                return Err(ParamError::new("voice", e.to_string()));
            }
        };
        // Words only in a writing system the voice does not read are not spoken (espeak-ng
        // would say their characters' names): a job of them would fail having nothing to say.
        let language = Language::of(&voice.config.espeak_voice);
        if let Some(note) =
            unspoken_notes(&p.text, language, &p.voice).first().filter(|_| !has_words(&p.text, language))
        {
            return Err(ParamError::new("text", format!("has nothing the voice can say: {note}")));
        }
        // The speaker is the voice's to know: refused here, not by the job that would fail.
        voice.config.speaker_id(p.speaker.as_deref()).map_err(|e| ParamError::new("speaker", e.to_string()))?;
        Ok(p)
    }
}

/// Checks `speech` request JSON; `max_chars` bounds the text.
pub fn parse_params(params: &serde_json::Value, max_chars: usize) -> Result<SpeechParams, ParamError> {
    SpeechRequest::from_json(params)?.check(max_chars)
}

/// Checks `speech` request JSON against the config's limits and the installed voices.
pub fn validate_speech(params: &serde_json::Value, config: &Config) -> Result<SpeechParams, ParamError> {
    SpeechRequest::from_json(params)?.resolve(config)
}

impl TypedKind for SpeechKind {
    type Params = SpeechParams;
    const NAME: &'static str = "speech";
    const FIRST_STAGE: StageName = StageName::Speech;

    // No vram_mib: Piper runs well on the CPU, so speech takes a free GPU or spills over.
    fn models(&self, p: &SpeechParams) -> Vec<String> {
        vec![p.voice.clone()]
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<SpeechParams, ParamError> {
        validate_speech(params, ctx.config)
    }

    fn stages(&self, _p: &SpeechParams) -> Vec<StageName> {
        vec![STAGE]
    }

    fn run_stage(&self, stage: StageName, p: &SpeechParams, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("speech has no stage {stage:?}")));
        }
        speak(run, p)
    }
}

/// Synthesises `p` in a stage of `run`: stores `speech.wav` and `speech.json` (sentence
/// timings). Other kinds that speak first (lip-sync from text) run this as their own stage.
pub fn speak(run: &StageRun, p: &SpeechParams) -> Result<(), StageError> {
    let voice = Voice::find(&run.config.models_dir(), &p.voice)?;
    for note in unspoken_notes(&p.text, Language::of(&voice.config.espeak_voice), &p.voice) {
        run.sink.log("warn", &format!("{note}: it is left out of the speech"));
    }
    let progress = |pr: Progress| run.sink.progress(pr.step, pr.total, pr.message.as_deref());
    let speech = tts::synthesize(
        run.engine,
        &voice,
        &p.text,
        &p.options(),
        SynthesisRun { device: run.device, progress: &progress, cancel: run.cancel, on_sentence: None },
    )?;
    let max = run.config.limits.max_audio_seconds;
    if speech.duration() > max {
        return Err(StageError::fatal(format!(
            "the speech is {:.0} s long; the limit is {max:.0} s (limits.max_audio_seconds)",
            speech.duration()
        )));
    }
    let wav = speech.wav_bytes().map_err(|e| StageError::context("cannot encode WAV", e))?;
    run.sink.put_artifact("speech.wav", "audio/wav", &wav)?;
    let timing = serde_json::to_vec_pretty(&speech.timing_json())
        .map_err(|e| StageError::context("cannot encode timings", e))?;
    run.sink.put_artifact("speech.json", "application/json", &timing)?;
    Ok(())
}

/// What `reelbox say` asks for.
#[derive(Debug, Clone, Default)]
pub struct SayRequest {
    pub text: String,
    /// Installed voice name, or a path to a voice `.onnx`; `None` is the default voice.
    pub voice: Option<String>,
    pub noise_scale: Option<f32>,
    pub noise_w: Option<f32>,
    pub length_scale: Option<f32>,
    pub speaker: Option<String>,
    pub sentence_silence: Option<f32>,
    /// Device to run on; `None` is the CPU.
    pub device: Option<DeviceId>,
}

/// What `reelbox say --local` did.
#[derive(Debug, Clone)]
pub struct SayReport {
    pub speech: Speech,
    /// Wall time from start (engine creation) to the WAV on disk.
    pub elapsed: Duration,
    /// Time until the first sentence's audio was ready.
    pub first_sentence: Duration,
}

/// Why `reelbox say --local` wrote no WAV.
#[derive(Debug, thiserror::Error)]
pub enum SayError {
    /// The voice named is not installed: refused as the daemon refuses it at submission
    /// (the pull that installs it, or the close names of one no catalog knows).
    #[error(transparent)]
    Voice(#[from] ParamError),
    /// Synthesis failed (a voice that is there but does not load among it).
    #[error(transparent)]
    Tts(#[from] TtsError),
}

/// `reelbox say TEXT -o FILE --local`: synthesizes in this process and writes the WAV.
pub fn say_local(config: &Config, req: &SayRequest, out: &Path) -> Result<SayReport, SayError> {
    let started = Instant::now();
    let engine = Engine::new(config);
    say_with(&engine, config, req, out, started)
}

/// Like [`say_local`] with an existing engine (reuses its cached sessions).
pub fn say_with(
    engine: &Engine,
    config: &Config,
    req: &SayRequest,
    out: &Path,
    started: Instant,
) -> Result<SayReport, SayError> {
    let name = req
        .voice
        .clone()
        .or_else(|| Catalog::default_model(config, ModelKind::Tts))
        .unwrap_or_else(|| DEFAULT_VOICE.to_string());
    let voice = match Voice::find(&config.models_dir(), &name) {
        Ok(voice) => voice,
        // A voice named by name and not installed: the pull or the close names, as
        // [`SpeechRequest::resolve`] says it (not a pull that cannot work).
        Err(e @ TtsError::VoiceNotInstalled { .. }) if req.voice.is_some() => {
            super::inputs::require_installed("--voice", ModelKind::Tts, &name, config)?;
            return Err(e.into());
        }
        // A model of another kind is said as one, not as "voice config not found".
        Err(e @ TtsError::Voice { .. }) if req.voice.is_some() => {
            super::inputs::require_kind("--voice", ModelKind::Tts, &name, config)?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    let opts = SpeechOptions {
        noise_scale: req.noise_scale,
        length_scale: req.length_scale,
        noise_w: req.noise_w,
        speaker: req.speaker.clone(),
        sentence_silence: req.sentence_silence.unwrap_or(DEFAULT_SENTENCE_SILENCE),
        max_batch: None,
        // One process, one text: creating the session fast matters more than run speed.
        fast_start_max_ids: tts::FAST_START_MAX_IDS,
        titles_run_on: false,
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut first = None;
    let mut on_sentence = |_: usize, _: &[i16]| {
        first.get_or_insert_with(|| started.elapsed());
    };
    let speech = tts::synthesize(
        engine,
        &voice,
        &crate::text::clean(&req.text),
        &opts,
        SynthesisRun {
            device: req.device.unwrap_or(DeviceId::Cpu),
            progress: &|_| {},
            cancel: &cancel,
            on_sentence: Some(&mut on_sentence),
        },
    )?;
    let wav = speech.wav_bytes().map_err(|source| TtsError::VoiceIo { path: out.to_path_buf(), source })?;
    std::fs::write(out, wav).map_err(|source| TtsError::Write { path: out.to_path_buf(), source })?;
    Ok(SayReport { elapsed: started.elapsed(), first_sentence: first.unwrap_or_default(), speech })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_in_and_unknown_fields_are_rejected() {
        let p = parse_params(&json!({"text": " Hi. "}), 100).expect("valid");
        assert_eq!(p.text, "Hi.");
        assert_eq!(p.voice, DEFAULT_VOICE);
        assert_eq!(p.sentence_silence, DEFAULT_SENTENCE_SILENCE);
        let err = parse_params(&json!({"text": "Hi", "pitch": 2}), 100).expect_err("unknown");
        assert_eq!(err.field, "pitch");
    }

    #[test]
    fn out_of_range_scales_name_the_field() {
        assert_eq!(
            parse_params(&json!({"text": "Hi", "length_scale": 0}), 100).expect_err("range").field,
            "length_scale"
        );
        assert_eq!(parse_params(&json!({"text": "Hi", "noise_w": "x"}), 100).expect_err("type").field, "noise_w");
        assert_eq!(parse_params(&json!({"text": ""}), 100).expect_err("empty").field, "text");
        assert_eq!(parse_params(&json!({"text": "😊 ✨ !"}), 100).expect_err("nothing to say").field, "text");
        parse_params(&json!({"text": "1 😊"}), 100).expect("a number is spoken");
        assert_eq!(parse_params(&json!({"text": "abc"}), 2).expect_err("long").field, "text");
        assert_eq!(parse_params(&json!({"text": "Hi", "format": "mp3"}), 100).expect_err("format").field, "format");
    }

    #[test]
    fn speaker_may_be_a_name_or_a_number() {
        assert_eq!(parse_params(&json!({"text": "Hi", "speaker": 3}), 100).expect("ok").speaker.as_deref(), Some("3"));
        assert_eq!(parse_params(&json!({"text": "Hi", "speaker": -1}), 100).expect_err("neg").field, "speaker");
    }

    #[test]
    fn normalised_params_parse_to_the_same_thing() {
        let p = parse_params(&json!({"text": "Hi", "noise_scale": 0.5, "speaker": "bob"}), 100).expect("valid");
        let stored = serde_json::to_value(&p).expect("serialises");
        assert_eq!(parse_params(&stored, 100).expect("round trip"), p);
        // The stored form is what jobs have always stored.
        let keys: Vec<&str> = stored.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["format", "length_scale", "noise_scale", "noise_w", "sentence_silence", "speaker", "text", "voice"]
        );
        assert_eq!(serde_json::from_value::<SpeechParams>(stored).expect("reads back"), p);
    }
}

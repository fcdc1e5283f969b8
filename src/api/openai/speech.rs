//! `POST /v1/audio/speech`: a `speech` job, waited for, answered with the audio bytes.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use super::rejoin::is_retry;
use super::run::{Waiting, job_failure, read_artifact, submit};
use super::stream::{Events, stream};
use super::transcode::{SpeechFormat, transcode};
use super::{JOB_HEADER, OpenAiError, parse_body};
use crate::api::json::ApiBytes;

use crate::api::outputs::first_of_type;
use crate::api::{ApiError, AppState};
use crate::config::Config;
use crate::kinds::box_models;
use crate::kinds::speech::SpeechRequest as SpeechParams;
use crate::models::{Catalog, ModelKind};
use crate::store::records::JobState;

/// OpenAI's built-in voice names; they map to installed voices through `[openai.voices]`.
pub const OPENAI_VOICES: [&str; 13] =
    ["alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse"];

/// Body of `POST /v1/audio/speech` (`instructions` is accepted and ignored: Piper voices
/// take no style instructions).
// Named apart from the native `SpeechRequest`: with one name, the OpenAPI document described
// this route with the native body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = OpenAiSpeechRequest)]
pub struct SpeechRequest {
    /// `tts-1`, `tts-1-hd`, `gpt-4o-mini-tts`, or an installed Piper voice.
    pub model: Option<String>,
    /// The text to speak (not blank).
    #[schema(pattern = "\\S")]
    pub input: String,
    /// An installed Piper voice, or an OpenAI voice name mapped by `[openai.voices]`.
    pub voice: VoiceChoice,
    /// `mp3` (default), `opus`, `aac`, `flac`, `wav` or `pcm` (s16le mono 24 kHz).
    #[schema(pattern = "^(mp3|opus|aac|flac|wav|pcm)$")]
    pub response_format: Option<String>,
    /// 0.25–4.0 (default 1.0).
    #[schema(minimum = 0.25, maximum = 4.0)]
    pub speed: Option<f64>,
    /// `audio` (default: the file) or `sse` (server-sent `speech.audio.delta` events with
    /// base64 chunks of the file, then `speech.audio.done`).
    #[schema(pattern = "^(audio|sse)$")]
    pub stream_format: Option<String>,
    /// Extension: Piper's phoneme noise (0 with `noise_w` 0 makes speech repeatable).
    pub noise_scale: Option<f64>,
    /// Extension: Piper's duration noise.
    pub noise_w: Option<f64>,
}

/// A voice given as a name or as OpenAI's `{"id": ...}` object.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VoiceChoice {
    Name(String),
    Object { id: String },
}

impl VoiceChoice {
    fn name(&self) -> &str {
        match self {
            VoiceChoice::Name(n) | VoiceChoice::Object { id: n } => n,
        }
    }
}

/// OpenAI's speech model names (`tts-1`, `tts-1-hd`, `gpt-4o-mini-tts…`): any of them speaks
/// with the voice the request names.
pub fn is_openai_speech_model(name: &str) -> bool {
    name.starts_with("tts-1") || name.starts_with("gpt-4o-mini-tts")
}

/// Refuses a `model` that is neither one of OpenAI's speech models nor an installed voice
/// (404 `model_not_found`, as images refuse theirs): it was spoken with the default voice.
fn check_model(config: &Config, model: Option<&str>) -> Result<(), OpenAiError> {
    match model {
        None | Some("") => Ok(()),
        Some(m) if is_openai_speech_model(m) => Ok(()),
        Some(m) if installed_voices(config).iter().any(|v| v == m) => Ok(()),
        Some(m) => Err(other_kind(config, "model", m).unwrap_or_else(|| {
            super::model_not_found(m, "an OpenAI speech model (tts-1, tts-1-hd, gpt-4o-mini-tts) or an installed voice")
        })),
    }
}

/// The installed voices, sorted: this box's and, on a head, its live worker boxes' (a
/// request naming one is spoken there).
fn installed_voices(config: &Config) -> Vec<String> {
    let mut voices = Catalog::load(config).installed_names(ModelKind::Tts);
    voices.extend(box_models::names(ModelKind::Tts));
    voices.sort();
    voices.dedup();
    voices
}

/// The 400 for `param` naming `name`, a model of another kind than a voice (an upscaler
/// named as the voice), by the rule every model field applies.
fn other_kind(config: &Config, param: &str, name: &str) -> Option<OpenAiError> {
    let refused = Catalog::load(config).refuse_other_kind(name, ModelKind::Tts);
    refused.err().map(|e| OpenAiError::param(param, e.to_string()))
}

/// Which installed Piper voice a request means.
pub fn resolve_voice(config: &Config, voice: &str, model: Option<&str>) -> Result<String, OpenAiError> {
    let installed = installed_voices(config);
    if installed.iter().any(|v| v == voice) {
        return Ok(voice.to_string());
    }
    if let Some(mapped) = config.openai.voices.get(voice) {
        return Ok(mapped.clone());
    }
    // A Piper voice named as the model ("model": "en_US-joe-medium", "voice": "alloy").
    if let Some(m) = model
        && installed.iter().any(|v| v == m)
    {
        return Ok(m.to_string());
    }
    if OPENAI_VOICES.contains(&voice) {
        // Passed over when not installed, as `[defaults]` is.
        if let Some(d) = config.openai.default_voice.as_ref().filter(|d| installed.contains(d)) {
            return Ok(d.clone());
        }
        // OpenAI's voice names mean the box's default voice, the one `models list` tags
        // (on a head without voices, its boxes').
        return box_models::default_anywhere(config, ModelKind::Tts).ok_or_else(|| OpenAiError {
            param: Some("voice".into()),
            ..OpenAiError::new(StatusCode::NOT_FOUND, "model_not_found", Catalog::no_default(config, ModelKind::Tts))
        });
    }
    if let Some(refused) = other_kind(config, "voice", voice) {
        return Err(refused);
    }
    Err(OpenAiError::param(
        "voice",
        format!(
            "unknown voice {voice:?}; use an installed voice ({}) or one of {}",
            if installed.is_empty() { "none installed".to_string() } else { installed.join(", ") },
            OPENAI_VOICES.join(", ")
        ),
    ))
}

/// The `speech` job parameters for a request.
pub fn speech_params(config: &Config, req: &SpeechRequest) -> Result<SpeechParams, OpenAiError> {
    if req.input.trim().is_empty() {
        return Err(OpenAiError::param("input", "input must not be empty"));
    }
    if req.input.chars().count() > config.limits.max_prompt_chars {
        return Err(OpenAiError::param(
            "input",
            format!("input is longer than {} characters", config.limits.max_prompt_chars),
        ));
    }
    if let Some(f) = req.stream_format.as_deref()
        && f != "audio"
        && f != "sse"
    {
        return Err(OpenAiError::param(
            "stream_format",
            format!("stream_format {f:?} is not supported; use audio or sse"),
        ));
    }
    let speed = req.speed.unwrap_or(1.0);
    if !speed.is_finite() || !(0.25..=4.0).contains(&speed) {
        return Err(OpenAiError::param("speed", format!("speed must be between 0.25 and 4.0, got {speed}")));
    }
    check_model(config, req.model.as_deref())?;
    let voice = resolve_voice(config, req.voice.name(), req.model.as_deref())?;
    Ok(SpeechParams {
        text: Some(req.input.clone()),
        voice: Some(voice),
        format: Some("wav".into()),
        // Piper's length_scale stretches phoneme durations: the inverse of a speed.
        length_scale: (speed != 1.0).then(|| 1.0 / speed),
        noise_scale: req.noise_scale,
        noise_w: req.noise_w,
        ..SpeechParams::default()
    })
}

/// Speak text (OpenAI-compatible); answers the audio bytes.
#[utoipa::path(post, path = "/v1/audio/speech", request_body = SpeechRequest, tag = "openai",
    responses((status = 200, description = "the audio in `response_format`'s type; with `stream_format: sse` server-sent events",
            content((crate::api::openapi::Bytes = "audio/mpeg"), (crate::api::openapi::Bytes = "audio/ogg"), (crate::api::openapi::Bytes = "audio/aac"), (crate::api::openapi::Bytes = "audio/flac"),
                (crate::api::openapi::Bytes = "audio/wav"), (crate::api::openapi::Bytes = "audio/pcm"), (crate::api::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, body = super::error::OpenAiErrorBody),
        (status = 404, description = "`model_not_found`: no such voice or speech model", body = super::error::OpenAiErrorBody)))]
pub async fn speech(
    State(state): State<AppState>,
    caller: super::OpenAiCaller,
    headers: HeaderMap,
    body: Result<ApiBytes, ApiError>,
) -> Result<Response, OpenAiError> {
    let caller = caller.0?;
    let req: SpeechRequest = parse_body(&body?.0)?;
    let format = match req.response_format.as_deref() {
        None => SpeechFormat::Mp3,
        Some(f) => SpeechFormat::parse(f).ok_or_else(|| {
            OpenAiError::param(
                "response_format",
                format!("invalid response_format {f:?}; use mp3, opus, aac, flac, wav or pcm"),
            )
        })?,
    };
    let params = serde_json::to_value(speech_params(&state.config, &req)?)
        .map_err(|e| OpenAiError::internal(format!("cannot encode params: {e}")))?;
    let waiting = submit(&state, &caller, "speech", params, is_retry(&headers)).await.map_err(|mut e| {
        if e.param.as_deref() == Some("text") {
            e.param = Some("input".into());
        }
        e
    })?;
    let id = waiting.id();
    let mut resp = if req.stream_format.as_deref() == Some("sse") {
        stream(move |events| stream_audio(state, waiting, format, events)).into_response()
    } else {
        let mut resp = Response::new(Body::from(audio(&state, waiting, format).await?));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        resp
    };
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        resp.headers_mut().insert(JOB_HEADER, v);
    }
    Ok(resp)
}

/// The finished job's speech in `format`.
async fn audio(state: &AppState, waiting: Waiting, format: SpeechFormat) -> Result<Vec<u8>, OpenAiError> {
    let job = waiting.finish().await?;
    if !matches!(job.state, JobState::Succeeded { .. }) {
        return Err(job_failure(&job));
    }
    let wav = first_of_type(&state.store, &job, "audio/wav")
        .map_err(|e| OpenAiError::internal(e.to_string()))?
        .ok_or_else(|| OpenAiError::internal(format!("job {} finished without a WAV", job.id)))?;
    if format == SpeechFormat::Wav {
        read_artifact(state, &wav).await
    } else {
        let path = state.store.artifacts_dir().join(&wav.path);
        transcode(&path, format).await.map_err(|e| OpenAiError::internal(e.to_string()))
    }
}

/// Bytes of audio per `speech.audio.delta` event.
const DELTA_BYTES: usize = 16 * 1024;

/// The speech as OpenAI's `sse` stream: the file in base64 chunks, then `speech.audio.done`.
async fn stream_audio(
    state: AppState,
    waiting: Waiting,
    format: SpeechFormat,
    events: Events,
) -> Result<(), OpenAiError> {
    let bytes = audio(&state, waiting, format).await?;
    for chunk in bytes.chunks(DELTA_BYTES) {
        let audio = base64::engine::general_purpose::STANDARD.encode(chunk);
        if !events.send(json!({"type": "speech.audio.delta", "audio": audio})).await {
            return Ok(());
        }
    }
    // reelbox counts no tokens; the figures are there for clients that read them.
    let usage = json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0});
    events.send(json!({"type": "speech.audio.done", "usage": usage})).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_voice() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = dir.path().join("en_US-joe-medium");
        std::fs::create_dir_all(&v).expect("mkdir");
        std::fs::write(v.join("en_US-joe-medium.onnx"), "x").expect("write");
        std::fs::write(v.join("en_US-joe-medium.onnx.json"), "{}").expect("write");
        let config = Config { models_dir: Some(dir.path().to_path_buf()), ..Config::default() };
        (dir, config)
    }

    #[test]
    fn openai_voice_names_fall_back_to_the_default_voice() {
        let (_dir, config) = config_with_voice();
        assert_eq!(resolve_voice(&config, "alloy", Some("tts-1")).expect("ok"), "en_US-joe-medium");
        assert_eq!(resolve_voice(&config, "en_US-joe-medium", None).expect("ok"), "en_US-joe-medium");
        let e = resolve_voice(&config, "robot", None).expect_err("unknown voice");
        assert_eq!(e.param.as_deref(), Some("voice"));
    }

    #[test]
    fn the_voice_map_wins_over_the_default() {
        let (_dir, mut config) = config_with_voice();
        config.openai.voices.insert("nova".into(), "en_GB-alba-medium".into());
        config.openai.default_voice = Some("en_US-joe-medium".into());
        assert_eq!(resolve_voice(&config, "nova", None).expect("ok"), "en_GB-alba-medium");
        assert_eq!(resolve_voice(&config, "echo", None).expect("ok"), "en_US-joe-medium");
        // A configured default that is not installed is passed over for the box's default.
        config.openai.default_voice = Some("en_GB-nobody-low".into());
        assert_eq!(resolve_voice(&config, "echo", None).expect("ok"), "en_US-joe-medium");
    }

    #[test]
    fn speed_becomes_an_inverse_length_scale_and_is_bounded() {
        let (_dir, config) = config_with_voice();
        let req = |speed: f64| SpeechRequest {
            model: Some("tts-1".into()),
            input: "Hello.".into(),
            voice: VoiceChoice::Name("alloy".into()),
            response_format: None,
            speed: Some(speed),
            stream_format: None,
            noise_scale: None,
            noise_w: None,
        };
        let p = speech_params(&config, &req(2.0)).expect("ok");
        assert_eq!(p.length_scale, Some(0.5));
        assert_eq!(p.voice.as_deref(), Some("en_US-joe-medium"));
        assert!(speech_params(&config, &req(1.0)).expect("ok").length_scale.is_none());
        assert_eq!(speech_params(&config, &req(5.0)).expect_err("too fast").param.as_deref(), Some("speed"));
    }
}

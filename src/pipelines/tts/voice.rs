//! A Piper voice: `NAME.onnx` plus its `NAME.onnx.json` config.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::TtsError;

/// How a voice turns text into phonemes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhonemeType {
    /// espeak-ng IPA (most voices).
    Espeak,
    /// The text's own codepoints.
    Text,
    /// A phonemizer reelbox does not have (pinyin, hebrew, ...).
    Other(String),
}

/// The parts of a Piper voice config reelbox uses.
#[derive(Debug, Clone)]
pub struct VoiceConfig {
    pub sample_rate: u32,
    pub espeak_voice: String,
    pub phoneme_type: PhonemeType,
    /// Phoneme → replacement phonemes, applied before ids (Piper's C++ `phoneme_map`).
    pub phoneme_map: HashMap<String, Vec<String>>,
    /// Phoneme (one or more codepoints) → ids.
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    pub num_speakers: u32,
    pub speaker_id_map: BTreeMap<String, i64>,
    pub default_speaker_id: i64,
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
    pub hop_length: u32,
    /// Codepoint sequences merged into one phoneme before ids (e.g. `a` `ɪ` → `aɪ`).
    pub vowel_clusters: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct RawConfig {
    audio: RawAudio,
    #[serde(default)]
    espeak: Option<RawEspeak>,
    #[serde(default)]
    inference: RawInference,
    #[serde(default)]
    phoneme_type: Option<String>,
    #[serde(default)]
    phoneme_map: HashMap<String, serde_json::Value>,
    phoneme_id_map: HashMap<String, Vec<i64>>,
    #[serde(default)]
    num_speakers: Option<u32>,
    #[serde(default)]
    speaker_id_map: BTreeMap<String, i64>,
    #[serde(default)]
    default_speaker_id: Option<i64>,
    #[serde(default)]
    hop_length: Option<u32>,
    #[serde(default)]
    vowel_clusters: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct RawAudio {
    sample_rate: u32,
}

#[derive(Deserialize)]
struct RawEspeak {
    voice: String,
}

#[derive(Deserialize, Default)]
struct RawInference {
    noise_scale: Option<f32>,
    length_scale: Option<f32>,
    noise_w: Option<f32>,
}

/// Why a voice config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VoiceConfigError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("audio.sample_rate is 0")]
    ZeroSampleRate,
}

/// A requested speaker the voice does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeakerError {
    #[error("this voice has one speaker; got speaker {requested:?}")]
    SingleSpeaker { requested: String },
    #[error("unknown speaker {requested:?}; use 0..{last} or one of: {names}")]
    Unknown { requested: String, last: u32, names: String },
}

impl VoiceConfig {
    /// Parses a voice config's JSON text.
    pub fn parse(json: &str) -> Result<Self, VoiceConfigError> {
        let raw: RawConfig = serde_json::from_str(json)?;
        let phoneme_type = match raw.phoneme_type.as_deref().unwrap_or("espeak") {
            "espeak" => PhonemeType::Espeak,
            "text" => PhonemeType::Text,
            other => PhonemeType::Other(other.to_string()),
        };
        if raw.audio.sample_rate == 0 {
            return Err(VoiceConfigError::ZeroSampleRate);
        }
        let phoneme_map = raw
            .phoneme_map
            .into_iter()
            .map(|(k, v)| {
                let to = match v {
                    serde_json::Value::String(s) => vec![s],
                    serde_json::Value::Array(items) => {
                        items.into_iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()
                    }
                    _ => Vec::new(),
                };
                (k, to)
            })
            .collect();
        Ok(Self {
            sample_rate: raw.audio.sample_rate,
            espeak_voice: raw.espeak.map(|e| e.voice).unwrap_or_else(|| "en-us".into()),
            phoneme_type,
            phoneme_map,
            phoneme_id_map: raw.phoneme_id_map,
            num_speakers: raw.num_speakers.unwrap_or(1),
            speaker_id_map: raw.speaker_id_map,
            default_speaker_id: raw.default_speaker_id.unwrap_or(0),
            noise_scale: raw.inference.noise_scale.unwrap_or(0.667),
            length_scale: raw.inference.length_scale.unwrap_or(1.0),
            noise_w: raw.inference.noise_w.unwrap_or(0.8),
            hop_length: raw.hop_length.unwrap_or(256),
            vowel_clusters: raw.vowel_clusters,
        })
    }

    /// Resolves a requested speaker (a name from `speaker_id_map` or a number) to the `sid`
    /// to pass, or `None` for single-speaker voices, which have no `sid` input.
    pub fn speaker_id(&self, requested: Option<&str>) -> Result<Option<i64>, SpeakerError> {
        if self.num_speakers <= 1 {
            return match requested {
                None => Ok(None),
                Some(s) if s.is_empty() || s == "0" => Ok(None),
                Some(s) => Err(SpeakerError::SingleSpeaker { requested: s.to_string() }),
            };
        }
        let Some(req) = requested.filter(|s| !s.is_empty()) else {
            return Ok(Some(self.default_speaker_id));
        };
        if let Some(id) = self.speaker_id_map.get(req) {
            return Ok(Some(*id));
        }
        match req.parse::<i64>() {
            Ok(n) if n >= 0 && n < i64::from(self.num_speakers) => Ok(Some(n)),
            _ => {
                let names: Vec<_> = self.speaker_id_map.keys().take(20).cloned().collect();
                Err(SpeakerError::Unknown {
                    requested: req.to_string(),
                    last: self.num_speakers - 1,
                    names: names.join(", "),
                })
            }
        }
    }
}

/// A voice ready to synthesize with.
#[derive(Debug, Clone)]
pub struct Voice {
    /// The voice's name (its model directory or file stem).
    pub name: String,
    pub model: PathBuf,
    pub config: VoiceConfig,
}

impl Voice {
    /// Loads `model` and the config beside it (`model.onnx.json`, else `model.json`).
    pub fn load(model: &Path) -> Result<Self, TtsError> {
        let candidates = [PathBuf::from(format!("{}.json", model.display())), model.with_extension("json")];
        let Some(config_path) = candidates.iter().find(|p| p.is_file()) else {
            return Err(TtsError::Voice {
                path: candidates[0].clone(),
                reason: "voice config not found (a Piper voice is NAME.onnx plus NAME.onnx.json)".into(),
            });
        };
        let text = std::fs::read_to_string(config_path)
            .map_err(|source| TtsError::VoiceIo { path: config_path.clone(), source })?;
        let config =
            VoiceConfig::parse(&text).map_err(|source| TtsError::VoiceConfig { path: config_path.clone(), source })?;
        if let PhonemeType::Other(kind) = &config.phoneme_type {
            return Err(TtsError::Voice {
                path: config_path.clone(),
                reason: format!("phoneme_type {kind:?} is not supported (espeak and text are)"),
            });
        }
        if !model.is_file() {
            return Err(TtsError::Voice { path: model.to_path_buf(), reason: "voice model file is missing".into() });
        }
        let name = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Self { name, model: model.to_path_buf(), config })
    }

    /// Finds an installed voice by name in the models dir (`NAME/NAME.onnx`, or the only
    /// `.onnx` in `NAME/`; `models::Catalog` lists the same directories as voices), or
    /// takes `name` as a path to an `.onnx` file.
    pub fn find(models_dir: &Path, name: &str) -> Result<Self, TtsError> {
        let as_path = Path::new(name);
        if name.ends_with(".onnx") && as_path.is_file() {
            return Self::load(as_path);
        }
        // A path that is no voice: "not installed; fix: `reelbox pull /x/y.png`" misleads.
        if name.contains('/') && !as_path.is_dir() {
            return Err(TtsError::Voice {
                path: as_path.to_path_buf(),
                reason: "not a Piper voice: give its .onnx file (with the .onnx.json beside it) or an installed voice's name".into(),
            });
        }
        let dir = models_dir.join(name);
        let direct = dir.join(format!("{name}.onnx"));
        if direct.is_file() {
            return Self::load(&direct).map(|v| Self { name: name.to_string(), ..v });
        }
        let onnx: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect())
            .unwrap_or_default();
        match onnx.as_slice() {
            [one] => Self::load(one).map(|v| Self { name: name.to_string(), ..v }),
            [] => Err(TtsError::VoiceNotInstalled { name: name.to_string(), dir }),
            _ => Err(TtsError::Voice { path: dir, reason: "more than one .onnx file; name the file".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = r#"{"audio":{"sample_rate":16000},"espeak":{"voice":"en-gb"},"num_speakers":3,
        "speaker_id_map":{"alice":0,"bob":2},"phoneme_id_map":{"_":[0],"^":[1],"$":[2]}}"#;

    #[test]
    fn missing_inference_settings_take_pipers_defaults() {
        let c = VoiceConfig::parse(MULTI).expect("parses");
        assert_eq!((c.noise_scale, c.length_scale, c.noise_w), (0.667, 1.0, 0.8));
        assert_eq!(c.hop_length, 256);
        assert_eq!(c.phoneme_type, PhonemeType::Espeak);
    }

    #[test]
    fn speakers_resolve_by_name_or_number() {
        let c = VoiceConfig::parse(MULTI).expect("parses");
        assert_eq!(c.speaker_id(Some("bob")), Ok(Some(2)));
        assert_eq!(c.speaker_id(Some("1")), Ok(Some(1)));
        assert_eq!(c.speaker_id(None), Ok(Some(0)));
        assert!(c.speaker_id(Some("3")).expect_err("out of range").to_string().contains("alice"));
    }

    #[test]
    fn single_speaker_voices_get_no_sid() {
        let c = VoiceConfig::parse(r#"{"audio":{"sample_rate":22050},"phoneme_id_map":{}}"#).expect("parses");
        assert_eq!(c.speaker_id(None), Ok(None));
        assert!(c.speaker_id(Some("bob")).is_err());
    }
}

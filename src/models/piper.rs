//! Every Piper voice by name: `rhasspy/piper-voices` at [`REVISION`] lists its voices in
//! `voices.json` (language, quality, speakers, and each file's size and md5). The index is
//! fetched through the `hf:` source (checked by the hub's git blob SHA-1) and cached in
//! the models dir; `piper:NAME` pulls become a manifest of the voice's `.onnx`,
//! `.onnx.json` and `MODEL_CARD`, fetched and checked like any hub model, then each file's
//! md5 is checked against the index too (a mismatch removes the voice again).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::availability::did_you_mean;
use super::fetch::{FetchError, PullProgressFn};
use super::hf::Hub;
use super::manifest::{HfSource, Manifest, ManifestFile, ModelKind};
use super::{ModelError, ModelStore, PullReport};

/// The repository every Piper voice comes from.
pub const REPO: &str = "rhasspy/piper-voices";
/// The pinned tag of [`REPO`].
pub const REVISION: &str = "v1.0.0";
/// Model names with this prefix are Piper voices pulled by their index key.
pub const PREFIX: &str = "piper:";
const INDEX_FILE: &str = "voices.json";

/// Why the voice index or a voice could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PiperError {
    #[error("cannot fetch the Piper voice index ({REPO}@{REVISION}/{INDEX_FILE})")]
    Fetch(#[source] FetchError),
    #[error("the Piper voice index {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no Piper voice {name:?} in {REPO}@{REVISION}{}; see `reelbox voices list`", did_you_mean(.close))]
    Unknown { name: String, close: Vec<String> },
    #[error("Piper voice {name:?}: the index lists no {suffix} file")]
    Incomplete { name: String, suffix: &'static str },
    #[error("{file}: md5 {actual} is not the index's {expected}; the voice was removed again")]
    Md5 { file: String, expected: String, actual: String },
}

impl PiperError {
    /// No voice `name` among the `known` ones, with the close names (the pull's refusal, at
    /// submission and when it runs).
    pub fn unknown(name: &str, known: &[String]) -> Self {
        Self::Unknown { name: name.to_string(), close: super::availability::close_names(name, known) }
    }
}

/// A voice's language as the index (and an installed voice's `.onnx.json`) names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Language {
    /// `de_DE`.
    pub code: String,
    /// `de`; some voices' own configs leave it out (then it is read off `code`).
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub name_english: String,
    #[serde(default)]
    pub country_english: String,
}

/// One file of a voice in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    pub size_bytes: u64,
    pub md5_digest: String,
}

/// One voice of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiperVoice {
    /// `de_DE-thorsten-medium`: what `piper:` pulls and `--voice` names.
    pub key: String,
    pub name: String,
    pub language: Language,
    pub quality: String,
    #[serde(default = "one")]
    pub num_speakers: u32,
    #[serde(default)]
    pub speaker_id_map: BTreeMap<String, i64>,
    /// Repository path → size and md5.
    pub files: BTreeMap<String, IndexFile>,
}

fn one() -> u32 {
    1
}

impl PiperVoice {
    /// Bytes of the files a pull installs.
    pub fn size(&self) -> u64 {
        self.files.values().map(|f| f.size_bytes).sum()
    }

    /// Speaker names in id order (empty for single-speaker voices).
    pub fn speakers(&self) -> Vec<String> {
        let mut by_id: Vec<(&i64, &String)> = self.speaker_id_map.iter().map(|(n, id)| (id, n)).collect();
        by_id.sort();
        by_id.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// True when `lang` (`de`, `de_DE`, `de-DE`, any case) is this voice's language.
    pub fn speaks(&self, lang: &str) -> bool {
        let want = lang.replace('-', "_").to_ascii_lowercase();
        want == self.language.family.to_ascii_lowercase() || want == self.language.code.to_ascii_lowercase()
    }

    fn file_ending(&self, suffix: &'static str) -> Result<&str, PiperError> {
        self.files
            .keys()
            .find(|p| p.ends_with(&format!("/{}{suffix}", self.key)))
            .map(String::as_str)
            .ok_or_else(|| PiperError::Incomplete { name: self.key.clone(), suffix })
    }

    /// The manifest a `piper:` pull installs: the model, its config and its model card,
    /// from the voice's directory in [`REPO`] at [`REVISION`].
    pub fn manifest(&self) -> Result<Manifest, PiperError> {
        let onnx = self.file_ending(".onnx")?;
        self.file_ending(".onnx.json")?;
        let dir = onnx.rsplit_once('/').map_or("", |(d, _)| d);
        let files = self
            .files
            .iter()
            .filter_map(|(path, f)| {
                let local = path.strip_prefix(dir)?.trim_start_matches('/');
                (!local.contains('/')).then(|| ManifestFile {
                    path: local.into(),
                    size: f.size_bytes,
                    sha256: String::new(),
                })
            })
            .collect();
        let source = HfSource { repo: REPO.into(), revision: REVISION.into(), dir: dir.into(), file: None };
        Ok(Manifest {
            summary: format!(
                "Piper voice: {} ({}), {}, {} quality{}",
                self.language.name_english,
                self.language.country_english,
                self.name,
                self.quality,
                if self.num_speakers > 1 { format!(", {} speakers", self.num_speakers) } else { String::new() }
            ),
            sources: vec![source.describe()],
            license: Some(format!("see {dir}/MODEL_CARD in {REPO}")),
            ..Manifest::new(self.key.clone(), ModelKind::Tts, files)
        })
    }
}

/// What an installed voice's own Piper config (`NAME.onnx.json`) says of it.
#[derive(Debug, Default, Deserialize)]
struct InstalledConfig {
    #[serde(default)]
    language: Option<Language>,
    #[serde(default)]
    audio: InstalledAudio,
    #[serde(default)]
    num_speakers: Option<u32>,
    #[serde(default)]
    speaker_id_map: BTreeMap<String, i64>,
}

#[derive(Debug, Default, Deserialize)]
struct InstalledAudio {
    #[serde(default)]
    quality: Option<String>,
}

impl PiperVoice {
    /// An installed voice as far as its installed manifest and its config tell, for a
    /// list made without the index: its key (`en_US-joe-medium`, read as
    /// language-name-quality), the language and speakers its config names, each file's
    /// size (no md5: the index's alone).
    fn installed(m: &Manifest, dir: &Path) -> Self {
        let config: InstalledConfig = m
            .files
            .iter()
            .find(|f| f.path.ends_with(".onnx.json"))
            .and_then(|f| std::fs::read_to_string(dir.join(&f.path)).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let parts: Vec<&str> = m.name.splitn(3, '-').collect();
        let (from_key, name, quality) = match parts.as_slice() {
            [code, name, quality] => (*code, *name, Some(*quality)),
            _ => ("", m.name.as_str(), None),
        };
        let mut language = config.language.unwrap_or_else(|| Language {
            // `en_US`: the key's first part is its language only when it reads as one.
            code: if from_key.contains('_') { from_key.to_string() } else { String::new() },
            ..Language::default()
        });
        if language.family.is_empty() {
            language.family = language.code.split('_').next().unwrap_or_default().to_string();
        }
        let files = m
            .files
            .iter()
            .map(|f| (f.path.clone(), IndexFile { size_bytes: f.size, md5_digest: String::new() }))
            .collect();
        PiperVoice {
            key: m.name.clone(),
            name: name.to_string(),
            language,
            quality: quality.map(str::to_string).or(config.audio.quality).unwrap_or_default(),
            num_speakers: config.num_speakers.unwrap_or(1),
            speaker_id_map: config.speaker_id_map,
            files,
        }
    }
}

/// Parses `voices.json`.
pub fn parse_index(text: &str, path: &Path) -> Result<BTreeMap<String, PiperVoice>, PiperError> {
    serde_json::from_str(text).map_err(|source| PiperError::Parse { path: path.to_path_buf(), source })
}

/// Hex md5 of a file.
fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

impl ModelStore {
    fn voice_index_path(&self) -> PathBuf {
        self.models_dir().join(".cache").join("piper-voices").join(REVISION).join(INDEX_FILE)
    }

    /// Names of the voices in the cached index, without fetching it (none before the first
    /// `reelbox voices list` or `piper:` pull): voices a `piper:` pull can install.
    pub fn cached_piper_voices(&self) -> Vec<String> {
        self.cached_piper_index().map(|(index, _)| index.into_keys().collect()).unwrap_or_default()
    }

    /// The cached voice index and when it was fetched, without fetching it: what
    /// `reelbox voices list --refresh` lists when the hub cannot be reached (the index is
    /// pinned to a tag, so the cached copy is the same list).
    pub fn cached_piper_index(&self) -> Option<(BTreeMap<String, PiperVoice>, Option<SystemTime>)> {
        let path = self.voice_index_path();
        let text = std::fs::read_to_string(&path).ok()?;
        let fetched = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        parse_index(&text, &path).ok().map(|index| (index, fetched))
    }

    /// The voices installed here (every installed `tts` model), by name, read from their
    /// installed manifests and configs: what `reelbox voices list` shows when the index
    /// cannot be had.
    pub fn installed_piper_voices(&self) -> BTreeMap<String, PiperVoice> {
        super::read_manifests(self.models_dir())
            .into_iter()
            .filter(|(m, _)| m.kind == ModelKind::Tts && self.model_dir(&m.name).is_dir())
            .map(|(m, _)| (m.name.clone(), PiperVoice::installed(&m, &self.model_dir(&m.name))))
            .collect()
    }

    /// The Piper voice index, fetched once (the tag is pinned) and read from the cache
    /// after; `refresh` fetches it again.
    pub async fn piper_voices(&self, refresh: bool) -> Result<BTreeMap<String, PiperVoice>, PiperError> {
        let path = self.voice_index_path();
        if refresh || !path.is_file() {
            let dir = path.parent().unwrap_or(self.models_dir()).to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|source| PiperError::Io { path: dir.clone(), source })?;
            let source = HfSource { repo: REPO.into(), revision: REVISION.into(), dir: String::new(), file: None };
            let file = ManifestFile { path: INDEX_FILE.into(), size: 0, sha256: String::new() };
            if let Err(e) = Hub::from_env().fetch_file(&source, &file, &path, &|_, _| {}).await {
                // A failed first fetch leaves no empty cache folders behind in the models dir.
                for empty in dir.ancestors().take_while(|d| *d != self.models_dir()) {
                    if std::fs::remove_dir(empty).is_err() {
                        break;
                    }
                }
                return Err(PiperError::Fetch(e));
            }
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PiperError::Io { path: path.clone(), source })?;
        parse_index(&text, &path)
    }

    /// Pulls Piper voice `key` (see the module docs).
    pub async fn pull_piper(
        &self,
        key: &str,
        force: bool,
        progress: PullProgressFn<'_>,
    ) -> Result<PullReport, ModelError> {
        let voices = self.piper_voices(false).await?;
        let Some(voice) = voices.get(key) else {
            let keys: Vec<String> = voices.keys().cloned().collect();
            return Err(PiperError::unknown(key, &keys).into());
        };
        let manifest = voice.manifest()?;
        let report = self.pull_manifest(&manifest, force, progress).await?;
        let dir = self.model_dir(key);
        for (path, f) in &voice.files {
            let name = path.rsplit('/').next().unwrap_or(path);
            let local = dir.join(name);
            let actual = md5_file(&local).map_err(|source| PiperError::Io { path: local.clone(), source })?;
            if !actual.eq_ignore_ascii_case(&f.md5_digest) {
                self.rm(key)?;
                return Err(PiperError::Md5 { file: path.clone(), expected: f.md5_digest.clone(), actual }.into());
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"de_DE-thorsten-medium":{"key":"de_DE-thorsten-medium","name":"thorsten",
        "language":{"code":"de_DE","family":"de","region":"DE","name_native":"Deutsch","name_english":"German",
        "country_english":"Germany"},"quality":"medium","num_speakers":1,"speaker_id_map":{},
        "files":{"de/de_DE/thorsten/medium/de_DE-thorsten-medium.onnx":{"size_bytes":63201294,"md5_digest":"a"},
        "de/de_DE/thorsten/medium/de_DE-thorsten-medium.onnx.json":{"size_bytes":4800,"md5_digest":"b"},
        "de/de_DE/thorsten/medium/MODEL_CARD":{"size_bytes":300,"md5_digest":"c"}},"aliases":[]},
        "en_GB-vctk-medium":{"key":"en_GB-vctk-medium","name":"vctk","language":{"code":"en_GB","family":"en",
        "region":"GB","name_english":"English","country_english":"Great Britain"},"quality":"medium",
        "num_speakers":3,"speaker_id_map":{"p239":2,"p236":0,"p264":1},
        "files":{"en/en_GB/vctk/medium/en_GB-vctk-medium.onnx":{"size_bytes":10,"md5_digest":"d"},
        "en/en_GB/vctk/medium/en_GB-vctk-medium.onnx.json":{"size_bytes":5,"md5_digest":"e"}}}}"#;

    #[test]
    fn a_voice_becomes_a_manifest_of_its_directory() {
        let index = parse_index(INDEX, Path::new("voices.json")).expect("parses");
        let m = index["de_DE-thorsten-medium"].manifest().expect("manifest");
        assert_eq!(m.sources, vec!["hf:rhasspy/piper-voices@v1.0.0/de/de_DE/thorsten/medium"]);
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["MODEL_CARD", "de_DE-thorsten-medium.onnx", "de_DE-thorsten-medium.onnx.json"]);
        assert_eq!(m.kind, ModelKind::Tts);
        m.validate().expect("the manifest is valid");
    }

    #[test]
    fn languages_match_by_family_or_code_and_speakers_come_in_id_order() {
        let index = parse_index(INDEX, Path::new("voices.json")).expect("parses");
        let vctk = &index["en_GB-vctk-medium"];
        assert!(vctk.speaks("en") && vctk.speaks("en-gb") && !vctk.speaks("de"));
        assert_eq!(vctk.speakers(), vec!["p236", "p264", "p239"]);
        assert_eq!(vctk.size(), 15);
    }
}

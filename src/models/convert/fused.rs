//! The installed diffusion models as a workflow names its checkpoint and LoRAs: each one's
//! source and import flags, and for one converted with LoRAs fused in, its base and each
//! LoRA's file and scale, as its `conversion.json` records them, with the A1111 hashes of the
//! files it was made from (`super::hashes`, which also names them as A1111 does). ComfyUI loads LoRAs onto
//! a checkpoint as it samples; reelbox fuses them at import, so a workflow's LoRA loaders
//! run on the model made of that base with those LoRAs (`api::comfy::loras`).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::CONVERSION_FILE;
use crate::models::{Catalog, ModelKind, import};

/// A LoRA fused into a model at import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FusedLora {
    /// The file as the import was given it (a path on the machine that imported it).
    pub file: String,
    /// As the import took it (f32), so 0.7 reads and prints as 0.7, not 0.699999988.
    #[serde(default = "one")]
    pub scale: f32,
    /// A1111's hash of the file (`super::hashes::lora`), when the import kept one.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "hex_field::<_, 64>")]
    pub hash: Option<String>,
}

/// A LoRA's scale where none is said, as the import's `--lora FILE` takes it.
fn one() -> f32 {
    1.0
}

impl FusedLora {
    /// The file's name without its folder, as ComfyUI lists LoRAs (`style.safetensors`).
    pub fn file_name(&self) -> &str {
        file_name(&self.file)
    }
}

/// The last part of a path, `/` or `\` separated (a workflow may name `loras\style.safetensors`).
pub fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// An installed diffusion model, as a workflow's checkpoint and LoRAs find it. A worker box's
/// heartbeat carries its models' as they read here (`kinds::box_models::BoxModel`), so a head
/// finds them alike; each field has a default, so a beat from a box with fewer still reads,
/// and a hash that is not one is dropped as it is from a record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// Not in a heartbeat, whose model carries its name beside it.
    #[serde(skip)]
    pub name: String,
    /// The path it was imported or converted from, as its manifest says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The `models import` flags it was converted with but its LoRAs (`--fp16`, a given
    /// `--prediction`), which a fusing import of the same base repeats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// What it was converted from: the checkpoint file's stem or the folder's name
    /// (`details.base`); `None` when not converted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The LoRAs fused into it, none for a plain model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<FusedLora>,
    /// The sha256 of the checkpoint file it was converted from, when the import kept one (a
    /// folder's conversion, a ready ONNX import and an older import have none).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "hex_field::<_, 64>")]
    pub sha256: Option<String>,
    /// A1111's old hash of that file (`super::hashes::CheckpointHash::model_hash`).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "hex_field::<_, 8>")]
    pub model_hash: Option<String>,
}

impl Checkpoint {
    /// Model `name` installed in `dir`, its manifest's source `source`.
    pub fn read(name: &str, dir: &Path, source: Option<&str>) -> Self {
        let record: Option<serde_json::Value> =
            std::fs::read_to_string(dir.join(CONVERSION_FILE)).ok().and_then(|text| serde_json::from_str(&text).ok());
        let Some(record) = record else {
            return Self { name: name.to_string(), source: source.map(String::from), ..Self::default() };
        };
        let loras = record.get("loras").and_then(serde_json::Value::as_array).into_iter().flatten();
        let loras = loras
            .filter_map(|l| {
                let file = l.get("file")?.as_str()?.to_string();
                let scale = l.get("scale").and_then(serde_json::Value::as_f64).unwrap_or(1.0) as f32;
                Some(FusedLora { file, scale, hash: hex_of(l.get("a1111_hash"), 64) })
            })
            .collect();
        // The record read once: its flags too.
        let mut flags = import_flags_in(&record).unwrap_or_default();
        // `--lora FILE:SCALE` pairs: the LoRAs are the workflow's to name.
        while let Some(at) = flags.iter().position(|f| f == "--lora") {
            flags.drain(at..(at + 2).min(flags.len()));
        }
        let recorded = record.get("source").and_then(serde_json::Value::as_str);
        Self {
            name: name.to_string(),
            source: source.or(recorded).map(String::from),
            flags,
            base: record.pointer("/details/base").and_then(serde_json::Value::as_str).map(String::from),
            loras,
            sha256: hex_of(record.get("sha256"), 64),
            model_hash: hex_of(record.get("model_hash"), 8),
        }
    }

    /// Whether LoRAs were fused into it.
    pub fn is_fused(&self) -> bool {
        !self.loras.is_empty()
    }

    /// Whether its import left a record of it (a source, a base, LoRAs or hashes): what a
    /// heartbeat carries of it.
    pub fn is_recorded(&self) -> bool {
        *self != Self { name: self.name.clone(), ..Self::default() }
    }

    /// `base + LoRA×scale + …` (each LoRA by its file's stem) for a model with LoRAs fused
    /// in; `None` for any other.
    pub fn fused_text(&self) -> Option<String> {
        let base = self.base.as_deref().filter(|_| self.is_fused())?;
        let loras = self.loras.iter().map(|l| {
            let stem = Path::new(l.file_name()).file_stem().map_or(l.file_name().into(), |s| s.to_string_lossy());
            format!("{stem}×{}", l.scale)
        });
        Some(std::iter::once(base.to_string()).chain(loras).collect::<Vec<_>>().join(" + "))
    }
}

/// A recorded hash: `len` hex digits, in lower case; `None` for anything else (an older
/// record's missing key, a hand-edited one), so a hash is never cut inside a character.
fn hex_of(value: Option<&serde_json::Value>, len: usize) -> Option<String> {
    hex(value?.as_str()?, len)
}

/// `text` as a hash of `len` hex digits, in lower case, or `None` ([`hex_of`]).
fn hex(text: &str, len: usize) -> Option<String> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| text.to_ascii_lowercase())
}

/// A hash field of a heartbeat's [`Checkpoint`], held to what a record's is ([`hex_of`]).
fn hex_field<'de, D: Deserializer<'de>, const LEN: usize>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(|t| hex(&t, LEN)))
}

/// Every installed diffusion model as a [`Checkpoint`], sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoints(pub Vec<Checkpoint>);

impl Checkpoints {
    /// The installed diffusion models of `catalog`'s reading, read once per reading.
    pub fn of(catalog: &Catalog) -> Arc<Self> {
        catalog.worked_out(|c| {
            let models = c.installed(ModelKind::Diffusion).filter_map(|m| {
                let source = m.manifest.as_ref().and_then(import::source_of);
                Some(Checkpoint::read(m.name(), m.dir()?, source))
            });
            Self(models.collect())
        })
    }

    /// The models with LoRAs fused in.
    pub fn fused(&self) -> impl Iterator<Item = &Checkpoint> {
        self.0.iter().filter(|c| c.is_fused())
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<&Checkpoint> {
        self.0.iter().find(|c| c.name == name)
    }

    /// The file names of the LoRAs fused into any model, sorted, each once.
    pub fn lora_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self.fused().flat_map(|c| &c.loras).map(|l| l.file_name().to_string()).collect();
        files.sort();
        files.dedup();
        files
    }
}

/// `base + LoRA×scale + …` for a model converted with LoRAs fused in, read from its
/// `conversion.json` ([`Checkpoint::fused_text`]); `None` for any other model (or an
/// unreadable record).
pub fn fused_of(dir: &Path) -> Option<String> {
    Checkpoint::read("", dir, None).fused_text()
}

/// The `models import` flags that made the converted model in `dir`, read back from its
/// `conversion.json`: `--lora FILE:SCALE` for each LoRA, `--fp16`, and `--prediction` when
/// it was given (a guessed type is guessed alike again). `None` without a readable record.
pub fn import_flags_of(dir: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(dir.join(CONVERSION_FILE)).ok()?;
    import_flags_in(&serde_json::from_str(&text).ok()?)
}

/// [`import_flags_of`] from a `conversion.json` already read.
pub fn import_flags_in(record: &serde_json::Value) -> Option<Vec<String>> {
    let mut flags = Vec::new();
    for l in record.get("loras").and_then(serde_json::Value::as_array).into_iter().flatten() {
        let file = l.get("file")?.as_str()?;
        // Kept as f32 (the request's type), so 0.7 reads back as 0.7, not 0.699999988.
        let scale = l.get("scale").and_then(serde_json::Value::as_f64).unwrap_or(1.0) as f32;
        flags.extend(["--lora".to_string(), format!("{file}:{scale}")]);
    }
    if record.get("fp16").and_then(serde_json::Value::as_bool) == Some(true) {
        flags.push("--fp16".into());
    }
    let details = record.get("details");
    let given =
        details.and_then(|d| d.get("prediction_from")).and_then(serde_json::Value::as_str) == Some("--prediction");
    if given && let Some(p) = details.and_then(|d| d.get("prediction_type")).and_then(serde_json::Value::as_str) {
        flags.extend(["--prediction".to_string(), if p == "v_prediction" { "v" } else { p }.to_string()]);
    }
    Some(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fused_models_record_gives_its_base_source_loras_and_other_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = Checkpoint::read("sd", dir.path(), Some("/m/sd.safetensors"));
        assert_eq!((plain.source.as_deref(), plain.is_fused()), (Some("/m/sd.safetensors"), false));
        let record = serde_json::json!({"source": "/m/Dream Shaper 8.safetensors", "fp16": true,
            "loras": [{"file": "/l/Film Grain.safetensors", "scale": 0.7f32}, {"file": "C:\\l\\ink.safetensors", "scale": 1.0}],
            "details": {"base": "Dream Shaper 8", "prediction_from": "--prediction", "prediction_type": "v_prediction"}});
        std::fs::write(dir.path().join(CONVERSION_FILE), record.to_string()).expect("record");
        let fused = Checkpoint::read("dreamy", dir.path(), None);
        assert_eq!(fused.base.as_deref(), Some("Dream Shaper 8"));
        assert_eq!(fused.source.as_deref(), Some("/m/Dream Shaper 8.safetensors"));
        assert_eq!(fused.flags, ["--fp16", "--prediction", "v"]);
        let loras: Vec<(&str, f32)> = fused.loras.iter().map(|l| (l.file_name(), l.scale)).collect();
        assert_eq!(loras, [("Film Grain.safetensors", 0.7), ("ink.safetensors", 1.0)]);
        let all = Checkpoints(vec![plain, fused]);
        assert_eq!(all.lora_files(), ["Film Grain.safetensors", "ink.safetensors"]);
        assert_eq!(all.fused().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["dreamy"]);
    }

    #[test]
    fn fused_models_name_their_base_and_loras() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(fused_of(dir.path()), None, "no record");
        let record = serde_json::json!({"details": {"base": "sd15"}, "loras": [
            {"file": "/l/ink.safetensors", "scale": 0.8}, {"file": "C:\\l\\film.v2.pt", "scale": 1.0}]});
        std::fs::write(dir.path().join(CONVERSION_FILE), record.to_string()).expect("write");
        assert_eq!(fused_of(dir.path()).as_deref(), Some("sd15 + ink×0.8 + film.v2×1"));
        let plain = serde_json::json!({"details": {"base": "sd15"}, "loras": []});
        std::fs::write(dir.path().join(CONVERSION_FILE), plain.to_string()).expect("write");
        assert_eq!(fused_of(dir.path()), None, "a plain conversion is not fused");
    }

    #[test]
    fn a_records_hashes_are_read_only_when_they_are_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sha = "AB".repeat(32);
        let record = serde_json::json!({"sha256": sha, "model_hash": "0123abcd",
            "loras": [{"file": "/l/ink.safetensors", "scale": 1.0, "a1111_hash": "é".repeat(32)}]});
        std::fs::write(dir.path().join(CONVERSION_FILE), record.to_string()).expect("record");
        let c = Checkpoint::read("sd", dir.path(), None);
        assert_eq!((c.sha256, c.model_hash.as_deref()), (Some("ab".repeat(32)), Some("0123abcd")));
        assert_eq!(c.loras[0].hash, None, "64 bytes, not 64 hex digits");
        let old = Checkpoint::read("old", tempfile::tempdir().expect("tempdir").path(), None);
        assert_eq!((old.sha256, old.model_hash), (None, None), "no record: no hash");
    }
}

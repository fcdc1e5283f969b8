//! Models the live worker boxes have, as the head last read their heartbeats: a request
//! naming a model only a box has is accepted, and filled from the details that box sent,
//! so a head with `local_work = false` need not hold every model it hands out.
//!
//! Process-wide because the checks that read it (`kinds::inputs`, the image parameters)
//! get only the config from their many callers (native routes, OpenAI, ComfyUI, profiles),
//! and a process is at most one head. Never set on a single box or a worker, where it
//! answers nothing, so those check requests exactly as before.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::models::convert::fused::{Checkpoint, Checkpoints};
use crate::models::{Catalog, ModelKind, import};
use crate::pipelines::diffusion::ModelInfo;

/// One installed model as a box advertises it in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxModel {
    /// Its name (the folder under the box's models dir).
    pub name: String,
    /// Its kind; `None` for a bare `NAME/model.onnx` folder the catalog does not list,
    /// which the single-file kinds (lip-sync, upscale, face) open by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// Bytes of its ONNX weights, for the memory a job on it reserves.
    #[serde(default)]
    pub weights_bytes: u64,
    /// A diffusion model's sizes and defaults, which fill an image request's blanks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffusion: Option<ModelInfo>,
    /// A diffusion model's import record as the box reads it (its base, fused LoRAs, source
    /// file and A1111 hashes), where its import left one: what a head's ComfyUI LoRA
    /// loaders, checkpoint choices and A1111 hashes find it by ([`checkpoints`]). Absent
    /// from older boxes, whose models the head then knows by name alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

impl BoxModel {
    /// Whether it is model `name` of `kind`.
    fn is(&self, kind: ModelKind, name: &str) -> bool {
        self.name == name && self.kind.map_or(single_file(kind), |k| k == kind)
    }
}

/// Kinds a bare `NAME/model.onnx` folder serves.
fn single_file(kind: ModelKind) -> bool {
    !matches!(kind, ModelKind::Diffusion | ModelKind::Tts)
}

/// `None` until this process is a head; then each live box's models, with its name.
static LIVE: RwLock<Option<Vec<(String, BoxModel)>>> = RwLock::new(None);

/// This box's listing as worked out from one catalog reading, kept with it
/// ([`Catalog::worked_out`]): a heartbeat asks every beat and placement every pass, and the
/// catalog says when the models dir changed.
struct Own {
    listing: Vec<Listed>,
    /// Each listed model's details (its configs read, its weights summed), worked out the
    /// first time they are asked: a heartbeat asks all, the model listing its diffusion
    /// models'. `None` inside: left out (see [`installed`]).
    details: Vec<OnceLock<Option<BoxModel>>>,
}

impl Own {
    fn of(catalog: &Catalog) -> Self {
        let listing = listing(catalog);
        let details = listing.iter().map(|_| OnceLock::new()).collect();
        Self { listing, details }
    }

    /// The details of the `i`th listed model.
    fn details(&self, i: usize) -> Option<&BoxModel> {
        let (Some(cell), Some(listed)) = (self.details.get(i), self.listing.get(i)) else { return None };
        cell.get_or_init(|| details(listed)).as_ref()
    }
}

/// This box's listing, worked out again only when the catalog was read again.
fn own(config: &Config) -> Arc<Own> {
    Catalog::load(config).worked_out(Own::of)
}

/// One installed model of this box's listing.
struct Listed {
    name: String,
    kind: Option<ModelKind>,
    dir: PathBuf,
    /// The file it was imported from, as its manifest says.
    source: Option<String>,
}

/// This box's installed models: the catalog's, and the bare `NAME/model.onnx` folders
/// stages open without a catalog entry (a box listing fewer than it has would never get
/// a render), with each one's directory.
fn listing(catalog: &Catalog) -> Vec<Listed> {
    let mut out: Vec<Listed> = catalog
        .models()
        .iter()
        .filter_map(|m| {
            let source = m.manifest.as_ref().and_then(import::source_of).map(String::from);
            Some(Listed { name: m.name().to_string(), kind: Some(m.kind()), dir: m.dir()?.to_path_buf(), source })
        })
        .collect();
    let dirs = std::fs::read_dir(catalog.models_dir()).into_iter().flatten().flatten();
    for e in dirs.filter(|e| e.path().join("model.onnx").is_file()) {
        let Ok(name) = e.file_name().into_string() else { continue };
        if !out.iter().any(|l| l.name == name) {
            out.push(Listed { name, kind: None, dir: e.path(), source: None });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Names of the models installed on this box, sorted: what its heartbeat lists and what
/// the head's own devices can run.
pub fn installed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = own(config).listing.iter().map(|l| l.name.clone()).collect();
    names.dedup();
    names
}

/// This box's installed models with what a head needs to check a request against them.
/// A diffusion model whose folder does not read is left out: the head refuses it rather
/// than send work this box would fail.
pub fn installed(config: &Config) -> Vec<BoxModel> {
    let own = own(config);
    (0..own.listing.len()).filter_map(|i| own.details(i).cloned()).collect()
}

/// This box's installed model `name` with its details as `catalog`'s reading has them,
/// worked out once per reading: what the model listing's drawing defaults are read from
/// instead of the model's configs at every listing. `None` where [`installed`] leaves it
/// out.
pub fn own_model(catalog: &Catalog, name: &str) -> Option<BoxModel> {
    let own = catalog.worked_out(Own::of);
    let i = own.listing.iter().position(|l| l.name == name)?;
    own.details(i).cloned()
}

/// [`installed_names`] and [`installed`] worked out from the disk now, each from its own
/// reading, as every heartbeat did before the listing was kept (`reelbox bench models`
/// compares the two).
pub fn heartbeat_unkept(config: &Config) -> (Vec<String>, Vec<BoxModel>) {
    let read = || listing(&Catalog::of(&crate::models::ModelStore::new(config)));
    let mut names: Vec<String> = read().into_iter().map(|l| l.name).collect();
    names.dedup();
    (names, read().iter().filter_map(details).collect())
}

/// A listed model's details; `None` for a diffusion model whose configs do not read. A
/// diffusion model's import record is read by the one reader of it, [`Checkpoint::read`].
fn details(l: &Listed) -> Option<BoxModel> {
    let (diffusion, checkpoint) = match l.kind {
        Some(ModelKind::Diffusion) => {
            let checkpoint = Checkpoint::read(&l.name, &l.dir, l.source.as_deref());
            (Some(ModelInfo::inspect(&l.dir).ok()?), Some(checkpoint).filter(Checkpoint::is_recorded))
        }
        _ => (None, None),
    };
    let weights_bytes = super::memory::weights_bytes(&l.dir);
    Some(BoxModel { name: l.name.clone(), kind: l.kind, weights_bytes, diffusion, checkpoint })
}

/// Makes this process a head whose live boxes have these models (each heartbeat read),
/// by box name.
pub fn set_live(by_box: impl IntoIterator<Item = (String, Vec<BoxModel>)>) {
    let live = by_box.into_iter().flat_map(|(host, models)| models.into_iter().map(move |m| (host.clone(), m)));
    let mut live: Vec<(String, BoxModel)> = live.collect();
    // By box, so a model two boxes have is described by the same one every time.
    live.sort_by(|a, b| a.0.cmp(&b.0));
    *LIVE.write().unwrap_or_else(|p| p.into_inner()) = Some(live);
}

/// Reads the live boxes' models (empty off a head).
fn with_live<T>(f: impl FnOnce(&[(String, BoxModel)]) -> T) -> T {
    let live = LIVE.read().unwrap_or_else(|p| p.into_inner());
    f(live.as_deref().unwrap_or_default())
}

/// A model the live boxes have, with the boxes that have it: what the head's model lists
/// add to its own.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveModel {
    pub name: String,
    pub kind: ModelKind,
    /// The boxes that have it, sorted.
    pub boxes: Vec<String>,
    /// Bytes of its weights (the most any of them said).
    pub weights_bytes: u64,
    /// A diffusion model's import record, as the first box (by name) with one sent it.
    pub checkpoint: Option<Checkpoint>,
}

/// The live boxes' models, by name then kind, each once with the boxes that have it; a
/// bare `model.onnx` folder, whose kind no catalog tells, is left out as the head's own
/// listing leaves it out.
pub fn live_models() -> Vec<LiveModel> {
    let mut out: Vec<LiveModel> = Vec::new();
    with_live(|models| {
        for (host, m) in models.iter() {
            let Some(kind) = m.kind else { continue };
            // The name is the model's, whatever the record says.
            let checkpoint = m.checkpoint.clone().map(|c| Checkpoint { name: m.name.clone(), ..c });
            match out.iter_mut().find(|l| l.name == m.name && l.kind == kind) {
                Some(l) => {
                    l.boxes.push(host.to_string());
                    l.weights_bytes = l.weights_bytes.max(m.weights_bytes);
                    l.checkpoint = l.checkpoint.take().or(checkpoint);
                }
                None => out.push(LiveModel {
                    name: m.name.clone(),
                    kind,
                    boxes: vec![host.to_string()],
                    weights_bytes: m.weights_bytes,
                    checkpoint,
                }),
            }
        }
    });
    for l in &mut out {
        l.boxes.sort();
        l.boxes.dedup();
    }
    out.sort_by(|a, b| (&a.name, a.kind.as_str()).cmp(&(&b.name, b.kind.as_str())));
    out
}

/// The diffusion models a workflow's checkpoint and LoRA loaders, and an A1111 client's
/// title or hash, are looked up among: this box's ([`Checkpoints::of`]) and, on a head, each
/// one only its live boxes have, as its import record came in their heartbeats (by name
/// alone from an older box); each once, sorted by name. The head's own copy of a model its
/// boxes have too is the one listed.
pub fn checkpoints(catalog: &Catalog) -> Arc<Checkpoints> {
    let own = Checkpoints::of(catalog);
    let theirs: Vec<Checkpoint> = live_models()
        .into_iter()
        .filter(|l| l.kind == ModelKind::Diffusion && own.get(&l.name).is_none())
        .map(|l| l.checkpoint.unwrap_or_else(|| Checkpoint { name: l.name, ..Checkpoint::default() }))
        .collect();
    if theirs.is_empty() {
        return own;
    }
    let mut all = own.0.clone();
    all.extend(theirs);
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Arc::new(Checkpoints(all))
}

/// Whether a live worker box has model `name` of `kind`.
pub fn has(kind: ModelKind, name: &str) -> bool {
    with_live(|m| m.iter().any(|(_, b)| b.is(kind, name)))
}

/// Names of the live boxes' models of `kind`, sorted, each once.
pub fn names(kind: ModelKind) -> Vec<String> {
    let mut names: Vec<String> =
        with_live(|m| m.iter().filter(|(_, b)| b.kind == Some(kind)).map(|(_, b)| b.name.clone()).collect());
    names.sort();
    names.dedup();
    names
}

/// Diffusion model `name`'s details as a live box sent them.
pub fn diffusion(name: &str) -> Option<ModelInfo> {
    with_live(|m| m.iter().map(|(_, b)| b).find(|b| b.is(ModelKind::Diffusion, name)).and_then(|b| b.diffusion.clone()))
}

/// Bytes of model `name`'s weights on a live box (0 when none has it).
pub fn weights_bytes(name: &str) -> u64 {
    with_live(|m| m.iter().filter(|(_, b)| b.name == name).map(|(_, b)| b.weights_bytes).max().unwrap_or(0))
}

/// The model of `kind` a request naming none runs when the head has none: the catalog's
/// one rule ([`Catalog::default_among`]) over the live boxes' models.
pub fn default_model(config: &Config, kind: ModelKind) -> Option<String> {
    let names = names(kind);
    let only = match names.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    };
    Catalog::default_among(config, kind, |n| names.iter().any(|m| m == n), || only)
}

/// The model of `kind` a request naming none runs: the box's own default
/// ([`Catalog::default_model`]), else on a head its live boxes' ([`default_model`]).
pub fn default_anywhere(config: &Config, kind: ModelKind) -> Option<String> {
    Catalog::default_model(config, kind).or_else(|| default_model(config, kind))
}

/// Where a missing model was looked for, after "not installed": on a head, its boxes too.
pub fn missing_where() -> &'static str {
    if LIVE.read().unwrap_or_else(|p| p.into_inner()).is_some() { " here nor on any worker box" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::convert::fused::FusedLora;

    #[test]
    fn an_older_heartbeat_without_details_reads() {
        let old: BoxModel = serde_json::from_value(serde_json::json!({"name": "x"})).expect("reads");
        assert_eq!(old, BoxModel { name: "x".into(), kind: None, weights_bytes: 0, diffusion: None, checkpoint: None });
    }

    #[test]
    fn a_heartbeats_import_record_reads_back_as_the_box_read_it_and_bad_hashes_are_dropped() {
        let sha = "ab".repeat(32);
        let record = Checkpoint {
            name: "dreamy".into(),
            source: Some("/m/tiny-sd.safetensors".into()),
            flags: vec!["--fp16".into()],
            base: Some("tiny-sd".into()),
            loras: vec![FusedLora { file: "/l/style.safetensors".into(), scale: 0.8, hash: Some("cd".repeat(32)) }],
            sha256: Some(sha.clone()),
            model_hash: Some("0123abcd".into()),
        };
        let sent = BoxModel {
            name: "dreamy".into(),
            kind: Some(ModelKind::Diffusion),
            weights_bytes: 1,
            diffusion: None,
            checkpoint: Some(record.clone()),
        };
        let beat = serde_json::to_value(&sent).expect("writes");
        assert_eq!(beat["checkpoint"].get("name"), None, "the model's name is said once");
        let read: BoxModel = serde_json::from_value(beat).expect("reads");
        assert_eq!(read.checkpoint, Some(Checkpoint { name: String::new(), ..record }));
        // A box's hash is cut into A1111's shorthash: one that is not 64 hex digits is none.
        let bad = serde_json::json!({"name": "x", "checkpoint": {"sha256": "é", "model_hash": "short",
            "loras": [{"file": "/l/ink.safetensors", "hash": "ab"}], "future_field": 1}});
        let bad: BoxModel = serde_json::from_value(bad).expect("reads");
        let c = bad.checkpoint.expect("a record");
        assert_eq!((c.sha256, c.model_hash, c.loras[0].hash.clone(), c.loras[0].scale), (None, None, None, 1.0));
        let older: BoxModel =
            serde_json::from_value(serde_json::json!({"name": "x", "kind": "diffusion"})).expect("reads");
        assert_eq!(older.checkpoint, None);
    }

    #[test]
    fn a_bare_model_file_serves_single_file_kinds_only() {
        let bare = BoxModel { name: "up".into(), kind: None, weights_bytes: 0, diffusion: None, checkpoint: None };
        assert!(bare.is(ModelKind::Upscale, "up") && bare.is(ModelKind::Lipsync, "up"));
        assert!(!bare.is(ModelKind::Diffusion, "up") && !bare.is(ModelKind::Tts, "up"));
        let voice = BoxModel { kind: Some(ModelKind::Tts), ..bare };
        assert!(voice.is(ModelKind::Tts, "up") && !voice.is(ModelKind::Upscale, "up"));
    }
}

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
use crate::models::{Catalog, ModelKind};
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
    listing: Vec<(String, Option<ModelKind>, PathBuf)>,
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

/// This box's installed models: the catalog's, and the bare `NAME/model.onnx` folders
/// stages open without a catalog entry (a box listing fewer than it has would never get
/// a render), with each one's directory.
fn listing(catalog: &Catalog) -> Vec<(String, Option<ModelKind>, PathBuf)> {
    let mut out: Vec<(String, Option<ModelKind>, PathBuf)> = catalog
        .models()
        .iter()
        .filter_map(|m| m.dir().map(|d| (m.name().to_string(), Some(m.kind()), d.to_path_buf())))
        .collect();
    let dirs = std::fs::read_dir(catalog.models_dir()).into_iter().flatten().flatten();
    for e in dirs.filter(|e| e.path().join("model.onnx").is_file()) {
        let Ok(name) = e.file_name().into_string() else { continue };
        if !out.iter().any(|(n, _, _)| *n == name) {
            out.push((name, None, e.path()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Names of the models installed on this box, sorted: what its heartbeat lists and what
/// the head's own devices can run.
pub fn installed_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = own(config).listing.iter().map(|(n, _, _)| n.clone()).collect();
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
    let i = own.listing.iter().position(|(n, _, _)| n == name)?;
    own.details(i).cloned()
}

/// [`installed_names`] and [`installed`] worked out from the disk now, each from its own
/// reading, as every heartbeat did before the listing was kept (`reelbox bench models`
/// compares the two).
pub fn heartbeat_unkept(config: &Config) -> (Vec<String>, Vec<BoxModel>) {
    let read = || listing(&Catalog::of(&crate::models::ModelStore::new(config)));
    let mut names: Vec<String> = read().into_iter().map(|(n, _, _)| n).collect();
    names.dedup();
    (names, read().iter().filter_map(details).collect())
}

/// A listed model's details; `None` for a diffusion model whose configs do not read.
fn details((name, kind, dir): &(String, Option<ModelKind>, PathBuf)) -> Option<BoxModel> {
    let diffusion = match kind {
        Some(ModelKind::Diffusion) => Some(ModelInfo::inspect(dir).ok()?),
        _ => None,
    };
    let weights_bytes = super::memory::weights_bytes(dir);
    Some(BoxModel { name: name.clone(), kind: *kind, weights_bytes, diffusion })
}

/// Makes this process a head whose live boxes have these models (each heartbeat read),
/// by box name.
pub fn set_live(by_box: impl IntoIterator<Item = (String, Vec<BoxModel>)>) {
    let live = by_box.into_iter().flat_map(|(host, models)| models.into_iter().map(move |m| (host.clone(), m)));
    *LIVE.write().unwrap_or_else(|p| p.into_inner()) = Some(live.collect());
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
}

/// The live boxes' models, by name then kind, each once with the boxes that have it; a
/// bare `model.onnx` folder, whose kind no catalog tells, is left out as the head's own
/// listing leaves it out.
pub fn live_models() -> Vec<LiveModel> {
    let mut out: Vec<LiveModel> = Vec::new();
    with_live(|models| {
        for (host, m) in models.iter() {
            let Some(kind) = m.kind else { continue };
            match out.iter_mut().find(|l| l.name == m.name && l.kind == kind) {
                Some(l) => {
                    l.boxes.push(host.to_string());
                    l.weights_bytes = l.weights_bytes.max(m.weights_bytes);
                }
                None => out.push(LiveModel {
                    name: m.name.clone(),
                    kind,
                    boxes: vec![host.to_string()],
                    weights_bytes: m.weights_bytes,
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

    #[test]
    fn an_older_heartbeat_without_details_reads() {
        let old: BoxModel = serde_json::from_value(serde_json::json!({"name": "x"})).expect("reads");
        assert_eq!(old, BoxModel { name: "x".into(), kind: None, weights_bytes: 0, diffusion: None });
    }

    #[test]
    fn a_bare_model_file_serves_single_file_kinds_only() {
        let bare = BoxModel { name: "up".into(), kind: None, weights_bytes: 0, diffusion: None };
        assert!(bare.is(ModelKind::Upscale, "up") && bare.is(ModelKind::Lipsync, "up"));
        assert!(!bare.is(ModelKind::Diffusion, "up") && !bare.is(ModelKind::Tts, "up"));
        let voice = BoxModel { kind: Some(ModelKind::Tts), ..bare };
        assert!(voice.is(ModelKind::Tts, "up") && !voice.is(ModelKind::Upscale, "up"));
    }
}

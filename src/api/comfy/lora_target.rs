//! The model a prompt's checkpoint and LoRA loaders ask for (`loras`): a base, told by name
//! or by the file it was converted from, with LoRAs at scales; found among the installed
//! fused models, or refused naming the `reelbox models import` that makes it.

use std::path::Path;

use super::compile::input_error;
use super::loras::Lora;
use super::validate::{Node, PromptError, ValidGraph};
use crate::models::convert::default_name;
use crate::models::convert::fused::{Checkpoint, Checkpoints};
use crate::models::named_by_file;

const CHECKPOINT: &str = "CheckpointLoaderSimple";
/// How far a loader's strength may be from a fused LoRA's scale: the import keeps an f32,
/// ComfyUI's widget steps by 0.01.
pub(super) const SCALE_EPS: f64 = 1e-3;

/// Whether two lists of (LoRA file, scale) hold the same LoRAs at scales within
/// [`SCALE_EPS`], in any order.
pub(super) fn same_set(a: &[(String, f64)], b: &[(String, f64)]) -> bool {
    let mut left: Vec<&(String, f64)> = b.iter().collect();
    a.len() == b.len()
        && a.iter().all(|(file, scale)| {
            let at = left.iter().position(|(f, s)| f == file && (s - scale).abs() <= SCALE_EPS);
            at.map(|i| left.swap_remove(i)).is_some()
        })
}

/// `style.safetensors×0.8 + ink.safetensors×1`, or `no LoRA`.
pub(super) fn said_pairs(pairs: &[(String, f64)]) -> String {
    if pairs.is_empty() {
        return "no LoRA".into();
    }
    pairs.iter().map(|(f, s)| format!("{f}×{}", *s as f32)).collect::<Vec<_>>().join(" + ")
}

/// The model a prompt asks for: a base, told by name or by the file it was converted from,
/// and the LoRAs fused into it (a fused checkpoint's own, then the loaders').
pub(super) struct Target {
    /// The checkpoint as the prompt names it (after the graph check: an installed model or
    /// a fused model's base).
    ckpt: String,
    /// The base's name: a fused checkpoint's base, else the checkpoint's name.
    base: String,
    /// The file the base was converted from, where known.
    source: Option<String>,
    /// `models import` flags the base was converted with (`--fp16`, `--prediction`).
    flags: Vec<String>,
    loras: Vec<(String, f64)>,
}

impl Target {
    /// Checkpoint `ckpt` with the LoRAs `wanted` on top.
    pub(super) fn of(models: &Checkpoints, ckpt: &str, wanted: &[&Lora]) -> Self {
        let installed = models.get(ckpt);
        let own = installed.map(|c| c.loras.iter().map(|l| (l.file_name().to_string(), f64::from(l.scale))));
        let mut loras: Vec<(String, f64)> = own.into_iter().flatten().collect();
        loras.extend(wanted.iter().map(|l| (l.file.clone(), l.strength)));
        let base = installed.filter(|c| c.is_fused()).and_then(|c| c.base.clone()).unwrap_or_else(|| ckpt.to_string());
        let own_source = installed.and_then(|c| c.source.clone());
        // A model made of this base says what it was converted from and with (the only
        // word of it when the base is on the box only fused).
        let sibling = models.fused().find(|f| made_of(f, &base, own_source.as_deref()));
        let flags = match installed {
            Some(c) if c.base.is_some() => c.flags.clone(),
            _ => sibling.map(|f| f.flags.clone()).unwrap_or_default(),
        };
        Self { ckpt: ckpt.to_string(), source: own_source.or_else(|| sibling?.source.clone()), base, flags, loras }
    }

    /// Whether fused model `f` was made of this base.
    fn has_base_of(&self, f: &Checkpoint) -> bool {
        made_of(f, &self.base, self.source.as_deref())
    }

    /// Whether fused model `f` is this base with exactly these LoRAs.
    pub(super) fn is(&self, f: &Checkpoint) -> bool {
        let fused: Vec<(String, f64)> = f
            .loras
            .iter()
            .filter(|l| l.scale != 0.0)
            .map(|l| (l.file_name().to_string(), f64::from(l.scale)))
            .collect();
        self.has_base_of(f) && same_set(&fused, &self.loras)
    }

    /// Whether the checkpoint is on the box only as fused models' base.
    pub(super) fn is_fused_base(&self, models: &Checkpoints) -> bool {
        models.fused().any(|f| f.base.as_deref() == Some(self.ckpt.as_str()))
    }
}

/// Whether fused model `f` was made of base `base`: named so (as an import names a model
/// after its file), or converted from the same file `source`.
fn made_of(f: &Checkpoint, base: &str, source: Option<&str>) -> bool {
    let named = f.base.as_deref().is_some_and(|b| named_by_file(b, &[base.to_string()]).is_some());
    named || (source.is_some() && f.source.as_deref() == source)
}

/// The fused models' bases that no plain installed model is, as checkpoints a workflow may
/// name with its LoRA loaders (`dreamshaper_8` when only `dreamy`, made of it, is installed).
pub fn bases_alone(models: &Checkpoints) -> Vec<String> {
    let plain: Vec<&Checkpoint> = models.0.iter().filter(|c| !c.is_fused()).collect();
    let mut bases: Vec<String> = models
        .fused()
        .filter(|f| !plain.iter().any(|c| made_of(f, &c.name, c.source.as_deref())))
        .filter_map(|f| f.base.clone())
        .collect();
    bases.sort();
    bases.dedup();
    bases
}

/// `NAME: base + file×scale + …` for each fused model of the target's base.
fn others_of(models: &Checkpoints, target: &Target) -> Vec<String> {
    models
        .fused()
        .filter(|f| target.has_base_of(f))
        .map(|f| {
            let pairs: Vec<(String, f64)> =
                f.loras.iter().map(|l| (l.file_name().to_string(), f64::from(l.scale))).collect();
            format!("{} is {} + {}", f.name, f.base.as_deref().unwrap_or("?"), said_pairs(&pairs))
        })
        .collect()
}

/// The refusal of LoRAs no installed model has with this base: at the first loader whose file
/// no fused model has (`lora_name`), else at the first whose strength differs from a model
/// of this base with these files (`strength_model`), else at `first`; it says the import
/// that makes the model.
pub(super) fn missing(
    g: &ValidGraph,
    models: &Checkpoints,
    target: &Target,
    wanted: &[&Lora],
    first: &Lora,
) -> PromptError {
    let known = |file: &str| models.fused().flat_map(|f| &f.loras).any(|l| l.file_name() == file);
    let unknown = wanted.iter().find(|l| !known(&l.file));
    let same_files = models.fused().find(|f| {
        let mut files: Vec<&str> = f.loras.iter().map(|l| l.file_name()).collect();
        let mut asked: Vec<&str> = target.loras.iter().map(|(f, _)| f.as_str()).collect();
        files.sort();
        asked.sort();
        target.has_base_of(f) && files == asked
    });
    let off_scale = same_files.and_then(|f| {
        wanted.iter().find(|l| {
            !f.loras.iter().any(|m| m.file_name() == l.file && (f64::from(m.scale) - l.strength).abs() <= SCALE_EPS)
        })
    });
    let (lora, input, kind) = match (unknown, off_scale) {
        (Some(l), _) => (*l, "lora_name", "value_not_in_list"),
        (None, Some(l)) => (*l, "strength_model", "custom_validation_failed"),
        (None, None) => (first, "lora_name", "custom_validation_failed"),
    };
    let others = others_of(models, target);
    let has = if others.is_empty() { String::new() } else { format!(" ({})", others.join("; ")) };
    let message = format!(
        "no model on this box is {} with {} fused in{has}; ComfyUI loads LoRAs as it samples, reelbox runs them \
         fused into a model at import: `{}` makes it",
        target.base,
        said_pairs(&target.loras),
        import_command(models, target)
    );
    let node = &g.nodes[&lora.node];
    let received = node.inputs.get(input).cloned().unwrap_or_default();
    input_error(&lora.node, &node.class_type, input, kind, &message, &received)
}

/// The refusal of a checkpoint on the box only with LoRAs fused in, named without them.
pub(super) fn base_alone(models: &Checkpoints, target: &Target, ckpt_id: &str, ckpt: &Node) -> PromptError {
    let message = format!(
        "{} is on this box only with LoRAs fused in ({}): load them with LoraLoader between this checkpoint and \
         the sampler, or import it alone (`{}`)",
        target.ckpt,
        others_of(models, target).join("; "),
        import_command(models, target)
    );
    let received = ckpt.inputs.get("ckpt_name").cloned().unwrap_or_default();
    input_error(ckpt_id, CHECKPOINT, "ckpt_name", "custom_validation_failed", &message, &received)
}

/// `reelbox models import BASE --name NAME [flags] --lora FILE:SCALE…`, each word quoted for
/// a POSIX shell where it needs it: the base's source where known, a LoRA's path as an
/// installed model's import gave it where one has the file, and a name no model has.
fn import_command(models: &Checkpoints, target: &Target) -> String {
    let base = target.source.clone().unwrap_or_else(|| format!("{}.safetensors", target.base));
    let stems: Vec<&str> = target.loras.iter().map(|(f, _)| crate::models::strip_model_extension(f)).collect();
    let wished = default_name(Path::new(&format!("{}-{}.name", target.base, stems.join("-"))));
    let name = (1..)
        .map(|n| if n == 1 { wished.clone() } else { format!("{wished}-{n}") })
        .find(|n| models.get(n).is_none())
        .unwrap_or(wished);
    let mut words = vec!["reelbox".to_string(), "models".into(), "import".into(), base, "--name".into(), name];
    words.extend(target.flags.iter().cloned());
    for (file, scale) in &target.loras {
        let path = models.fused().flat_map(|f| &f.loras).find(|l| l.file_name() == file).map(|l| l.file.clone());
        words.extend(["--lora".to_string(), format!("{}:{}", path.unwrap_or_else(|| file.clone()), *scale as f32)]);
    }
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

//! ComfyUI's LoRA loaders (LoraLoader, LoraLoaderModelOnly) on reelbox's fused models.
//! ComfyUI patches LoRAs onto a checkpoint as it samples; reelbox fuses them into a model
//! at import (`reelbox models import BASE --lora FILE:SCALE`), whose `conversion.json`
//! records its base and each LoRA with its scale (`models::convert::fused`). A prompt whose
//! sampler takes its MODEL (and its prompts their CLIP) from a checkpoint through LoRA
//! loaders runs on the installed model made of that base with exactly those LoRAs at those
//! strengths, in any order (fusing adds); with none, it is refused at a loader naming the
//! import that makes one.

use serde_json::json;

use super::chain::{follow, unsupported};
use super::compile::{Compiled, input_error};
use super::literals::{float_value, text};
use super::lora_target::{SCALE_EPS, Target, base_alone, missing, said_pairs, same_set};
use super::nodes::{InputKind, InputSpec, NodeSpec, SpecContext, float, link};
use super::validate::{Node, PromptError, ValidGraph};
use crate::models::convert::fused::{Checkpoints, file_name};

/// ComfyUI's LoRA loader of a model and its text encoder.
pub const LORA_LOADER: &str = "LoraLoader";
/// ComfyUI's LoRA loader of a model alone.
pub const MODEL_ONLY: &str = "LoraLoaderModelOnly";
/// The LoRA loaders reelbox runs.
pub const CLASS_TYPES: [&str; 2] = [LORA_LOADER, MODEL_ONLY];
const CHECKPOINT: &str = "CheckpointLoaderSimple";

/// The spec of a LoRA loader, with ComfyUI's inputs, defaults and ranges; `lora_name`'s
/// choices are the LoRA files the installed fused models were made with.
pub fn spec(class_type: &str, ctx: &SpecContext) -> Option<NodeSpec> {
    let lora_name = InputSpec { name: "lora_name", kind: InputKind::Combo(ctx.loras.clone()) };
    let strength = |name| float(name, 1.0, -100.0, 100.0);
    let (display_name, inputs, outputs): (_, _, &'static [&'static str]) = match class_type {
        LORA_LOADER => (
            "Load LoRA",
            vec![
                link("model", "MODEL"),
                link("clip", "CLIP"),
                lora_name,
                strength("strength_model"),
                strength("strength_clip"),
            ],
            &["MODEL", "CLIP"],
        ),
        MODEL_ONLY => {
            ("LoraLoaderModelOnly", vec![link("model", "MODEL"), lora_name, strength("strength_model")], &["MODEL"])
        }
        _ => return None,
    };
    Some(NodeSpec {
        class_type: if class_type == LORA_LOADER { LORA_LOADER } else { MODEL_ONLY },
        display_name,
        category: "loaders",
        description: "Runs the checkpoint as the installed model with this LoRA fused in at this strength \
                      (`reelbox models import BASE --lora FILE:SCALE` makes it).",
        inputs,
        outputs,
        output_node: false,
        python_module: "nodes",
    })
}

/// Whether the graph check leaves `input`'s value to the compile: a LoRA no installed model
/// was made with is refused there, where the chain's checkpoint and other LoRAs are known,
/// with the import that makes the model.
pub(super) fn named_when_compiled(input: &str) -> bool {
    input == "lora_name"
}

/// A LoRA a loader on a MODEL or CLIP path loads.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Lora {
    /// The loader's id.
    pub node: String,
    /// Its `lora_name` without folders.
    pub file: String,
    /// Its `strength_model` on a MODEL path, `strength_clip` on a CLIP one.
    pub strength: f64,
}

/// The way from a node's MODEL, CLIP or VAE input back to its checkpoint.
pub(super) struct Path<'g> {
    /// The checkpoint's id and node.
    pub id: String,
    pub node: &'g Node,
    /// The LoRAs passed, the checkpoint's first.
    pub loras: Vec<Lora>,
    /// The CLIPSetLastLayers a CLIP passes, from the prompt encoder's on: ids and clip skips.
    pub last_layers: Vec<(String, i64)>,
}

impl Path<'_> {
    /// The clip skip a prompt encoded with the CLIP at its start is read at: the
    /// CLIPSetLastLayer nearest it holds ([`super::clip_layer`]); none without.
    pub fn clip_skip(&self) -> Option<i64> {
        self.last_layers.first().map(|(_, skip)| *skip)
    }
}

/// Follows `id.input` (at `slot`: 0 MODEL, 1 CLIP, 2 VAE) back through LoRA loaders (and, on a
/// CLIP, CLIPSetLastLayers) to its checkpoint. A link elsewhere is refused at the node whose
/// input it is.
pub(super) fn path_of<'g>(g: &'g ValidGraph, id: &str, input: &str, slot: usize) -> Result<Path<'g>, PromptError> {
    let takes: &[&str] = match slot {
        0 => &[CHECKPOINT, LORA_LOADER, MODEL_ONLY],
        1 => &[CHECKPOINT, LORA_LOADER],
        _ => &[CHECKPOINT],
    };
    let (strength, next_input) = if slot == 0 { ("strength_model", "model") } else { ("strength_clip", "clip") };
    let mut loras: Vec<Lora> = Vec::new();
    let mut last_layers: Vec<(String, i64)> = Vec::new();
    let (mut at, mut input) = (id.to_string(), input);
    loop {
        let setter = if slot == 1 { super::clip_layer::setter(g, &at, input) } else { None };
        let (next, node) = match &setter {
            Some((next, _)) => (next.clone(), &g.nodes[next]),
            None => follow(g, &at, input, takes, slot)?,
        };
        if node.class_type == CHECKPOINT {
            loras.reverse();
            return Ok(Path { id: next, node, loras, last_layers });
        }
        if loras.iter().any(|l| l.node == next) || last_layers.iter().any(|(n, _)| *n == next) {
            return Err(unsupported(&at, &g.nodes[&at], format!("{input} loops back to node {next}")));
        }
        if let Some((_, skip)) = setter {
            last_layers.push((next.clone(), skip));
            (at, input) = (next, "clip");
            continue;
        }
        let lora_name = text(node, "lora_name");
        loras.push(Lora {
            file: file_name(&lora_name).to_string(),
            strength: node.inputs.get(strength).and_then(float_value).unwrap_or(1.0),
            node: next.clone(),
        });
        (at, input) = (next, next_input);
    }
}

/// [`path_of`]'s checkpoint id and node, and the LoRAs passed, the checkpoint's first.
pub(super) fn checkpoint_of<'g>(
    g: &'g ValidGraph,
    id: &str,
    input: &str,
    slot: usize,
) -> Result<(String, &'g Node, Vec<Lora>), PromptError> {
    let Path { id, node, loras, .. } = path_of(g, id, input, slot)?;
    Ok((id, node, loras))
}

/// The compiled prompt run on the model its LoRA loaders ask for: the installed model made
/// of the sampler's checkpoint's base with exactly the LoRAs its MODEL passes, at their
/// strengths; each prompt's CLIP passing only those. A second pass on the first's checkpoint
/// passes the same LoRAs; one on its own checkpoint (`refine.model`) runs on the model its own
/// loaders ask for alike. Unchanged without loaders.
pub fn onto_fused(g: &ValidGraph, mut compiled: Compiled, models: &Checkpoints) -> Result<Compiled, PromptError> {
    let Some(sampling) = compiled.roles.sampling.clone() else { return Ok(compiled) };
    let (ckpt_id, ckpt, model) = checkpoint_of(g, &sampling.sampler, "model", 0)?;
    let mut clip_users = vec![sampling.positive.clone(), sampling.negative.clone()];
    let mut loaders: Vec<String> = model.iter().map(|l| l.node.clone()).collect();
    if let Some(refine) = &compiled.roles.refine {
        let (own_id, own, second) = checkpoint_of(g, &refine.sampler, "model", 0)?;
        loaders.extend(second.iter().map(|l| l.node.clone()));
        let own_users = [refine.positive.clone(), refine.negative.clone()];
        if refine.checkpoint.is_some() {
            loaders.extend(clip_loaders(g, &own_users, &second)?);
            if let Some(name) = fused_model(g, models, (&own_id, own), &second)? {
                compiled.params["refine"]["model"] = json!(name);
            }
        } else if !same_loras(&model, &second) {
            let why = format!(
                "both passes run one model: this KSampler's model passes {}, the first's {}",
                said(&second),
                said(&model)
            );
            return Err(unsupported(&refine.sampler, &g.nodes[&refine.sampler], why));
        } else {
            clip_users.extend(own_users);
        }
    }
    loaders.extend(clip_loaders(g, &clip_users, &model)?);
    if let Some(name) = fused_model(g, models, (&ckpt_id, ckpt), &model)? {
        compiled.params["model"] = json!(name);
    }
    loaders.sort_by_key(|id| loaders_order(&model, id));
    loaders.dedup();
    if let Some(s) = compiled.roles.sampling.as_mut() {
        s.loras = loaders;
    }
    Ok(compiled)
}

/// The LoRA loaders the CLIP of each of `users` (prompt encoders) passes, each checked
/// against the LoRAs the `model` they condition passes ([`check_clip_lora`]), and the
/// CLIPSetLastLayers it passes (which run as the job's `clip_skip`).
fn clip_loaders(g: &ValidGraph, users: &[String], model: &[Lora]) -> Result<Vec<String>, PromptError> {
    let mut loaders = Vec::new();
    for user in users {
        let path = path_of(g, user, "clip", 1)?;
        for l in path.loras.iter().filter(|l| l.strength != 0.0) {
            check_clip_lora(g, user, l, model)?;
            loaders.push(l.node.clone());
        }
        loaders.extend(path.last_layers.into_iter().map(|(id, _)| id));
    }
    Ok(loaders)
}

/// The installed fused model checkpoint `ckpt_id` with the LoRAs of `model` runs as: `None`
/// where the checkpoint's own model does (no LoRA); one no import made, or a base the box has
/// only fused, refused at the loader that asks for it.
fn fused_model(
    g: &ValidGraph,
    models: &Checkpoints,
    (ckpt_id, ckpt): (&str, &Node),
    model: &[Lora],
) -> Result<Option<String>, PromptError> {
    // ComfyUI's loader at strength 0 returns the model it was given.
    let wanted: Vec<&Lora> = model.iter().filter(|l| l.strength != 0.0).collect();
    let ckpt_name = text(ckpt, "ckpt_name");
    let target = Target::of(models, &ckpt_name, &wanted);
    if let Some(found) = models.fused().find(|f| target.is(f)) {
        return Ok(Some(found.name.clone()));
    }
    if let Some(lora) = wanted.first() {
        return Err(missing(g, models, &target, &wanted, lora));
    }
    if models.get(&ckpt_name).is_none() && target.is_fused_base(models) {
        return Err(base_alone(models, &target, ckpt_id, ckpt));
    }
    Ok(None)
}

/// Where a loader runs: those of the MODEL path from the checkpoint on, then the others.
fn loaders_order(model: &[Lora], id: &str) -> (usize, String) {
    (model.iter().position(|l| l.node == id).unwrap_or(model.len()), id.to_string())
}

/// Refuses a LoRA a prompt's CLIP passes unless the sampler's model has it at that strength:
/// the fused model has each LoRA in its UNet and text encoder at one scale.
fn check_clip_lora(g: &ValidGraph, user: &str, l: &Lora, model: &[Lora]) -> Result<(), PromptError> {
    if let Some(m) = model.iter().find(|m| m.node == l.node)
        && (m.strength - l.strength).abs() > SCALE_EPS
    {
        let node = &g.nodes[&l.node];
        let message = format!(
            "strength_clip {} differs from strength_model {}: reelbox runs a LoRA fused into the model's UNet \
             and text encoder at one scale; set both to the same",
            l.strength, m.strength
        );
        let received = node.inputs.get("strength_clip").cloned().unwrap_or_default();
        return Err(input_error(
            &l.node,
            &node.class_type,
            "strength_clip",
            "custom_validation_failed",
            &message,
            &received,
        ));
    }
    if !model.iter().any(|m| m.file == l.file && (m.strength - l.strength).abs() <= SCALE_EPS) {
        let why = format!(
            "clip passes LoRA {}×{} (node {}) that the sampler's model does not; reelbox runs a LoRA fused into \
             the model's UNet and text encoder alike",
            l.file, l.strength, l.node
        );
        return Err(unsupported(user, &g.nodes[user], why));
    }
    Ok(())
}

/// Whether two paths pass the same LoRAs at the same strengths, in any order.
fn same_loras(a: &[Lora], b: &[Lora]) -> bool {
    let pairs = |l: &[Lora]| -> Vec<(String, f64)> {
        l.iter().filter(|l| l.strength != 0.0).map(|l| (l.file.clone(), l.strength)).collect()
    };
    same_set(&pairs(a), &pairs(b))
}

/// `style.safetensors×0.8 + ink.safetensors×1`, or `no LoRA`.
fn said(loras: &[Lora]) -> String {
    let pairs: Vec<(String, f64)> = loras.iter().map(|l| (l.file.clone(), l.strength)).collect();
    said_pairs(&pairs)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::compile::compile;
    use super::super::files::{Upload, UploadNotFound};
    use super::super::lora_target::bases_alone;
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use super::*;
    use crate::models::convert::fused::{Checkpoint, FusedLora};

    fn fused(name: &str, loras: &[(&str, f32)]) -> Checkpoint {
        Checkpoint {
            name: name.into(),
            source: Some("/m/tiny-sd.safetensors".into()),
            flags: vec!["--fp16".into()],
            base: Some("tiny-sd".into()),
            loras: loras.iter().map(|(f, s)| FusedLora { file: format!("/l/{f}"), scale: *s, hash: None }).collect(),
            ..Checkpoint::default()
        }
    }

    /// `tiny-sd` itself, `dreamy` (it + style×0.8) and `duo` (it + style×0.8 + ink×1).
    fn box_models() -> Checkpoints {
        let plain = Checkpoint { name: "tiny-sd".into(), ..Checkpoint::default() };
        let dreamy = fused("dreamy", &[("style.safetensors", 0.8)]);
        Checkpoints(vec![dreamy, fused("duo", &[("style.safetensors", 0.8), ("ink.safetensors", 1.0)]), plain])
    }

    fn loader(model: Value, clip: Value, lora: &str, strength: f64) -> Value {
        json!({"class_type": "LoraLoader", "inputs": {"model": model, "clip": clip, "lora_name": lora,
            "strength_model": strength, "strength_clip": strength}})
    }

    /// The default workflow with `loras` chained from its checkpoint (ids 10, 11, …).
    fn with_loras(loras: &[(&str, f64)]) -> Value {
        let mut g = default_workflow();
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        let mut from = "4".to_string();
        for (i, (lora, strength)) in loras.iter().enumerate() {
            let id = (10 + i).to_string();
            g[&id] = loader(json!([from, 0]), json!([from, 1]), lora, *strength);
            from = id;
        }
        g["3"]["inputs"]["model"] = json!([from, 0]);
        g["6"]["inputs"]["clip"] = json!([from, 1]);
        g["7"]["inputs"]["clip"] = json!([from, 1]);
        g
    }

    fn run(g: &Value) -> Result<Compiled, PromptError> {
        let no_uploads = |_: &str| Err::<Upload, _>(UploadNotFound::NoSuchImage);
        let checked = validate(g, &ctx()).unwrap_or_else(|e| panic!("{:?}", e.node_errors));
        onto_fused(&checked, compile(&checked, &no_uploads)?, &box_models())
    }

    fn error_at(e: &PromptError, node: &str) -> (String, String, String) {
        let err = &e.node_errors[node]["errors"][0];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        (s(&err["type"]), s(&err["extra_info"]["input_name"]), s(&err["message"]))
    }

    #[test]
    fn the_loaders_have_comfyuis_inputs_and_the_fused_loras_as_choices() {
        let info = super::super::info::node_info(&spec(LORA_LOADER, &ctx()).expect("LoraLoader"));
        let order = ["model", "clip", "lora_name", "strength_model", "strength_clip"];
        assert_eq!(info["input_order"]["required"], json!(order));
        assert_eq!(info["input"]["required"]["lora_name"], json!([["style.safetensors"]]));
        let strength = &info["input"]["required"]["strength_clip"][1];
        assert_eq!(
            (&strength["default"], &strength["min"], &strength["max"]),
            (&json!(1.0), &json!(-100.0), &json!(100.0))
        );
        assert_eq!((&info["output"], &info["display_name"]), (&json!(["MODEL", "CLIP"]), &json!("Load LoRA")));
        let only = super::super::info::node_info(&spec(MODEL_ONLY, &ctx()).expect("LoraLoaderModelOnly"));
        assert_eq!(only["input_order"]["required"], json!(["model", "lora_name", "strength_model"]));
        assert_eq!(only["output"], json!(["MODEL"]));
    }

    #[test]
    fn a_checkpoint_through_loras_runs_the_model_fused_of_them_in_any_order() {
        let c = run(&with_loras(&[("loras/style.safetensors", 0.8)])).expect("compiles");
        assert_eq!(c.params["model"], "dreamy");
        assert_eq!(c.roles.execution_order()[..3], ["4", "10", "6"]);
        let c = run(&with_loras(&[("ink.safetensors", 1.0), ("style.safetensors", 0.8004)])).expect("compiles");
        assert_eq!(c.params["model"], "duo");
        assert_eq!(c.roles.sampling.map(|s| s.loras), Some(vec!["10".to_string(), "11".to_string()]));
        // At strength 0 ComfyUI's loader hands the checkpoint on as it is.
        let c = run(&with_loras(&[("style.safetensors", 0.0)])).expect("compiles");
        assert_eq!(c.params["model"], "tiny-sd");
    }

    #[test]
    fn a_second_pass_on_its_own_checkpoint_runs_the_model_its_own_loras_ask_for() {
        let mut g = default_workflow();
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd-2.safetensors");
        g["10"] = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0],
            "upscale_method": "area", "scale_by": 1.5}});
        g["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd.safetensors"}});
        g["21"] = loader(json!(["20", 0]), json!(["20", 1]), "style.safetensors", 0.8);
        for (id, text) in [("22", "sharper"), ("23", "blur")] {
            g[id] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["21", 1]}});
        }
        g["12"] = g["3"].clone();
        for (input, from) in [("latent_image", "10"), ("model", "21"), ("positive", "22"), ("negative", "23")] {
            g["12"]["inputs"][input] = json!([from, 0]);
        }
        g["12"]["inputs"]["denoise"] = json!(0.5);
        g["13"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["20", 2]}});
        g["14"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "hires", "images": ["13", 0]}});
        let mut context = ctx();
        context.checkpoints.push("tiny-sd-2".into());
        let no_uploads = |_: &str| Err::<Upload, _>(UploadNotFound::NoSuchImage);
        let checked = validate(&g, &context).unwrap_or_else(|e| panic!("{:?}", e.node_errors));
        let c = onto_fused(&checked, compile(&checked, &no_uploads).expect("compiles"), &box_models()).expect("fused");
        assert_eq!((&c.params["model"], &c.params["refine"]["model"]), (&json!("tiny-sd-2"), &json!("dreamy")));
        assert_eq!(c.roles.sampling.map(|s| s.loras), Some(vec!["21".to_string()]));
        // Its LoRA at another strength in its prompts' CLIP: refused at the loader, as a first pass's.
        g["21"]["inputs"]["strength_clip"] = json!(0.5);
        let checked = validate(&g, &context).unwrap_or_else(|e| panic!("{:?}", e.node_errors));
        let e = onto_fused(&checked, compile(&checked, &no_uploads).expect("compiles"), &box_models())
            .expect_err("refused");
        assert_eq!(error_at(&e, "21").1, "strength_clip", "{:?}", e.node_errors);
    }

    #[test]
    fn loras_no_model_has_are_refused_at_the_loader_with_the_import_that_makes_it() {
        let e = run(&with_loras(&[("style.safetensors", 0.5)])).expect_err("no style×0.5");
        let (kind, input, message) = error_at(&e, "10");
        assert_eq!((kind.as_str(), input.as_str()), ("custom_validation_failed", "strength_model"));
        assert!(message.contains("dreamy is tiny-sd + style.safetensors×0.8"), "{message}");
        assert!(
            message.contains(
                "`reelbox models import /m/tiny-sd.safetensors --name tiny-sd-style --fp16 --lora /l/style.safetensors:0.5`"
            ),
            "{message}"
        );
        let e = run(&with_loras(&[("style.safetensors", 0.8), ("grain.safetensors", 1.0)])).expect_err("no grain");
        let (kind, input, message) = error_at(&e, "11");
        assert_eq!((kind.as_str(), input.as_str()), ("value_not_in_list", "lora_name"));
        assert!(message.contains("--lora /l/style.safetensors:0.8 --lora grain.safetensors:1`"), "{message}");
    }

    #[test]
    fn unequal_strengths_and_clip_without_the_models_loras_are_refused() {
        let mut g = with_loras(&[("style.safetensors", 0.8)]);
        g["10"]["inputs"]["strength_clip"] = json!(0.5);
        let (kind, input, message) = error_at(&run(&g).expect_err("0.8 ≠ 0.5"), "10");
        assert_eq!((kind.as_str(), input.as_str()), ("custom_validation_failed", "strength_clip"));
        assert!(message.contains("one scale"), "{message}");
        let mut g = with_loras(&[("style.safetensors", 0.8)]);
        g["3"]["inputs"]["model"] = json!(["4", 0]);
        assert_eq!(error_at(&run(&g).expect_err("clip only"), "6").0, "unsupported_graph");
        // A model-only loader: the model has the LoRA, the prompts' CLIP comes straight.
        let mut g = with_loras(&[]);
        g["10"] = json!({"class_type": MODEL_ONLY, "inputs": {"model": ["4", 0], "lora_name": "style.safetensors",
            "strength_model": 0.8}});
        g["3"]["inputs"]["model"] = json!(["10", 0]);
        assert_eq!(run(&g).expect("compiles").params["model"], "dreamy");
    }

    #[test]
    fn a_base_on_the_box_only_fused_is_a_checkpoint_that_needs_its_loras() {
        let mut models = box_models();
        models.0.retain(|c| c.is_fused());
        assert_eq!(bases_alone(&models), ["tiny-sd"]);
        assert!(bases_alone(&box_models()).is_empty(), "tiny-sd is installed itself");
        let checked = validate(&with_loras(&[]), &ctx()).expect("valid");
        let no_uploads = |_: &str| Err::<Upload, _>(UploadNotFound::NoSuchImage);
        let e = onto_fused(&checked, compile(&checked, &no_uploads).expect("compiles"), &models).expect_err("alone");
        let (_, input, message) = error_at(&e, "4");
        assert_eq!(input, "ckpt_name");
        assert!(message.contains("only with LoRAs fused in (dreamy is tiny-sd + style.safetensors×0.8;"), "{message}");
    }
}

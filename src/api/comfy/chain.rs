//! The pictures each output node of a checked graph shows, traced back to where they are
//! made, a VAEDecode (the sampler's) or a LoadImage (an upload), through the picture nodes
//! between them (an ImageUpscaleWithModel, a scale node); and the one chain of pictures a
//! prompt runs, on which every output's pictures must lie, but for the first pass's pictures
//! of a prompt with a second (`hires`), shown as decoded. A link reelbox cannot follow is
//! refused at the node whose input it is. An output showing a mask as a picture (a
//! MaskToImage's) is left out: the prompt runs without it, as ComfyUI's runs with it.

use serde_json::{Map, json};

use super::nodes::{SCALES, UPSCALE};
use super::validate::{Node, PromptError, ValidGraph, error_obj};

/// What an output's `images` may come from.
const OUTPUT_TAKES: [&str; 5] = ["VAEDecode", UPSCALE, SCALES[0], SCALES[1], SCALES[2]];
/// What a picture node's `image` may come from.
const STEP_TAKES: [&str; 6] = ["VAEDecode", "LoadImage", UPSCALE, SCALES[0], SCALES[1], SCALES[2]];

/// A prompt reelbox cannot run, refused at node `id` with why.
pub(super) fn unsupported(id: &str, node: &Node, message: String) -> PromptError {
    let mut node_errors = Map::new();
    node_errors.insert(
        id.to_string(),
        json!({
            "errors": [error_obj("unsupported_graph", &message, &message, json!({}))],
            "dependent_outputs": [],
            "class_type": node.class_type,
        }),
    );
    PromptError {
        error: error_obj("prompt_outputs_failed_validation", "Prompt outputs failed validation", "", json!({})),
        node_errors,
    }
}

/// Follows `id.input` to a node of `class` at `slot`, or refuses the graph at `id`.
pub(super) fn follow<'g>(
    g: &'g ValidGraph,
    id: &str,
    input: &str,
    class: &[&str],
    slot: usize,
) -> Result<(String, &'g Node), PromptError> {
    let here = &g.nodes[id];
    match g.linked(id, input) {
        Some((link, node)) if class.contains(&node.class_type.as_str()) && link.slot == slot => Ok((link.node, node)),
        Some((link, node)) => Err(unsupported(
            id,
            here,
            format!(
                "{input} comes from {} (node {}); reelbox takes it only from {}",
                node.class_type,
                link.node,
                class.join(" or ")
            ),
        )),
        None => Err(unsupported(id, here, format!("{input} must be linked to {}", class.join(" or ")))),
    }
}

/// Whether a class type is one of the scale nodes.
pub(super) fn is_scale(class_type: &str) -> bool {
    SCALES.contains(&class_type)
}

/// One output's pictures: where they are made and the picture nodes they pass, in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chain {
    /// The VAEDecode or LoadImage that makes them.
    pub source: String,
    /// The source as pictures go: a VAEDecode by its sampler (two decodes of one sampler
    /// show the same pictures), a LoadImage by itself.
    key: String,
    /// The sampler (KSampler or KSamplerAdvanced) a VAEDecode source decodes.
    sampler: Option<String>,
    /// The ImageUpscaleWithModel and scale nodes, in the order the pictures pass them.
    pub steps: Vec<String>,
}

impl Chain {
    /// The node whose pictures the chain ends with.
    fn last(&self) -> &str {
        self.steps.last().unwrap_or(&self.source)
    }
}

/// What an output shows of the chain the prompt runs.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shown {
    /// The output node.
    pub out: String,
    /// The picture node its pictures come from last (`None`: the source itself).
    pub last: Option<String>,
    /// It shows the first pass's pictures of a prompt with a second pass.
    pub first_pass: bool,
    /// The VAEDecode or LoadImage that makes its pictures.
    pub source: String,
}

/// The chain of output `out_id`'s pictures, or the node error of the node that breaks it:
/// one upscale and one scale node per prompt.
fn trace(g: &ValidGraph, out_id: &str) -> Result<Chain, PromptError> {
    let mut steps: Vec<String> = Vec::new();
    let (mut at, mut input, mut takes): (String, &str, &[&str]) = (out_id.to_string(), "images", &OUTPUT_TAKES);
    let (source, key, sampler) = loop {
        let (id, node) = follow(g, &at, input, takes, 0)?;
        match node.class_type.as_str() {
            "VAEDecode" => {
                let (sampler, _) = follow(g, &id, "samples", &super::ksampler::CLASS_TYPES, 0)?;
                break (id, format!("sampler {sampler}"), Some(sampler));
            }
            "LoadImage" => break (id.clone(), id, None),
            class => {
                let same = |s: &String| is_scale(class) == is_scale(&g.nodes[s].class_type);
                if let Some(other) = steps.iter().find(|s| same(s)) {
                    let what = if is_scale(class) { "scale node" } else { UPSCALE };
                    let why =
                        format!("reelbox runs one {what} per prompt; these pictures pass node {other}, then node {id}");
                    return Err(unsupported(&at, &g.nodes[&at], why));
                }
                steps.push(id.clone());
                (at, input, takes) = (id, "image", &STEP_TAKES);
            }
        }
    };
    steps.reverse();
    Ok(Chain { source, key, sampler, steps })
}

/// Whether output `out` shows a mask as a picture, a MaskToImage's (through ImageInverts):
/// reelbox keeps the mask as an upload, not as an output's picture.
fn shows_a_mask(g: &ValidGraph, out: &str) -> bool {
    let (mut at, mut input) = (out.to_string(), "images");
    // At most every node once: a loop of ImageInverts ends too.
    for _ in 0..=g.nodes.len() {
        match g.linked(&at, input) {
            Some((_, n)) if n.class_type == "MaskToImage" => return true,
            Some((l, n)) if super::masks::IMAGE_NODES.contains(&n.class_type.as_str()) => {
                (at, input) = (l.node, "image")
            }
            _ => return false,
        }
    }
    false
}

/// The chain the prompt runs (the longest output's of its last sampling pass, the first in
/// the outputs' order of the longest) and what each output shows of it ([`Shown`]): every
/// other output's chain is the start of it, or the first pass's pictures as decoded.
pub(super) fn main_chain(g: &ValidGraph) -> Result<(Chain, Vec<Shown>), PromptError> {
    let chains: Vec<(String, Chain)> = g
        .outputs
        .iter()
        .filter(|out| !shows_a_mask(g, out))
        .map(|out| trace(g, out).map(|c| (out.clone(), c)))
        .collect::<Result<_, _>>()?;
    // A second pass's sampler, and its first pass's, when an output shows the second's pictures.
    let mut passes = None;
    for sampler in chains.iter().filter_map(|(_, c)| c.sampler.as_deref()) {
        if let Some(first) = super::hires::first_pass_of(g, sampler)? {
            passes = Some((format!("sampler {sampler}"), format!("sampler {}", first.sampler)));
            break;
        }
    }
    let last_pass = |c: &Chain| passes.as_ref().is_none_or(|(second, _)| c.key == *second);
    let longest = chains.iter().filter(|(_, c)| last_pass(c)).map(|(_, c)| c.steps.len()).max();
    let Some(main) = chains.iter().map(|(_, c)| c).find(|c| last_pass(c) && Some(c.steps.len()) == longest).cloned()
    else {
        return Err(PromptError::top("prompt_no_outputs", "Prompt has no outputs", ""));
    };
    let mut shown = Vec::new();
    for (out, chain) in chains {
        let first_pass = passes.as_ref().is_some_and(|(_, first)| chain.key == *first);
        if first_pass && !chain.steps.is_empty() {
            let why = format!(
                "reelbox shows a first pass's pictures as its VAEDecode makes them; these pass node {} after it, \
                 link this output to the VAEDecode (node {})",
                chain.steps[0], chain.source
            );
            return Err(unsupported(&out, &g.nodes[&out], why));
        }
        if !first_pass && (chain.key != main.key || !main.steps.starts_with(&chain.steps)) {
            let why = if chain.key != main.key && chain.key.starts_with("sampler") && main.key.starts_with("sampler") {
                format!(
                    "reelbox runs one KSampler per prompt (two for a hires fix, the second taking the first's \
                     pictures); this output's pictures come from {}, another's from {}",
                    chain.key, main.key
                )
            } else {
                format!(
                    "reelbox runs one chain of pictures per prompt; this output shows node {}'s, another node {}'s",
                    chain.last(),
                    main.last()
                )
            };
            return Err(unsupported(&out, &g.nodes[&out], why));
        }
        shown.push(Shown { out, last: chain.steps.last().cloned(), first_pass, source: chain.source });
    }
    Ok((main, shown))
}

/// Refuses the graph at `id` unless its `input` comes (at `slot`, through LoRA loaders) from
/// the checkpoint `ckpt_id` or one loading the same `ckpt_name`: reelbox runs each sampling
/// pass on one model, its text encoder, UNet and VAE alike (`loras::onto_fused` holds every
/// path to the same LoRAs).
pub(super) fn same_checkpoint(
    g: &ValidGraph,
    (ckpt_id, ckpt_name): (&str, &str),
    id: &str,
    input: &str,
    slot: usize,
) -> Result<(), PromptError> {
    let (other_id, other, _) = super::loras::checkpoint_of(g, id, input, slot)?;
    let name = |n: &Node| match n.inputs.get("ckpt_name") {
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    if other_id != ckpt_id && name(other) != ckpt_name {
        return Err(unsupported(
            id,
            &g.nodes[id],
            format!(
                "{input} must come from the checkpoint its pass's KSampler samples with (node {ckpt_id}, \
                 {ckpt_name}): reelbox runs each sampling pass on one checkpoint's text encoder, UNet and VAE"
            ),
        ));
    }
    Ok(())
}

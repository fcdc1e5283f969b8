//! The pictures each output node of a checked graph shows, traced back to where they are
//! made, a VAEDecode (the sampler's) or a LoadImage (an upload), through the picture nodes
//! between them (an ImageUpscaleWithModel, a scale node); and the one chain of pictures a
//! prompt runs, on which every output's pictures must lie. A link reelbox cannot follow is
//! refused at the node whose input it is.

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
    /// The ImageUpscaleWithModel and scale nodes, in the order the pictures pass them.
    pub steps: Vec<String>,
}

impl Chain {
    /// The node whose pictures the chain ends with.
    fn last(&self) -> &str {
        self.steps.last().unwrap_or(&self.source)
    }
}

/// Each output (by id) with the picture node its pictures come from last (`None`: the
/// source itself), and the chain the prompt runs: the longest output's (the first in the
/// outputs' order of the longest), every other output's being the start of it.
pub(super) type Shown = Vec<(String, Option<String>)>;

/// The chain of output `out_id`'s pictures, or the node error of the node that breaks it:
/// one upscale and one scale node per prompt.
fn trace(g: &ValidGraph, out_id: &str) -> Result<Chain, PromptError> {
    let mut steps: Vec<String> = Vec::new();
    let (mut at, mut input, mut takes): (String, &str, &[&str]) = (out_id.to_string(), "images", &OUTPUT_TAKES);
    let (source, key) = loop {
        let (id, node) = follow(g, &at, input, takes, 0)?;
        match node.class_type.as_str() {
            "VAEDecode" => {
                let (sampler, _) = follow(g, &id, "samples", &["KSampler"], 0)?;
                break (id, format!("sampler {sampler}"));
            }
            "LoadImage" => break (id.clone(), id),
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
    Ok(Chain { source, key, steps })
}

/// The chain the prompt runs and what each output shows of it ([`Shown`]).
pub(super) fn main_chain(g: &ValidGraph) -> Result<(Chain, Shown), PromptError> {
    let chains: Vec<(String, Chain)> =
        g.outputs.iter().map(|out| trace(g, out).map(|c| (out.clone(), c))).collect::<Result<_, _>>()?;
    let longest = chains.iter().map(|(_, c)| c.steps.len()).max();
    let Some(main) = chains.iter().map(|(_, c)| c).find(|c| Some(c.steps.len()) == longest).cloned() else {
        return Err(PromptError::top("prompt_no_outputs", "Prompt has no outputs", ""));
    };
    let mut shown = Vec::new();
    for (out, chain) in chains {
        if chain.key != main.key || !main.steps.starts_with(&chain.steps) {
            let why = if chain.key != main.key && chain.key.starts_with("sampler") && main.key.starts_with("sampler") {
                format!(
                    "reelbox runs one KSampler per prompt; this output's pictures come from {}, another's from {}",
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
        shown.push((out, chain.steps.last().cloned()));
    }
    Ok((main, shown))
}

//! ComfyUI's base → refiner split: a KSamplerAdvanced that stops at its `end_at_step` with
//! `return_with_leftover_noise: enable` and hands its LATENT straight to a KSamplerAdvanced
//! that goes on from it (`add_noise: disable`, `start_at_step` the same step), often on its
//! own checkpoint with its own prompts. Such a pair is the `image` job's split
//! (`refine.switch_at_step`, `hires::second_pass`); either half with anything else about it (a
//! VAEDecode of the noisy latent, a scale between them, a third taker) is refused at its
//! input as before (`ksampler`).

use super::ksampler::{ADVANCED, LAST_STEP};
use super::literals::{int_value, text};
use super::validate::{Node, ValidGraph, as_link};

/// Node `node`'s whole-number input, ComfyUI's default when left out.
fn int(node: &Node, input: &str, default: i128) -> i128 {
    node.inputs.get(input).and_then(int_value).unwrap_or(default)
}

/// Whether KSamplerAdvanced `node` stops early with its leftover noise: the step it stops at.
fn stops_with_leftover(node: &Node) -> Option<i128> {
    let end = int(node, "end_at_step", LAST_STEP);
    let leftover = node.class_type == ADVANCED && text(node, "return_with_leftover_noise") == "enable";
    (leftover && end < int(node, "steps", 20)).then_some(end)
}

/// The sampler that goes on from sampler `id`'s leftover noise: the only node taking its
/// LATENT, a KSamplerAdvanced adding no noise to it.
pub(super) fn goes_on_from(g: &ValidGraph, id: &str) -> Option<String> {
    let takes = |n: &Node| n.inputs.values().any(|v| as_link(v).is_some_and(|l| l.node == id));
    let takers: Vec<(&String, &Node)> = g.nodes.iter().filter(|(_, n)| takes(n)).collect();
    match takers[..] {
        [(taker, node)]
            if node.class_type == ADVANCED
                && text(node, "add_noise") == "disable"
                && g.linked(taker, "latent_image").is_some_and(|(l, _)| l.node == id) =>
        {
            Some(taker.clone())
        }
        _ => None,
    }
}

/// Whether sampler `id` stops early to hand its leftover noise to the sampler that goes on
/// from it (the split's first half).
pub(super) fn hands_on(g: &ValidGraph, id: &str) -> bool {
    stops_with_leftover(&g.nodes[id]).is_some() && goes_on_from(g, id).is_some()
}

/// The sampler sampler `id` goes on from (the split's second half) and the step that one
/// stopped at, when its `latent_image` is such a sampler's leftover noise.
pub(super) fn goes_on_after(g: &ValidGraph, id: &str) -> Option<(String, i128)> {
    let (link, first) = g.linked(id, "latent_image")?;
    let end = stops_with_leftover(first)?;
    (goes_on_from(g, &link.node).as_deref() == Some(id)).then_some((link.node, end))
}

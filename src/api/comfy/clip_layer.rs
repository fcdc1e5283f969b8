//! ComfyUI's CLIPSetLastLayer: the CLIP it passes on reads prompts at the text encoder layer
//! `stop_at_clip_layer` from its end (-1 the last, -2 the one before: "clip skip 2"), which
//! reelbox runs as the `image` job's `clip_skip`, minus it. Several on one path: the one
//! nearest the prompt encoder holds, as each of ComfyUI's sets it on its own clone.

use super::chain::unsupported;
use super::literals::int_value;
use super::nodes::{NodeSpec, int, link};
use super::roles::Sampling;
use super::validate::{PromptError, ValidGraph};

pub const CLASS_TYPE: &str = "CLIPSetLastLayer";

/// Its spec, with ComfyUI's input, default and range.
pub fn spec() -> NodeSpec {
    NodeSpec {
        class_type: CLASS_TYPE,
        display_name: "CLIP Set Last Layer",
        category: "conditioning",
        description: "The prompts this CLIP encodes are read at this text encoder layer from its end \
                      (-2: clip skip 2); a model pulled from the hub has its own layer only.",
        inputs: vec![link("clip", "CLIP"), int("stop_at_clip_layer", -1, -24, -1, 1)],
        outputs: &["CLIP"],
        output_node: false,
        python_module: "nodes",
    }
}

/// The CLIPSetLastLayer that `at.input` (a CLIP input) comes from straight, if it does: its
/// id and the clip skip it sets.
pub(super) fn setter(g: &ValidGraph, at: &str, input: &str) -> Option<(String, i64)> {
    let (link, node) = g.linked(at, input)?;
    if node.class_type != CLASS_TYPE || link.slot != 0 {
        return None;
    }
    let stop = node.inputs.get("stop_at_clip_layer").and_then(int_value).unwrap_or(-1);
    Some((link.node, i64::try_from(-stop).unwrap_or(1)))
}

/// The clip skip the prompts of a pass (`positive` and `negative`, CLIPTextEncode ids) are
/// read at: that of the CLIPSetLastLayer nearest each on its CLIP's way to the checkpoint,
/// none without; prompts read at two layers are refused at the negative one, since reelbox
/// reads both of a pass's prompts at one.
pub(super) fn pass_clip_skip(g: &ValidGraph, positive: &str, negative: &str) -> Result<Option<i64>, PromptError> {
    let of = |id: &str| super::loras::path_of(g, id, "clip", 1).map(|p| p.clip_skip());
    let (pos, neg) = (of(positive)?, of(negative)?);
    if pos != neg {
        let why = format!(
            "its CLIP stops at {}, the positive prompt's (node {positive}) at {}: reelbox reads both prompts \
             of a pass at one text encoder layer",
            said(neg),
            said(pos)
        );
        return Err(unsupported(negative, &g.nodes[negative], why));
    }
    Ok(pos)
}

/// A second pass's prompts (`positive`, `negative`) read at the layer of the first pass's
/// (`first`), as the job reads every pass's at its one `clip_skip`; else refused at the
/// second pass's KSampler.
pub(super) fn second_pass_at_first(
    g: &ValidGraph,
    sampler: &str,
    (positive, negative): (&str, &str),
    first: &Sampling,
) -> Result<(), PromptError> {
    let skip = pass_clip_skip(g, positive, negative)?;
    let first_skip = pass_clip_skip(g, &first.positive, &first.negative)?;
    if skip == first_skip {
        return Ok(());
    }
    let why = format!(
        "its prompts are read at {}, the first pass's at {}: reelbox reads both passes' prompts at one text \
         encoder layer; set both CLIPs' CLIPSetLastLayer alike",
        said(skip),
        said(first_skip)
    );
    Err(unsupported(sampler, &g.nodes[sampler], why))
}

/// A pass's clip skip in a refusal's words.
fn said(skip: Option<i64>) -> String {
    skip.map_or("the model's own layer".to_string(), |s| format!("layer -{s}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::compile::compile;
    use super::super::files::{Upload, UploadNotFound};
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;

    fn no_uploads(_name: &str) -> Result<Upload, UploadNotFound> {
        Err(UploadNotFound::NoSuchImage)
    }

    /// The default workflow with both prompts' CLIP from node `from`, slot `slot`.
    fn prompts_from(mut g: Value, from: &str, slot: u32) -> Value {
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        g["6"]["inputs"]["clip"] = json!([from, slot]);
        g["7"]["inputs"]["clip"] = json!([from, slot]);
        g
    }

    fn set_last_layer(clip: Value, stop: i64) -> Value {
        json!({"class_type": "CLIPSetLastLayer", "inputs": {"clip": clip, "stop_at_clip_layer": stop}})
    }

    #[test]
    fn the_layer_set_nearest_the_prompts_holds_past_lora_loaders() {
        let mut g = default_workflow();
        g["12"] = json!({"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
            "lora_name": "style.safetensors", "strength_model": 1.0, "strength_clip": 1.0}});
        g["10"] = set_last_layer(json!(["12", 1]), -3);
        g["11"] = set_last_layer(json!(["10", 0]), -2);
        let g = prompts_from(g, "11", 0);
        let c = compile(&validate(&g, &ctx()).expect("valid"), &no_uploads).expect("compiles");
        assert_eq!(c.params["clip_skip"], 2);
        // Without one, the model's own: no field.
        let plain = prompts_from(default_workflow(), "4", 1);
        let c = compile(&validate(&plain, &ctx()).expect("valid"), &no_uploads).expect("compiles");
        assert!(c.params.get("clip_skip").is_none(), "{}", c.params);
    }

    #[test]
    fn prompts_at_two_layers_and_loops_are_refused_at_their_node() {
        let mut g = prompts_from(default_workflow(), "10", 0);
        g["10"] = set_last_layer(json!(["4", 1]), -2);
        g["7"]["inputs"]["clip"] = json!(["4", 1]);
        let err = compile(&validate(&g, &ctx()).expect("valid"), &no_uploads).expect_err("two layers");
        let message = err.node_errors["7"]["errors"][0]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("the model's own layer") && message.contains("layer -2"), "{message}");

        let mut g = prompts_from(default_workflow(), "10", 0);
        g["10"] = set_last_layer(json!(["11", 0]), -2);
        g["11"] = set_last_layer(json!(["10", 0]), -2);
        let err = compile(&validate(&g, &ctx()).expect("valid"), &no_uploads).expect_err("a loop");
        assert_eq!(err.node_errors.len(), 1, "{:?}", err.node_errors);
        assert!(format!("{:?}", err.node_errors).contains("loops back"), "{:?}", err.node_errors);
    }
}

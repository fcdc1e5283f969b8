//! Checks an API-format graph against the node specs the way ComfyUI does, collecting
//! every problem per node in ComfyUI's error shape (`node_errors`), so clients highlight
//! the right inputs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::literals::{check_literal, combo_choice, py_list, py_str, widget_type};
use super::nodes::{InputKind, NodeSpec, SpecContext, is_optional, reelbox_scheduler, spec};

/// A prompt that cannot run: the top-level error and the per-node ones.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptError {
    pub error: Value,
    pub node_errors: Map<String, Value>,
}

impl PromptError {
    /// A top-level error with no node errors.
    pub fn top(kind: &str, message: &str, details: &str) -> Self {
        Self { error: error_obj(kind, message, details, json!({})), node_errors: Map::new() }
    }

    /// The response body.
    pub fn body(&self) -> Value {
        json!({"error": self.error, "node_errors": self.node_errors})
    }
}

/// `{type, message, details, extra_info}` ([`super::error::ComfyErrorDetail`]); `extra_info`
/// an object (anything else is left out as `{}`).
pub fn error_obj(kind: &str, message: &str, details: &str, extra_info: Value) -> Value {
    let extra_info = match extra_info {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let detail = super::error::ComfyErrorDetail {
        kind: kind.to_string(),
        message: message.to_string(),
        details: details.to_string(),
        extra_info,
    };
    serde_json::to_value(detail).unwrap_or_default()
}

/// One node of a checked graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub class_type: String,
    pub inputs: Map<String, Value>,
}

/// A link from an input to another node's output slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub node: String,
    pub slot: usize,
}

/// Reads `["4", 0]` (or `[4, 0]`) as a link.
pub fn as_link(v: &Value) -> Option<Link> {
    let arr = v.as_array()?;
    if arr.len() != 2 {
        return None;
    }
    let node = match &arr[0] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let slot = arr[1].as_u64()? as usize;
    Some(Link { node, slot })
}

/// A graph whose every node and input passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidGraph {
    pub nodes: BTreeMap<String, Node>,
    /// Output node ids (SaveImage, PreviewImage), sorted.
    pub outputs: Vec<String>,
}

impl ValidGraph {
    /// The node an input of `id` links to, if it is a link.
    pub fn linked(&self, id: &str, input: &str) -> Option<(Link, &Node)> {
        let link = as_link(self.nodes.get(id)?.inputs.get(input)?)?;
        let node = self.nodes.get(&link.node)?;
        Some((link, node))
    }
}

/// Checks one node's inputs; returns its errors.
fn check_node(
    node_spec: &NodeSpec,
    inputs: &Map<String, Value>,
    graph: &Map<String, Value>,
    ctx: &SpecContext,
) -> Vec<Value> {
    let mut errors = Vec::new();
    for input in &node_spec.inputs {
        let config = super::nodes::input_config(&input.kind);
        let Some(v) = inputs.get(input.name) else {
            if !is_optional(node_spec.class_type, input.name) {
                errors.push(error_obj(
                    "required_input_missing",
                    "Required input is missing",
                    input.name,
                    json!({"input_name": input.name}),
                ));
            }
            continue;
        };
        if let Some(link) = as_link(v) {
            let linked_class = graph.get(&link.node).and_then(|n| n.get("class_type")).and_then(Value::as_str);
            let Some(linked_class) = linked_class else {
                errors.push(error_obj(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    &format!("{}, node '{}' is not in the prompt", input.name, link.node),
                    json!({"input_name": input.name, "input_config": config, "received_value": v}),
                ));
                continue;
            };
            // Links to unknown nodes are reported at that node.
            let Some(linked) = spec(linked_class, ctx) else { continue };
            let received = linked.outputs.get(link.slot).copied().unwrap_or("*");
            let expected = widget_type(&input.kind);
            if received != expected {
                errors.push(error_obj(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    &format!("{}, received_type({received}) mismatch input_type({expected})", input.name),
                    json!({"input_name": input.name, "input_config": config, "received_type": received, "linked_node": v}),
                ));
            }
            continue;
        }
        if let Err(e) = check_literal(input.name, &input.kind, v, &config) {
            errors.push(e);
        }
    }
    if super::ksampler::CLASS_TYPES.contains(&node_spec.class_type)
        && errors.is_empty()
        && let (Some(Value::String(sampler)), Some(Value::String(schedule))) =
            (inputs.get("sampler_name"), inputs.get("scheduler"))
        && let Err(input) = reelbox_scheduler(sampler, schedule)
    {
        // Each name is in its list, but reelbox lacks the pair (lcm only on its own schedule).
        let received = inputs.get(input).cloned().unwrap_or(Value::Null);
        let allowed: Vec<String> = if input == "scheduler" { vec!["normal".into()] } else { Vec::new() };
        errors.push(error_obj(
            "value_not_in_list",
            "Value not in list",
            &format!("{input}: '{}' not in {} for sampler_name '{sampler}'", py_str(&received), py_list(&allowed)),
            json!({"input_name": input, "input_config": [allowed], "received_value": received}),
        ));
    }
    errors
}

/// Output ids each node feeds (directly or through other nodes).
fn dependent_outputs(graph: &Map<String, Value>, outputs: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for out in outputs {
        let mut stack = vec![out.clone()];
        let mut seen = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            deps.entry(id.clone()).or_default().insert(out.clone());
            if let Some(inputs) = graph.get(&id).and_then(|n| n.get("inputs")).and_then(Value::as_object) {
                stack.extend(inputs.values().filter_map(as_link).map(|l| l.node));
            }
        }
    }
    deps
}

/// Checks a whole graph.
pub fn validate(prompt: &Value, ctx: &SpecContext) -> Result<ValidGraph, PromptError> {
    let Some(graph) = prompt.as_object() else {
        return Err(PromptError::top("invalid_prompt", "Prompt must be an object of nodes", ""));
    };
    let mut nodes = BTreeMap::new();
    let mut specs = BTreeMap::new();
    let mut unknown = Vec::new();
    for (id, node) in graph {
        let class_type = node.get("class_type").and_then(Value::as_str);
        let Some(class_type) = class_type else {
            return Err(PromptError::top(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                &format!("Node ID '#{id}'"),
            ));
        };
        let inputs = match node.get("inputs") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                return Err(PromptError::top(
                    "invalid_prompt",
                    "Cannot execute because a node's inputs are not an object.",
                    &format!("Node ID '#{id}'"),
                ));
            }
        };
        match spec(class_type, ctx) {
            Some(s) => {
                specs.insert(id.clone(), s);
            }
            None => unknown.push((id.clone(), class_type.to_string())),
        }
        nodes.insert(id.clone(), Node { class_type: class_type.to_string(), inputs });
    }
    let outputs: Vec<String> = specs.iter().filter(|(_, s)| s.output_node).map(|(id, _)| id.clone()).collect();
    let deps = dependent_outputs(graph, &outputs);
    let mut node_errors = Map::new();
    let mut add = |id: &str, class_type: &str, errors: Vec<Value>| {
        let dependents: Vec<&String> = deps.get(id).map(|d| d.iter().collect()).unwrap_or_default();
        node_errors.insert(
            id.to_string(),
            json!({"errors": errors, "dependent_outputs": dependents, "class_type": class_type}),
        );
    };
    for (id, class_type) in &unknown {
        let e = error_obj(
            "missing_node_type",
            &format!("Node '{class_type}' not found. reelbox runs only the nodes listed by /object_info."),
            &format!("Node ID '#{id}'"),
            json!({"node_id": id, "class_type": class_type}),
        );
        add(id, class_type, vec![e]);
    }
    for (id, node_spec) in &specs {
        let errors = check_node(node_spec, &nodes[id].inputs, graph, ctx);
        if !errors.is_empty() {
            add(id, node_spec.class_type, errors);
        }
    }
    if let Some((id, class_type)) = unknown.first() {
        return Err(PromptError {
            error: error_obj(
                "missing_node_type",
                &format!("Node '{class_type}' not found. reelbox runs only the nodes listed by /object_info."),
                &format!("Node ID '#{id}'"),
                json!({"node_id": id, "class_type": class_type}),
            ),
            node_errors,
        });
    }
    if !node_errors.is_empty() {
        return Err(PromptError {
            error: error_obj("prompt_outputs_failed_validation", "Prompt outputs failed validation", "", json!({})),
            node_errors,
        });
    }
    if outputs.is_empty() {
        return Err(PromptError::top("prompt_no_outputs", "Prompt has no outputs", ""));
    }
    // From here a combo holds the choice it means (a checkpoint its model's name), so the
    // compiled job names the model and two loaders of one file count as one checkpoint.
    for (id, node_spec) in &specs {
        let Some(node) = nodes.get_mut(id) else { continue };
        for input in &node_spec.inputs {
            let InputKind::Combo(choices) = &input.kind else { continue };
            let Some(Value::String(value)) = node.inputs.get(input.name) else { continue };
            if let Some(choice) = combo_choice(input.name, value, choices) {
                node.inputs.insert(input.name.to_string(), json!(choice));
            }
        }
    }
    Ok(ValidGraph { nodes, outputs })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ctx() -> SpecContext {
        SpecContext {
            checkpoints: vec!["tiny-sd".into()],
            upscale_models: vec!["4x-UltraSharp".into()],
            loras: vec!["style.safetensors".into()],
            max_side: 2048,
            max_steps: 150,
            max_batch: 8,
        }
    }

    /// ComfyUI's default text-to-image workflow in API format.
    pub(crate) fn default_workflow() -> Value {
        json!({
            "3": {"class_type": "KSampler", "inputs": {"cfg": 8, "denoise": 1, "latent_image": ["5", 0],
                "model": ["4", 0], "negative": ["7", 0], "positive": ["6", 0], "sampler_name": "euler",
                "scheduler": "normal", "seed": 8566257, "steps": 20}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 512, "width": 512}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1],
                "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text, watermark"}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
        })
    }

    fn with_ckpt(mut g: Value, name: &str) -> Value {
        g["4"]["inputs"]["ckpt_name"] = json!(name);
        g
    }

    #[test]
    fn the_default_workflow_passes_with_an_installed_checkpoint() {
        let g = validate(&with_ckpt(default_workflow(), "tiny-sd.safetensors"), &ctx()).expect("valid");
        assert_eq!(g.outputs, vec!["9".to_string()]);
        assert_eq!(g.linked("8", "samples").map(|(_, n)| n.class_type.as_str()), Some("KSampler"));
    }

    #[test]
    fn a_missing_checkpoint_is_not_in_the_list() {
        let err = validate(&default_workflow(), &ctx()).expect_err("v1-5 is not installed");
        assert_eq!(err.error["type"], "prompt_outputs_failed_validation");
        let e = &err.node_errors["4"];
        assert_eq!(e["class_type"], "CheckpointLoaderSimple");
        assert_eq!(e["errors"][0]["type"], "value_not_in_list");
        assert_eq!(e["errors"][0]["extra_info"]["input_name"], "ckpt_name");
        assert_eq!(e["dependent_outputs"], json!(["9"]));
    }

    #[test]
    fn unknown_node_missing_input_and_bad_sampler_are_each_reported_at_their_node() {
        let mut g = with_ckpt(default_workflow(), "tiny-sd");
        g["10"] = json!({"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}});
        g["3"]["inputs"]["sampler_name"] = json!("heun");
        g["7"]["inputs"].as_object_mut().expect("inputs").remove("text");
        let err = validate(&g, &ctx()).expect_err("three problems");
        assert_eq!(err.error["type"], "missing_node_type");
        assert_eq!(err.node_errors["10"]["errors"][0]["type"], "missing_node_type");
        assert_eq!(err.node_errors["10"]["class_type"], "UltimateSDUpscale");
        let missing = &err.node_errors["7"]["errors"][0];
        assert_eq!(missing["type"], "required_input_missing");
        assert_eq!(missing["extra_info"]["input_name"], "text");
        let sampler = &err.node_errors["3"]["errors"][0];
        assert_eq!(sampler["type"], "value_not_in_list");
        assert_eq!(sampler["extra_info"]["input_name"], "sampler_name");
        assert_eq!(sampler["extra_info"]["received_value"], "heun");
        assert_eq!(err.node_errors.len(), 3);
    }

    #[test]
    fn every_scheduler_runs_with_the_k_diffusion_samplers_and_lcm_only_on_its_own() {
        let mut g = with_ckpt(default_workflow(), "tiny-sd");
        for schedule in ["karras", "exponential", "sgm_uniform", "simple"] {
            g["3"]["inputs"]["scheduler"] = json!(schedule);
            validate(&g, &ctx()).unwrap_or_else(|e| panic!("euler + {schedule}: {e:?}"));
        }
        g["3"]["inputs"]["sampler_name"] = json!("lcm");
        let err = validate(&g, &ctx()).expect_err("lcm + simple");
        assert_eq!(err.node_errors["3"]["errors"][0]["extra_info"]["input_name"], "scheduler");
    }

    #[test]
    fn ranges_and_link_types_are_checked() {
        let mut g = with_ckpt(default_workflow(), "tiny-sd");
        g["3"]["inputs"]["steps"] = json!(0);
        g["3"]["inputs"]["cfg"] = json!("lots");
        g["8"]["inputs"]["vae"] = json!(["4", 1]);
        let err = validate(&g, &ctx()).expect_err("bad values");
        let types: Vec<&str> = err.node_errors["3"]["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(types, vec!["value_smaller_than_min", "invalid_input_type"]);
        assert_eq!(err.node_errors["8"]["errors"][0]["type"], "return_type_mismatch");
        assert_eq!(err.node_errors["8"]["errors"][0]["extra_info"]["received_type"], "CLIP");
    }

    #[test]
    fn a_graph_without_outputs_is_refused() {
        let mut g = with_ckpt(default_workflow(), "tiny-sd");
        g.as_object_mut().expect("graph").remove("9");
        assert_eq!(validate(&g, &ctx()).expect_err("no outputs").error["type"], "prompt_no_outputs");
        assert_eq!(validate(&json!([1]), &ctx()).expect_err("not an object").error["type"], "invalid_prompt");
    }

    #[test]
    fn an_upscale_model_is_named_by_its_file_and_its_link_type_checked() {
        let mut g = with_ckpt(default_workflow(), "tiny-sd");
        g["10"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": "upscalers/4x-UltraSharp.pth"}});
        g["11"] =
            json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["10", 0], "image": ["8", 0]}});
        g["9"]["inputs"]["images"] = json!(["11", 0]);
        let checked = validate(&g, &ctx()).expect("valid");
        assert_eq!(checked.nodes["10"].inputs["model_name"], "4x-UltraSharp", "the checked graph names the model");
        g["10"]["inputs"]["model_name"] = json!("RealESRGAN_x4plus.pth");
        g["11"]["inputs"]["upscale_model"] = json!(["4", 0]);
        let err = validate(&g, &ctx()).expect_err("unknown model, MODEL for UPSCALE_MODEL");
        let loader = &err.node_errors["10"]["errors"][0];
        assert_eq!(
            (&loader["type"], &loader["extra_info"]["input_name"]),
            (&json!("value_not_in_list"), &json!("model_name"))
        );
        let link = &err.node_errors["11"]["errors"][0];
        assert_eq!(
            (&link["type"], &link["extra_info"]["input_name"]),
            (&json!("return_type_mismatch"), &json!("upscale_model"))
        );
        assert_eq!(link["extra_info"]["received_type"], "MODEL");
    }
}

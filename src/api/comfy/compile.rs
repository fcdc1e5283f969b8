//! A checked graph → one `image` job. reelbox runs one sampling chain per prompt:
//! checkpoint → prompts → (empty latent | uploaded image → VAEEncode) → KSampler →
//! VAEDecode → SaveImage/PreviewImage. Anything else is refused at the node that breaks it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::files::UploadNotFound;
use super::nodes::reelbox_scheduler;
use super::validate::{Node, PromptError, ValidGraph, error_obj, float_value, int_value};
use crate::kinds::image::{ImageRequest, MAX_SEED};

/// An output node and how its pictures are filed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputNode {
    pub id: String,
    pub class_type: String,
    /// `output` (SaveImage) or `temp` (PreviewImage), as ComfyUI files them.
    pub folder: String,
    pub filename_prefix: String,
}

/// The nodes of a prompt by role, for progress messages and error mapping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    pub checkpoint: String,
    pub positive: String,
    pub negative: String,
    /// EmptyLatentImage, or VAEEncode for image to image.
    pub latent: String,
    pub load_image: Option<String>,
    pub sampler: String,
    pub decode: String,
    pub outputs: Vec<OutputNode>,
}

impl Roles {
    /// Nodes in the order ComfyUI would execute them.
    pub fn execution_order(&self) -> Vec<String> {
        let mut order = vec![self.checkpoint.clone(), self.positive.clone(), self.negative.clone()];
        order.extend(self.load_image.clone());
        order.push(self.latent.clone());
        order.push(self.sampler.clone());
        order.push(self.decode.clone());
        order.extend(self.outputs.iter().map(|o| o.id.clone()));
        let mut seen = std::collections::HashSet::new();
        order.retain(|id| seen.insert(id.clone()));
        order
    }

    /// The node and input an `image` job parameter came from.
    pub fn source_of(&self, param: &str) -> (String, &'static str) {
        match param {
            "prompt" => (self.positive.clone(), "text"),
            "negative_prompt" => (self.negative.clone(), "text"),
            "model" => (self.checkpoint.clone(), "ckpt_name"),
            "width" => (self.latent.clone(), "width"),
            "height" => (self.latent.clone(), "height"),
            "n" => (self.latent.clone(), "batch_size"),
            "init_image" => (self.load_image.clone().unwrap_or_else(|| self.latent.clone()), "image"),
            "steps" => (self.sampler.clone(), "steps"),
            "guidance" => (self.sampler.clone(), "cfg"),
            "scheduler" => (self.sampler.clone(), "sampler_name"),
            "strength" => (self.sampler.clone(), "denoise"),
            _ => (self.sampler.clone(), "seed"),
        }
    }
}

/// A compiled prompt: the job parameters (the `image` kind's request, serialised for
/// submission) and the node roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub params: Value,
    pub roles: Roles,
}

/// Finds the artifact id of an uploaded image name, or says why not.
pub type UploadLookup<'a> = &'a dyn Fn(&str) -> Result<String, UploadNotFound>;

fn unsupported(id: &str, node: &Node, message: String) -> PromptError {
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

/// A node error for one input (used for problems found after the generic checks).
pub fn input_error(
    id: &str,
    class_type: &str,
    input: &str,
    kind: &str,
    message: &str,
    received: &Value,
) -> PromptError {
    let mut node_errors = Map::new();
    node_errors.insert(
        id.to_string(),
        json!({
            "errors": [error_obj(kind, message, &format!("{input} - {message}"),
                json!({"input_name": input, "received_value": received}))],
            "dependent_outputs": [],
            "class_type": class_type,
        }),
    );
    PromptError {
        error: error_obj("prompt_outputs_failed_validation", "Prompt outputs failed validation", "", json!({})),
        node_errors,
    }
}

fn text(node: &Node, input: &str) -> String {
    match node.inputs.get(input) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Follows `id.input` to a node of `class` at `slot`, or refuses the graph at `id`.
fn follow<'g>(
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

/// A ComfyUI seed (up to 2^64 − 1) as an `image` seed (up to 2^53 − 1, what JSON numbers
/// carry exactly): the low 53 bits, so equal seeds still give equal pictures.
pub fn fold_seed(seed: i128) -> u64 {
    (u64::try_from(seed).unwrap_or(0)) & (MAX_SEED as u64)
}

/// A checked graph's integer as a wire integer (the graph checks bound them well inside).
fn wire(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Turns a checked graph into `image` job parameters.
pub fn compile(g: &ValidGraph, uploads: UploadLookup) -> Result<Compiled, PromptError> {
    let mut roles = Roles::default();
    let mut chain: Option<(String, String)> = None;
    for out_id in &g.outputs {
        let out = &g.nodes[out_id];
        let (decode_id, _) = follow(g, out_id, "images", &["VAEDecode"], 0)?;
        let (sampler_id, _) = follow(g, &decode_id, "samples", &["KSampler"], 0)?;
        match &chain {
            Some((_, s)) if *s != sampler_id => {
                return Err(unsupported(
                    out_id,
                    out,
                    format!(
                        "reelbox runs one KSampler per prompt; this output comes from node {sampler_id}, another from node {s}"
                    ),
                ));
            }
            Some(_) => {}
            None => chain = Some((decode_id.clone(), sampler_id)),
        }
        let folder = if out.class_type == "SaveImage" { "output" } else { "temp" };
        let prefix = if out.class_type == "SaveImage" { text(out, "filename_prefix") } else { "ComfyUI_temp".into() };
        roles.outputs.push(OutputNode {
            id: out_id.clone(),
            class_type: out.class_type.clone(),
            folder: folder.into(),
            filename_prefix: if prefix.is_empty() { "ComfyUI".into() } else { prefix },
        });
    }
    let Some((decode_id, sampler_id)) = chain else {
        return Err(PromptError::top("prompt_no_outputs", "Prompt has no outputs", ""));
    };
    let sampler = &g.nodes[&sampler_id];
    let (ckpt_id, ckpt) = follow(g, &sampler_id, "model", &["CheckpointLoaderSimple"], 0)?;
    let ckpt_name = text(ckpt, "ckpt_name");
    let same_checkpoint = |id: &str, input: &str, slot: usize| -> Result<(), PromptError> {
        let (other_id, other) = follow(g, id, input, &["CheckpointLoaderSimple"], slot)?;
        if other_id != ckpt_id && text(other, "ckpt_name") != ckpt_name {
            return Err(unsupported(
                id,
                &g.nodes[id],
                format!("{input} must come from the sampler's checkpoint (node {ckpt_id})"),
            ));
        }
        Ok(())
    };
    same_checkpoint(&decode_id, "vae", 2)?;
    let (pos_id, pos) = follow(g, &sampler_id, "positive", &["CLIPTextEncode"], 0)?;
    let (neg_id, neg) = follow(g, &sampler_id, "negative", &["CLIPTextEncode"], 0)?;
    same_checkpoint(&pos_id, "clip", 1)?;
    same_checkpoint(&neg_id, "clip", 1)?;

    let seed = sampler.inputs.get("seed").and_then(int_value).unwrap_or(0);
    let steps = sampler.inputs.get("steps").and_then(int_value).unwrap_or(20);
    let cfg = sampler.inputs.get("cfg").and_then(float_value).unwrap_or(8.0);
    let denoise = sampler.inputs.get("denoise").and_then(float_value).unwrap_or(1.0);
    let scheduler =
        reelbox_scheduler(&text(sampler, "sampler_name"), &text(sampler, "scheduler")).map_err(|input| {
            input_error(
                &sampler_id,
                "KSampler",
                input,
                "value_not_in_list",
                "Value not in list",
                &json!(text(sampler, input)),
            )
        })?;
    let mut params = ImageRequest {
        prompt: Some(text(pos, "text")),
        negative_prompt: Some(text(neg, "text")),
        // The checked graph names the model itself (the file name a client sent is mapped).
        model: Some(ckpt_name.clone()),
        steps: Some(wire(steps)),
        guidance: Some(cfg),
        scheduler: Some(scheduler.to_string()),
        seed: Some(wire(i128::from(fold_seed(seed)))),
        ..ImageRequest::default()
    };
    let (latent_id, latent) = follow(g, &sampler_id, "latent_image", &["EmptyLatentImage", "VAEEncode"], 0)?;
    if latent.class_type == "EmptyLatentImage" {
        // ComfyUI's latents are width // 8 wide: sizes round down to multiples of 8.
        let side = |input: &str| latent.inputs.get(input).and_then(int_value).unwrap_or(512) / 8 * 8;
        params.width = Some(wire(side("width")));
        params.height = Some(wire(side("height")));
        params.n = Some(wire(latent.inputs.get("batch_size").and_then(int_value).unwrap_or(1)));
    } else {
        same_checkpoint(&latent_id, "vae", 2)?;
        let (load_id, load) = follow(g, &latent_id, "pixels", &["LoadImage"], 0)?;
        let name = text(load, "image");
        let artifact = uploads(&name).map_err(|why| {
            input_error(
                &load_id,
                "LoadImage",
                "image",
                "custom_validation_failed",
                &format!("Invalid image file: {name} ({why})"),
                &json!(name),
            )
        })?;
        params.init_image = Some(artifact);
        params.strength = Some(denoise);
        roles.load_image = Some(load_id);
    }
    roles.checkpoint = ckpt_id;
    roles.positive = pos_id;
    roles.negative = neg_id;
    roles.latent = latent_id;
    roles.sampler = sampler_id;
    roles.decode = decode_id;
    // Submission takes JSON: serialised here, at the edge of the typed request.
    let params = serde_json::to_value(&params).map_err(|e| {
        PromptError::top("prompt_outputs_failed_validation", "Prompt outputs failed validation", &e.to_string())
    })?;
    Ok(Compiled { params, roles })
}

#[cfg(test)]
mod tests {
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use super::*;

    fn no_uploads(_name: &str) -> Result<String, UploadNotFound> {
        Err(UploadNotFound::NoSuchImage)
    }

    fn checked(mut g: Value) -> ValidGraph {
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        validate(&g, &ctx()).expect("valid")
    }

    #[test]
    fn the_default_workflow_becomes_one_image_job() {
        let c = compile(&checked(default_workflow()), &no_uploads).expect("compiles");
        assert_eq!(c.params["model"], "tiny-sd");
        assert_eq!(c.params["prompt"], "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,");
        assert_eq!(c.params["negative_prompt"], "text, watermark");
        assert_eq!(c.params["scheduler"], "euler");
        assert_eq!(
            (c.params["width"].as_i64(), c.params["height"].as_i64(), c.params["n"].as_i64()),
            (Some(512), Some(512), Some(1))
        );
        assert_eq!(c.params["seed"], 8566257);
        assert_eq!(c.params["guidance"], 8.0);
        assert_eq!(c.roles.execution_order(), vec!["4", "6", "7", "5", "3", "8", "9"]);
        assert_eq!(c.roles.outputs[0].folder, "output");
        assert_eq!(c.roles.source_of("width"), ("5".to_string(), "width"));
    }

    #[test]
    fn image_to_image_takes_the_upload_and_denoise_as_strength() {
        let mut g = default_workflow();
        g["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "cat_01J0000000000000000000000.png"}});
        g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
        g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
        g["3"]["inputs"]["denoise"] = json!(0.6);
        g.as_object_mut().expect("graph").remove("5");
        let found = |name: &str| Ok::<_, UploadNotFound>(format!("id-of-{name}"));
        let c = compile(&checked(g.clone()), &found).expect("compiles");
        assert_eq!(c.params["init_image"], "id-of-cat_01J0000000000000000000000.png");
        assert_eq!(c.params["strength"], 0.6);
        assert!(c.params.get("width").is_none());
        let err = compile(&checked(g), &no_uploads).expect_err("no such upload");
        assert_eq!(err.node_errors["10"]["errors"][0]["type"], "custom_validation_failed");
    }

    #[test]
    fn comfy_seeds_fold_into_the_image_kinds_range() {
        assert_eq!(fold_seed(8566257), 8566257);
        assert_eq!(fold_seed(i128::from(u64::MAX)), MAX_SEED as u64);
        assert_eq!(fold_seed(1 << 53), 0);
    }

    #[test]
    fn two_samplers_are_refused_at_the_second_output() {
        let mut g = default_workflow();
        g["13"] = g["3"].clone();
        g["18"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["4", 2]}});
        g["19"] = json!({"class_type": "PreviewImage", "inputs": {"images": ["18", 0]}});
        let err = compile(&checked(g), &no_uploads).expect_err("two chains");
        assert_eq!(err.node_errors["9"]["errors"][0]["type"], "unsupported_graph");
    }
}

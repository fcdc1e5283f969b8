//! The ComfyUI nodes reelbox understands, described once: validation reads the input
//! specs, `/object_info` prints them, and sampler names map onto reelbox's schedulers.

use serde_json::{Value, json};

use super::inpaint::{ENCODE_FOR_INPAINT, LOAD_MASK, NOISE_MASK};
use super::{ksampler, loaders, masks};
use crate::media::resize::Method;
use crate::pipelines::diffusion::samplers::Schedule;

/// ComfyUI's largest seed (`0xffffffffffffffff`).
pub const MAX_SEED: u64 = u64::MAX;

/// What an input takes.
#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    /// A link to another node's output of this type (`MODEL`, `CLIP`, `VAE`, `CONDITIONING`, `LATENT`, `IMAGE`).
    Link(&'static str),
    Int {
        default: i128,
        min: i128,
        max: i128,
        step: i128,
        /// How ComfyUI's page shows it, where not as a number (`color`: a colour picker).
        display: Option<&'static str>,
    },
    Float {
        default: f64,
        min: f64,
        max: f64,
        step: f64,
    },
    Text {
        default: &'static str,
        multiline: bool,
    },
    /// One of a list, computed per request (installed models, sampler names).
    Combo(Vec<String>),
    /// A switch (ComfyUI's `BOOLEAN`).
    Bool {
        default: bool,
    },
}

/// One named input of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub name: &'static str,
    pub kind: InputKind,
}

/// A node type.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub class_type: &'static str,
    pub display_name: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub inputs: Vec<InputSpec>,
    /// Output types, by slot.
    pub outputs: &'static [&'static str],
    /// True for nodes that make results (SaveImage, PreviewImage).
    pub output_node: bool,
    /// The ComfyUI module that defines it (`nodes`, `comfy_extras.…`), as `/object_info` says.
    pub python_module: &'static str,
}

/// The lists and limits the specs depend on.
#[derive(Debug, Clone)]
pub struct SpecContext {
    /// Installed diffusion models as `ckpt_name` values.
    pub checkpoints: Vec<String>,
    /// Installed upscale models as `model_name` values.
    pub upscale_models: Vec<String>,
    /// The LoRA files installed fused models were made with, as `lora_name` values.
    pub loras: Vec<String>,
    pub max_side: u32,
    pub max_steps: u32,
    pub max_batch: u32,
}

/// ComfyUI's node that upscales pictures with a model.
pub const UPSCALE: &str = "ImageUpscaleWithModel";

/// ComfyUI's nodes that resize pictures without a model ("Upscale Image" and its kin).
pub const SCALES: [&str; 3] = ["ImageScale", "ImageScaleBy", "ImageScaleToTotalPixels"];

/// ComfyUI's nodes that scale a sampler's latents for a second sampler (the hires fix's
/// latent form; reelbox scales the latent too, `pipelines::diffusion::latent_scale`).
pub const LATENT_SCALES: [&str; 2] = ["LatentUpscale", "LatentUpscaleBy"];

/// The class types reelbox runs, but for the samplers and the mask nodes ([`class_types`]
/// has all).
const CLASS_TYPES: [&str; 18] = [
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "EmptyLatentImage",
    "VAEDecode",
    "VAEEncode",
    "LoadImage",
    "SaveImage",
    "PreviewImage",
    "UpscaleModelLoader",
    UPSCALE,
    SCALES[0],
    SCALES[1],
    SCALES[2],
    LATENT_SCALES[0],
    LATENT_SCALES[1],
    NOISE_MASK,
    ENCODE_FOR_INPAINT,
    LOAD_MASK,
];

/// Every class type reelbox describes: those it runs, the samplers (`ksampler`), the mask
/// nodes and the picture node a mask's picture may pass (`masks`), the LoRA loaders,
/// CLIPSetLastLayer (`clip_layer`), then the loaders of a UNet or VAE alone, whose choices
/// are empty (`loaders`).
pub fn class_types() -> impl Iterator<Item = &'static str> {
    CLASS_TYPES
        .into_iter()
        .chain(ksampler::CLASS_TYPES)
        .chain(masks::class_types())
        .chain(super::loras::CLASS_TYPES)
        .chain([super::clip_layer::CLASS_TYPE])
        .chain(loaders::CLASS_TYPES)
}

/// ComfyUI sampler names reelbox has.
pub const SAMPLERS: [&str; 5] = ["euler", "euler_ancestral", "ddim", "dpmpp_2m", "lcm"];
/// ComfyUI schedulers reelbox has (`lcm` only with `normal`).
pub const SCHEDULERS: [&str; 5] = Schedule::NAMES;

/// A ComfyUI sampler + scheduler → the `image` kind's `scheduler` and `schedule`: sampled
/// as ComfyUI's KSampler samples (k-diffusion over the scheduler's σs), except `lcm`, which
/// is reelbox's LCM on its own schedule; `Err` names the input at fault.
pub fn reelbox_scheduler(sampler: &str, schedule: &str) -> Result<(&'static str, Option<&'static str>), &'static str> {
    let base = match sampler {
        "euler" => "euler",
        "euler_ancestral" => "euler_a",
        "ddim" => "ddim",
        "dpmpp_2m" => "dpmpp_2m",
        "lcm" => "lcm",
        _ => return Err("sampler_name"),
    };
    match (base, Schedule::parse(schedule)) {
        ("lcm", Some(Schedule::Normal)) => Ok(("lcm", None)),
        ("lcm", _) | (_, None) => Err("scheduler"),
        (_, Some(s)) => Ok((base, Some(s.name()))),
    }
}

pub(super) fn link(name: &'static str, ty: &'static str) -> InputSpec {
    InputSpec { name, kind: InputKind::Link(ty) }
}

pub(super) fn int(name: &'static str, default: i128, min: i128, max: i128, step: i128) -> InputSpec {
    InputSpec { name, kind: InputKind::Int { default, min, max, step, display: None } }
}

pub(super) fn float(name: &'static str, default: f64, min: f64, max: f64) -> InputSpec {
    InputSpec { name, kind: InputKind::Float { default, min, max, step: 0.01 } }
}

/// The picture and how it is resampled, the first inputs of every scale node.
fn scale_inputs(more: impl IntoIterator<Item = InputSpec>) -> Vec<InputSpec> {
    let methods = Method::names().into_iter().map(String::from).collect();
    [link("image", "IMAGE"), InputSpec { name: "upscale_method", kind: InputKind::Combo(methods) }]
        .into_iter()
        .chain(more)
        .collect()
}

/// A scale node: its picture resized, nothing else.
fn scale_node(class_type: &'static str, display_name: &'static str, inputs: Vec<InputSpec>) -> NodeSpec {
    NodeSpec {
        class_type,
        display_name,
        category: "image/upscaling",
        description: "Resizes pictures without a model.",
        inputs,
        outputs: &["IMAGE"],
        output_node: false,
        python_module: if class_type == SCALES[2] { "comfy_extras.nodes_post_processing" } else { "nodes" },
    }
}

/// The spec of a class type, or `None` for nodes reelbox does not run.
pub fn spec(class_type: &str, ctx: &SpecContext) -> Option<NodeSpec> {
    let side = i128::from(ctx.max_side);
    Some(match class_type {
        "CheckpointLoaderSimple" => NodeSpec {
            class_type: "CheckpointLoaderSimple",
            display_name: "Load Checkpoint",
            category: "loaders",
            description: "Loads an installed diffusion model.",
            inputs: vec![InputSpec { name: "ckpt_name", kind: InputKind::Combo(ctx.checkpoints.clone()) }],
            outputs: &["MODEL", "CLIP", "VAE"],
            output_node: false,
            python_module: "nodes",
        },
        "CLIPTextEncode" => NodeSpec {
            class_type: "CLIPTextEncode",
            display_name: "CLIP Text Encode (Prompt)",
            category: "conditioning",
            description: "Encodes a text prompt.",
            inputs: vec![
                InputSpec { name: "text", kind: InputKind::Text { default: "", multiline: true } },
                link("clip", "CLIP"),
            ],
            outputs: &["CONDITIONING"],
            output_node: false,
            python_module: "nodes",
        },
        "EmptyLatentImage" => NodeSpec {
            class_type: "EmptyLatentImage",
            display_name: "Empty Latent Image",
            category: "latent",
            description: "A batch of empty latent images to denoise.",
            inputs: vec![
                int("width", 512, 64, side, 8),
                int("height", 512, 64, side, 8),
                int("batch_size", 1, 1, i128::from(ctx.max_batch), 1),
            ],
            outputs: &["LATENT"],
            output_node: false,
            python_module: "nodes",
        },
        "VAEDecode" => NodeSpec {
            class_type: "VAEDecode",
            display_name: "VAE Decode",
            category: "latent",
            description: "Decodes latents into pictures.",
            inputs: vec![link("samples", "LATENT"), link("vae", "VAE")],
            outputs: &["IMAGE"],
            output_node: false,
            python_module: "nodes",
        },
        "VAEEncode" => NodeSpec {
            class_type: "VAEEncode",
            display_name: "VAE Encode",
            category: "latent",
            description: "Encodes a picture into latents (image to image).",
            inputs: vec![link("pixels", "IMAGE"), link("vae", "VAE")],
            outputs: &["LATENT"],
            output_node: false,
            python_module: "nodes",
        },
        "LoadImage" => NodeSpec {
            class_type: "LoadImage",
            display_name: "Load Image",
            category: "image",
            description: "A picture uploaded with /upload/image.",
            // Uploads are named per request; any uploaded name is checked when the prompt is compiled.
            inputs: vec![InputSpec { name: "image", kind: InputKind::Text { default: "", multiline: false } }],
            outputs: &["IMAGE", "MASK"],
            output_node: false,
            python_module: "nodes",
        },
        "SaveImage" => NodeSpec {
            class_type: "SaveImage",
            display_name: "Save Image",
            category: "image",
            description: "Keeps the pictures as artifacts.",
            inputs: vec![
                link("images", "IMAGE"),
                InputSpec { name: "filename_prefix", kind: InputKind::Text { default: "ComfyUI", multiline: false } },
            ],
            outputs: &[],
            output_node: true,
            python_module: "nodes",
        },
        "PreviewImage" => NodeSpec {
            class_type: "PreviewImage",
            display_name: "Preview Image",
            category: "image",
            description: "Shows the pictures (kept as artifacts too).",
            inputs: vec![link("images", "IMAGE")],
            outputs: &[],
            output_node: true,
            python_module: "nodes",
        },
        "UpscaleModelLoader" => NodeSpec {
            class_type: "UpscaleModelLoader",
            display_name: "Load Upscale Model",
            category: "loaders",
            description: "Loads an installed upscale model.",
            inputs: vec![InputSpec { name: "model_name", kind: InputKind::Combo(ctx.upscale_models.clone()) }],
            outputs: &["UPSCALE_MODEL"],
            output_node: false,
            python_module: UPSCALE_MODULE,
        },
        UPSCALE => NodeSpec {
            class_type: UPSCALE,
            display_name: "Upscale Image (using Model)",
            category: "image/upscaling",
            description: "Upscales pictures with the model (its scale, 4x for Real-ESRGAN x4).",
            inputs: vec![link("upscale_model", "UPSCALE_MODEL"), link("image", "IMAGE")],
            outputs: &["IMAGE"],
            output_node: false,
            python_module: UPSCALE_MODULE,
        },
        // Sides as EmptyLatentImage's, up to the largest picture the box makes; 0 keeps the shape.
        "ImageScale" => scale_node(
            "ImageScale",
            "Upscale Image",
            scale_inputs([
                int("width", 512, 0, side, 1),
                int("height", 512, 0, side, 1),
                InputSpec { name: "crop", kind: InputKind::Combo(vec!["disabled".into(), "center".into()]) },
            ]),
        ),
        "ImageScaleBy" => {
            scale_node("ImageScaleBy", "Upscale Image By", scale_inputs([float("scale_by", 1.0, 0.01, 8.0)]))
        }
        "ImageScaleToTotalPixels" => scale_node(
            "ImageScaleToTotalPixels",
            "Scale Image to Total Pixels",
            scale_inputs([float("megapixels", 1.0, 0.01, 16.0), int("resolution_steps", 1, 1, 256, 1)]),
        ),
        // ComfyUI's: sides in steps of 8 (the latent's), 0 following the shape; a factor 0.01–8.
        "LatentUpscale" => latent_scale_node(
            "LatentUpscale",
            "Upscale Latent",
            vec![
                int("width", 512, 0, side, 8),
                int("height", 512, 0, side, 8),
                InputSpec { name: "crop", kind: InputKind::Combo(vec!["disabled".into(), "center".into()]) },
            ],
        ),
        "LatentUpscaleBy" => {
            latent_scale_node("LatentUpscaleBy", "Upscale Latent By", vec![float("scale_by", 1.5, 0.01, 8.0)])
        }
        _ => {
            return ksampler::spec(class_type, ctx)
                .or_else(|| super::inpaint::spec(class_type))
                .or_else(|| masks::spec(class_type, side))
                .or_else(|| super::loras::spec(class_type, ctx))
                .or_else(|| (class_type == super::clip_layer::CLASS_TYPE).then(super::clip_layer::spec))
                .or_else(|| loaders::spec(class_type));
        }
    })
}

/// A latent scale node: the sampler's latents and how they are resampled, then its own inputs.
fn latent_scale_node(class_type: &'static str, display_name: &'static str, more: Vec<InputSpec>) -> NodeSpec {
    // ComfyUI's own list, `bislerp` included.
    let methods = Method::latent_names().into_iter().map(String::from).collect();
    let inputs = [link("samples", "LATENT"), InputSpec { name: "upscale_method", kind: InputKind::Combo(methods) }]
        .into_iter()
        .chain(more)
        .collect();
    NodeSpec {
        class_type,
        display_name,
        category: "latent",
        description: "Scales a sampler's latent for a second sampler.",
        inputs,
        outputs: &["LATENT"],
        output_node: false,
        python_module: "nodes",
    }
}

/// Where ComfyUI defines its upscale nodes.
const UPSCALE_MODULE: &str = "comfy_extras.nodes_upscale_model";

/// Inputs that are optional in the graph (ComfyUI fills their defaults).
pub fn is_optional(class_type: &str, input: &str) -> bool {
    // ComfyUI's ImageScaleToTotalPixels had no `resolution_steps` before late 2025 (1 then).
    matches!(
        (class_type, input),
        ("SaveImage", "filename_prefix") | ("KSampler", "denoise") | ("ImageScaleToTotalPixels", "resolution_steps")
    )
}

/// ComfyUI's description of an input (`["INT", {...}]`, `[[choices]]`, `["MODEL"]`).
pub fn input_config(kind: &InputKind) -> Value {
    match kind {
        InputKind::Link(ty) => json!([ty]),
        InputKind::Int { default, min, max, step, display } => {
            let mut config = json!({"default": int_json(*default), "min": int_json(*min), "max": int_json(*max), "step": int_json(*step)});
            if let Some(display) = display {
                config["display"] = json!(display);
            }
            json!(["INT", config])
        }
        InputKind::Float { default, min, max, step } => {
            json!(["FLOAT", {"default": default, "min": min, "max": max, "step": step, "round": 0.01}])
        }
        InputKind::Text { default, multiline } => {
            json!(["STRING", {"default": default, "multiline": multiline, "dynamicPrompts": multiline}])
        }
        InputKind::Combo(choices) => json!([choices]),
        InputKind::Bool { default } => json!(["BOOLEAN", {"default": default}]),
    }
}

fn int_json(v: i128) -> Value {
    u64::try_from(v).map(Value::from).or_else(|_| i64::try_from(v).map(Value::from)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::super::info::node_info as object_info;
    use super::*;

    fn ctx() -> SpecContext {
        SpecContext {
            checkpoints: vec!["tiny-sd".into()],
            upscale_models: vec!["tiny-esrgan-x4".into()],
            loras: vec!["style.safetensors".into()],
            max_side: 2048,
            max_steps: 150,
            max_batch: 8,
        }
    }

    #[test]
    fn samplers_map_onto_reelbox_schedulers() {
        assert_eq!(reelbox_scheduler("euler", "normal"), Ok(("euler", Some("normal"))));
        assert_eq!(reelbox_scheduler("euler_ancestral", "sgm_uniform"), Ok(("euler_a", Some("sgm_uniform"))));
        assert_eq!(reelbox_scheduler("dpmpp_2m", "karras"), Ok(("dpmpp_2m", Some("karras"))));
        assert_eq!(reelbox_scheduler("euler", "karras"), Ok(("euler", Some("karras"))));
        assert_eq!(reelbox_scheduler("lcm", "normal"), Ok(("lcm", None)));
        assert_eq!(reelbox_scheduler("heun", "normal"), Err("sampler_name"));
        assert_eq!(reelbox_scheduler("lcm", "karras"), Err("scheduler"));
        assert_eq!(reelbox_scheduler("euler", "beta"), Err("scheduler"));
    }

    #[test]
    fn every_class_type_has_a_spec_and_object_info_lists_its_inputs() {
        for class in class_types() {
            let spec = spec(class, &ctx()).expect(class);
            let info = object_info(&spec);
            assert_eq!(info["name"], class);
            for input in &spec.inputs {
                assert!(info["input"]["required"].get(input.name).is_some(), "{class}.{}", input.name);
            }
        }
        let ks = object_info(&spec("KSampler", &ctx()).expect("KSampler"));
        assert_eq!(ks["input"]["required"]["sampler_name"][0], json!(SAMPLERS));
        assert_eq!(ks["input"]["required"]["seed"][1]["max"], json!(u64::MAX));
        assert!(spec("UltimateSDUpscale", &ctx()).is_none());
    }

    #[test]
    fn the_upscale_nodes_have_comfyuis_shapes() {
        let loader = object_info(&spec("UpscaleModelLoader", &ctx()).expect("loader"));
        assert_eq!(loader["input"]["required"]["model_name"], json!([["tiny-esrgan-x4"]]));
        assert_eq!((&loader["output"], &loader["category"]), (&json!(["UPSCALE_MODEL"]), &json!("loaders")));
        let up = object_info(&spec(UPSCALE, &ctx()).expect("upscale"));
        assert_eq!(up["input"]["required"], json!({"upscale_model": ["UPSCALE_MODEL"], "image": ["IMAGE"]}));
        assert_eq!(up["input_order"]["required"], json!(["upscale_model", "image"]));
        assert_eq!((&up["output"], &up["output_node"]), (&json!(["IMAGE"]), &json!(false)));
        assert_eq!(up["python_module"], "comfy_extras.nodes_upscale_model");
    }

    #[test]
    fn the_scale_nodes_have_comfyuis_shapes() {
        let methods = json!([["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]]);
        let scale = object_info(&spec("ImageScale", &ctx()).expect("ImageScale"));
        assert_eq!(scale["input_order"]["required"], json!(["image", "upscale_method", "width", "height", "crop"]));
        assert_eq!(scale["input"]["required"]["upscale_method"], methods);
        assert_eq!(
            scale["input"]["required"]["width"],
            json!(["INT", {"default": 512, "min": 0, "max": 2048, "step": 1}])
        );
        assert_eq!(scale["input"]["required"]["crop"], json!([["disabled", "center"]]));
        assert_eq!((&scale["output"], &scale["category"]), (&json!(["IMAGE"]), &json!("image/upscaling")));
        let by = object_info(&spec("ImageScaleBy", &ctx()).expect("ImageScaleBy"));
        assert_eq!(by["input"]["required"]["scale_by"][1]["min"], 0.01);
        assert_eq!(by["input"]["required"]["scale_by"][1]["max"], 8.0);
        let total = object_info(&spec("ImageScaleToTotalPixels", &ctx()).expect("ImageScaleToTotalPixels"));
        assert_eq!(
            total["input_order"]["required"],
            json!(["image", "upscale_method", "megapixels", "resolution_steps"])
        );
        assert_eq!(total["input"]["required"]["megapixels"][1]["max"], 16.0);
        assert_eq!(total["python_module"], "comfy_extras.nodes_post_processing");
        assert!(is_optional("ImageScaleToTotalPixels", "resolution_steps"));
    }
}

//! A checked graph → one job. reelbox runs one sampling chain per prompt, checkpoint →
//! prompts → (empty latent | uploaded image → VAEEncode) → KSampler (or KSamplerAdvanced,
//! read alike by `ksampler`) → VAEDecode → SaveImage/PreviewImage, as an `image` job, whose pictures a second KSampler may sample
//! again, scaled (the hires fix, its `refine` stage, `hires`), an ImageUpscaleWithModel may
//! take (its `upscale` stage) and a scale node (ImageScale, ImageScaleBy,
//! ImageScaleToTotalPixels) resize last (its `resize` stage); or an uploaded picture's
//! upscale or resize, LoadImage → (ImageUpscaleWithModel, a scale node, either or both in
//! either order) → outputs, as an `upscale` job. Which pictures each output shows is
//! `chain`'s; anything else is refused at the node that breaks it.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::chain::{follow, is_scale, main_chain, same_checkpoint, unsupported};
use super::files::uploaded;
pub use super::files::{Upload, UploadLookup};
use super::ksampler::{STEPS_RUN, SamplerSettings};
use super::literals::{int_value, resize_request, text, wire};
use super::nodes::UPSCALE;
pub use super::roles::{Masking, NodeRef, OutputNode, Refining, Roles, Sampling, Scaling, Upscaling};
use super::validate::{PromptError, ValidGraph, error_obj};
use crate::kinds::TypedKind;
use crate::kinds::image::{Image, ImageRequest, MAX_SEED};
use crate::kinds::upscale::{Upscale, UpscaleRequest};
use crate::store::records::StageName;

/// A compiled prompt: the job to submit (its kind and its request, serialised for
/// submission) and the node roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub kind: &'static str,
    pub params: Value,
    pub roles: Roles,
    /// A mask worked out from the mask nodes (a grey PNG): kept as an upload, it is `mask`.
    pub mask: Option<Vec<u8>>,
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

/// A ComfyUI seed (up to 2^64 − 1) as an `image` seed (up to 2^53 − 1, what JSON numbers
/// carry exactly): the low 53 bits, so equal seeds still give equal pictures.
pub fn fold_seed(seed: i128) -> u64 {
    (u64::try_from(seed).unwrap_or(0)) & (MAX_SEED as u64)
}

/// Turns a checked graph into the job it runs: an `image` job for a sampling chain (its
/// pictures upscaled in a second stage when an ImageUpscaleWithModel takes them, resized in
/// a last one when a scale node does), an `upscale` job for an uploaded picture's upscale or
/// resize (or both, in either order).
pub fn compile(g: &ValidGraph, uploads: UploadLookup) -> Result<Compiled, PromptError> {
    let (chain, shown) = main_chain(g)?;
    let mut roles = Roles::default();
    // Pictures straight from the last VAEDecode are the second pass's when the prompt has one.
    let refined = chain_is_second_pass(g, &chain.source)?;
    // The first pass's VAEDecode an output shows, in the latent form (the pixel form's is its own).
    let first_decode = shown.iter().find(|s| s.first_pass).map(|s| s.source.clone());
    for super::chain::Shown { out: out_id, last, first_pass, .. } in shown {
        let out = &g.nodes[&out_id];
        let stage = match last.as_deref().map(|id| g.nodes[id].class_type.as_str()) {
            None if first_pass || !refined => StageName::Generate,
            None => StageName::Refine,
            Some(UPSCALE) => StageName::Upscale,
            Some(_) => StageName::Resize,
        };
        let folder = if out.class_type == "SaveImage" { "output" } else { "temp" };
        let prefix = if out.class_type == "SaveImage" { text(out, "filename_prefix") } else { "ComfyUI_temp".into() };
        roles.outputs.push(OutputNode {
            id: out_id.clone(),
            class_type: out.class_type.clone(),
            folder: folder.into(),
            filename_prefix: if prefix.is_empty() { "ComfyUI".into() } else { prefix },
            stage: Some(stage),
        });
    }
    let upload = (g.nodes[&chain.source].class_type == "LoadImage").then(|| chain.source.clone());
    let upscale_at = chain.steps.iter().position(|id| g.nodes[id].class_type == UPSCALE);
    let scale_at = chain.steps.iter().position(|id| is_scale(&g.nodes[id].class_type));
    let resize_first = matches!((scale_at, upscale_at), (Some(s), Some(u)) if s < u);
    if let (true, None, Some(u)) = (resize_first, &upload, upscale_at) {
        let up = &chain.steps[u];
        let why = format!(
            "reelbox resizes a sampled picture after its upscale, not before; link node {up}'s image to the \
             VAEDecode (node {}) and scale the upscale's pictures",
            chain.source
        );
        return Err(unsupported(up, &g.nodes[up], why));
    }
    // The node that takes the upload first names it in the roles.
    let first_on_upload = |i: usize| upload.clone().filter(|_| i == 0);
    let mut upscale_model = None;
    if let Some(i) = upscale_at {
        let up_id = chain.steps[i].clone();
        let (loader_id, loader) = follow(g, &up_id, "upscale_model", &["UpscaleModelLoader"], 0)?;
        // The checked graph names the model itself (the file name a client sent is mapped).
        upscale_model = Some(text(loader, "model_name"));
        roles.upscale = Some(Upscaling { loader: loader_id, node: up_id, load_image: first_on_upload(i) });
    }
    let resize = scale_at.map(|i| {
        let node = &g.nodes[&chain.steps[i]];
        roles.scaling = Some(Scaling {
            node: chain.steps[i].clone(),
            class_type: node.class_type.clone(),
            load_image: first_on_upload(i),
            before_upscale: resize_first,
        });
        resize_request(node)
    });
    if let Some(load_id) = &upload {
        let input = uploaded(g, load_id, uploads)?.id;
        let params = UpscaleRequest {
            input: Some(input),
            model: upscale_model,
            resize,
            resize_first: resize_first.then_some(true),
            ..UpscaleRequest::default()
        };
        return Ok(Compiled { kind: Upscale::NAME, params: wire_params(&params)?, roles, mask: None });
    }
    let (sampler_id, _) = follow(g, &chain.source, "samples", &super::ksampler::CLASS_TYPES, 0)?;
    let (mut params, sampling, mask) = match super::hires::first_pass_of(g, &sampler_id)? {
        None => sampling_chain(g, Some(chain.source.clone()), sampler_id, uploads)?,
        Some(first) => {
            let decode = first.decode.clone().or(first_decode);
            let (mut params, sampling, mask) = sampling_chain(g, decode, first.sampler.clone(), uploads)?;
            super::inpaint::one_pass(g, &sampling, &sampler_id)?;
            let size = params.width.zip(params.height);
            let (refine, refining) = super::hires::second_pass(g, &sampler_id, &chain.source, first, &sampling, size)?;
            params.refine = Some(refine);
            roles.refine = Some(refining);
            (params, sampling, mask)
        }
    };
    params.upscale_model = upscale_model;
    params.resize = resize;
    roles.sampling = Some(sampling);
    Ok(Compiled { kind: Image::NAME, params: wire_params(&params)?, roles, mask })
}

/// Whether the VAEDecode `source` of the chain a prompt runs decodes a second pass.
fn chain_is_second_pass(g: &ValidGraph, source: &str) -> Result<bool, PromptError> {
    if g.nodes[source].class_type != "VAEDecode" {
        return Ok(false);
    }
    let (sampler, _) = follow(g, source, "samples", &super::ksampler::CLASS_TYPES, 0)?;
    Ok(super::hires::first_pass_of(g, &sampler)?.is_some())
}

/// A typed request as the JSON submission takes: serialised here, at its edge.
fn wire_params(request: &impl Serialize) -> Result<Value, PromptError> {
    serde_json::to_value(request).map_err(|e| {
        PromptError::top("prompt_outputs_failed_validation", "Prompt outputs failed validation", &e.to_string())
    })
}

/// The `image` request of the sampling chain that ends in `decode_id` after `sampler_id`
/// (none: its latents go on to a second pass), and the mask it works out, if any.
fn sampling_chain(
    g: &ValidGraph,
    decode_id: Option<String>,
    sampler_id: String,
    uploads: UploadLookup,
) -> Result<(ImageRequest, Sampling, Option<Vec<u8>>), PromptError> {
    let (ckpt_id, ckpt, _) = super::loras::checkpoint_of(g, &sampler_id, "model", 0)?;
    let ckpt_name = text(ckpt, "ckpt_name");
    let same_checkpoint =
        |id: &str, input: &str, slot: usize| same_checkpoint(g, (&ckpt_id, &ckpt_name), id, input, slot);
    if let Some(decode_id) = &decode_id {
        same_checkpoint(decode_id, "vae", 2)?;
    }
    let (pos_id, pos) = follow(g, &sampler_id, "positive", &["CLIPTextEncode"], 0)?;
    let (neg_id, neg) = follow(g, &sampler_id, "negative", &["CLIPTextEncode"], 0)?;
    same_checkpoint(&pos_id, "clip", 1)?;
    same_checkpoint(&neg_id, "clip", 1)?;
    let clip_skip = super::clip_layer::pass_clip_skip(g, &pos_id, &neg_id)?;

    let settings = SamplerSettings::of(g, &sampler_id)?;
    let mut params = ImageRequest {
        prompt: Some(text(pos, "text")),
        negative_prompt: Some(text(neg, "text")),
        // The checked graph names the model itself (the file name a client sent is mapped).
        model: Some(ckpt_name.clone()),
        steps: Some(settings.steps),
        guidance: Some(settings.cfg),
        scheduler: Some(settings.scheduler.to_string()),
        schedule: settings.schedule.map(String::from),
        seed: Some(settings.seed),
        clip_skip,
        // ComfyUI draws a batch's starting noise from the seed with torch's CPU generator.
        noise: Some("comfyui".to_string()),
        ..ImageRequest::default()
    };
    let starts = ["EmptyLatentImage", "VAEEncode", super::inpaint::NOISE_MASK, super::inpaint::ENCODE_FOR_INPAINT];
    let (latent_id, latent) = follow(g, &sampler_id, "latent_image", &starts, 0)?;
    let (mut load_image, mut mask, mut made) = (None, None, None);
    if latent.class_type == "EmptyLatentImage" {
        // ComfyUI's latents are width // 8 wide: sizes round down to multiples of 8.
        let side = |input: &str| latent.inputs.get(input).and_then(int_value).unwrap_or(512) / 8 * 8;
        params.width = Some(wire(side("width")));
        params.height = Some(wire(side("height")));
        params.n = Some(wire(latent.inputs.get("batch_size").and_then(int_value).unwrap_or(1)));
    } else {
        let (encode_id, mask_node) = super::inpaint::encode_of(g, &latent_id)?;
        same_checkpoint(&encode_id, "vae", 2)?;
        let (load_id, _) = follow(g, &encode_id, "pixels", &["LoadImage"], 0)?;
        let picture = uploaded(g, &load_id, uploads)?;
        params.strength = Some(settings.strength);
        params.steps_mode = Some(STEPS_RUN.to_string());
        if let Some(node_id) = mask_node {
            let (picked, grow, masking) =
                super::inpaint::mask_of(g, (&node_id, &encode_id), (&picture, &load_id), uploads)?;
            ((params.mask, made), params.mask_grow, mask) = (picked.split(), grow, Some(masking));
        }
        params.init_image = Some(picture.id);
        load_image = Some(load_id);
    }
    let sampling = Sampling {
        checkpoint: ckpt_id,
        loras: Vec::new(),
        positive: pos_id,
        negative: neg_id,
        latent: latent_id,
        load_image,
        mask,
        sampler: sampler_id,
        advanced: settings.advanced,
        decode: decode_id,
    };
    Ok((params, sampling, made))
}

#[cfg(test)]
mod tests {
    use super::super::files::UploadNotFound;
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use super::*;

    fn no_uploads(_name: &str) -> Result<Upload, UploadNotFound> {
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
        assert_eq!(c.roles.source_of("width"), Some(("5".to_string(), "width")));
        assert_eq!(c.kind, "image");
    }

    #[test]
    fn image_to_image_takes_the_upload_and_denoise_as_strength() {
        let mut g = default_workflow();
        g["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "cat_01J0000000000000000000000.png"}});
        g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
        g["3"]["inputs"]["latent_image"] = json!(["11", 0]);
        g["3"]["inputs"]["denoise"] = json!(0.6);
        g.as_object_mut().expect("graph").remove("5");
        let found = |name: &str| Ok::<_, UploadNotFound>(Upload { id: format!("id-of-{name}"), path: name.into() });
        let c = compile(&checked(g.clone()), &found).expect("compiles");
        assert_eq!(c.params["init_image"], "id-of-cat_01J0000000000000000000000.png");
        assert_eq!(c.params["strength"], 0.6);
        assert_eq!(c.params["steps_mode"], "run", "its steps all run, as ComfyUI's KSampler runs them");
        assert_eq!(c.roles.source_of("steps_mode"), Some(("3".into(), "denoise")));
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

    /// An upscale of the default workflow's picture, saved beside the picture itself.
    fn upscaled_workflow() -> Value {
        let mut g = default_workflow();
        g["10"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}});
        g["11"] =
            json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["10", 0], "image": ["8", 0]}});
        g["12"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "up", "images": ["11", 0]}});
        g
    }

    #[test]
    fn an_upscale_of_the_samplers_picture_is_the_image_jobs_second_stage() {
        let c = compile(&checked(upscaled_workflow()), &no_uploads).expect("compiles");
        assert_eq!((c.kind, &c.params["upscale_model"]), ("image", &json!("4x-UltraSharp")));
        assert_eq!(c.roles.upscale, Some(Upscaling { loader: "10".into(), node: "11".into(), load_image: None }));
        let stages: Vec<_> = c.roles.outputs.iter().map(|o| (o.id.as_str(), o.stage)).collect();
        assert_eq!(stages, [("12", Some(StageName::Upscale)), ("9", Some(StageName::Generate))]);
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "11", "12"]);
    }

    #[test]
    fn an_uploads_upscale_alone_is_an_upscale_job() {
        let g = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
            "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp"}},
            "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}
        });
        let found = |name: &str| Ok::<_, UploadNotFound>(Upload { id: format!("id-of-{name}"), path: name.into() });
        let c = compile(&validate(&g, &ctx()).expect("valid"), &found).expect("compiles");
        assert_eq!(c.kind, "upscale");
        assert_eq!((&c.params["input"], &c.params["model"]), (&json!("id-of-cat.png"), &json!("4x-UltraSharp")));
        assert_eq!(c.roles.sampling, None);
        assert_eq!(c.roles.execution_order(), ["1", "2", "3", "4"]);
        let err = compile(&validate(&g, &ctx()).expect("valid"), &no_uploads).expect_err("no such upload");
        assert_eq!(err.node_errors["1"]["errors"][0]["type"], "custom_validation_failed");
    }

    #[test]
    fn an_uploads_upscale_beside_a_sampler_and_two_upscales_are_refused_at_an_output() {
        let mut g = upscaled_workflow();
        g["13"] = json!({"class_type": "LoadImage", "inputs": {"image": "cat.png"}});
        g["11"]["inputs"]["image"] = json!(["13", 0]);
        let err = compile(&checked(g), &no_uploads).expect_err("two chains");
        assert_eq!(err.node_errors["9"]["errors"][0]["type"], "unsupported_graph");
        let mut g = upscaled_workflow();
        g["14"] = g["11"].clone();
        g["15"] = json!({"class_type": "PreviewImage", "inputs": {"images": ["14", 0]}});
        let err = compile(&checked(g), &no_uploads).expect_err("two upscales");
        assert_eq!(err.node_errors["15"]["errors"][0]["type"], "unsupported_graph", "{:?}", err.node_errors);
    }

    fn scale_by(image: Value) -> Value {
        json!({"class_type": "ImageScaleBy", "inputs": {"image": image, "upscale_method": "area", "scale_by": 0.5}})
    }

    #[test]
    fn a_scale_of_the_upscale_is_the_image_jobs_last_stage() {
        let mut g = upscaled_workflow();
        g["13"] = scale_by(json!(["11", 0]));
        g["14"] = json!({"class_type": "PreviewImage", "inputs": {"images": ["13", 0]}});
        let c = compile(&checked(g), &no_uploads).expect("compiles");
        assert_eq!(c.kind, "image");
        assert_eq!(c.params["resize"], json!({"method": "area", "scale_by": 0.5}));
        let stages: Vec<_> = c.roles.outputs.iter().map(|o| (o.id.as_str(), o.stage)).collect();
        assert_eq!(
            stages,
            [("12", Some(StageName::Upscale)), ("14", Some(StageName::Resize)), ("9", Some(StageName::Generate))]
        );
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "11", "12", "13", "14"]);
        assert_eq!(c.roles.source_of("resize.scale_by"), Some(("13".into(), "scale_by")));
    }

    #[test]
    fn a_scale_of_the_decode_takes_the_samplers_pictures() {
        let mut g = default_workflow();
        g["10"] = json!({"class_type": "ImageScale", "inputs": {"image": ["8", 0], "upscale_method": "nearest-exact",
            "width": 0, "height": 1024, "crop": "disabled"}});
        g["9"]["inputs"]["images"] = json!(["10", 0]);
        let c = compile(&checked(g), &no_uploads).expect("compiles");
        assert_eq!(
            c.params["resize"],
            json!({"method": "nearest-exact", "width": 0, "height": 1024, "crop": "disabled"})
        );
        assert!(c.params.get("upscale_model").is_none());
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "8", "10", "9"]);
    }

    fn upload_workflow(steps: &[(&str, Value)], out_from: &str) -> Value {
        let mut g = json!({
            "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
            "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp"}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": [out_from, 0]}}
        });
        for (id, node) in steps {
            g[*id] = node.clone();
        }
        g
    }

    #[test]
    fn an_uploads_scale_alone_before_or_after_its_upscale_is_an_upscale_job() {
        let found = |name: &str| Ok::<_, UploadNotFound>(Upload { id: format!("id-of-{name}"), path: name.into() });
        let up = |image: &str| json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": [image, 0]}});
        let alone = upload_workflow(&[("3", scale_by(json!(["1", 0])))], "3");
        let c = compile(&validate(&alone, &ctx()).expect("valid"), &found).expect("compiles");
        assert_eq!((c.kind, &c.params["input"]), ("upscale", &json!("id-of-cat.png")));
        assert!(c.params["model"].is_null(), "a resize alone runs no model: {}", c.params);
        assert_eq!(c.roles.execution_order(), ["1", "3", "9"]);

        let first = upload_workflow(&[("3", scale_by(json!(["1", 0]))), ("4", up("3"))], "4");
        let c = compile(&validate(&first, &ctx()).expect("valid"), &found).expect("compiles");
        assert_eq!((&c.params["model"], &c.params["resize_first"]), (&json!("4x-UltraSharp"), &json!(true)));
        assert_eq!(c.roles.execution_order(), ["1", "3", "2", "4", "9"]);

        let after = upload_workflow(&[("4", up("1")), ("3", scale_by(json!(["4", 0])))], "3");
        let c = compile(&validate(&after, &ctx()).expect("valid"), &found).expect("compiles");
        assert!(c.params.get("resize_first").is_none(), "{}", c.params);
        assert_eq!(c.roles.execution_order(), ["1", "2", "4", "3", "9"]);
    }

    #[test]
    fn two_scales_and_a_sampled_pictures_scale_before_its_upscale_are_refused() {
        let mut g = default_workflow();
        g["10"] = scale_by(json!(["8", 0]));
        g["11"] = scale_by(json!(["10", 0]));
        g["9"]["inputs"]["images"] = json!(["11", 0]);
        let err = compile(&checked(g), &no_uploads).expect_err("two scales");
        assert_eq!(err.node_errors["11"]["errors"][0]["type"], "unsupported_graph", "{:?}", err.node_errors);

        let mut g = upscaled_workflow();
        g["13"] = scale_by(json!(["8", 0]));
        g["11"]["inputs"]["image"] = json!(["13", 0]);
        let err = compile(&checked(g), &no_uploads).expect_err("scale before upscale");
        assert_eq!(err.node_errors["11"]["errors"][0]["type"], "unsupported_graph", "{:?}", err.node_errors);
    }
}

//! The hires fix's graphs: a second KSampler that samples the first one's pictures again,
//! scaled, at partial denoise. The pixel form, KSampler → VAEDecode → (ImageUpscaleWithModel,
//! a scale node, either or both in that order) → VAEEncode → KSampler, and the latent form, KSampler → LatentUpscale | LatentUpscaleBy →
//! KSampler (or a KSampler straight on), both become the `image` job's `refine` stage
//! (`kinds::image::RefineRequest`). The latent form (and a KSampler straight on a KSampler)
//! starts the second pass from the first one's latent, scaled as ComfyUI scales it
//! (`refine.from: latent`); the pixel form from its pictures, scaled and encoded again.

use super::chain::{follow, same_checkpoint, unsupported};
use super::ksampler::{ADVANCED, KSAMPLER, STEPS_RUN, SamplerSettings};
use super::literals::{float_value, int_value, resize_request, text, wire};
use super::nodes::{LATENT_SCALES, SCALES, UPSCALE};
use super::roles::{NodeRef, Refining, Sampling, Upscaling};
use super::validate::{Node, PromptError, ValidGraph};
use crate::kinds::image::RefineRequest;
use crate::kinds::resize::ResizeRequest;

/// Where a second pass's sampler takes its start from: the first pass's sampler.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FirstPass {
    /// The first KSampler.
    pub sampler: String,
    /// Its VAEDecode, in the pixel form.
    pub decode: Option<String>,
    /// The nodes between the passes, in the order they run.
    between: Vec<String>,
    /// The scale node among them.
    scale: Option<String>,
    /// The ImageUpscaleWithModel among them.
    upscale: Option<String>,
}

/// What a sampler's `latent_image` may come from.
const LATENT_TAKES: [&str; 8] = [
    "EmptyLatentImage",
    "VAEEncode",
    KSAMPLER,
    ADVANCED,
    LATENT_SCALES[0],
    LATENT_SCALES[1],
    super::inpaint::NOISE_MASK,
    super::inpaint::ENCODE_FOR_INPAINT,
];
/// What a VAEEncode's `pixels` may come from.
const PIXELS_TAKES: [&str; 6] = ["LoadImage", "VAEDecode", SCALES[0], SCALES[1], SCALES[2], UPSCALE];

/// The first pass KSampler `sampler_id` samples again, when it is a second pass (`None`: it
/// starts from an empty latent or an uploaded picture); a link between them reelbox cannot
/// follow is refused at the node whose input it is, and a third pass at its KSampler.
pub(super) fn first_pass_of(g: &ValidGraph, sampler_id: &str) -> Result<Option<FirstPass>, PromptError> {
    let Some(first) = linked_pass(g, sampler_id)? else { return Ok(None) };
    if linked_pass(g, &first.sampler)?.is_some() {
        let why = format!(
            "reelbox runs two sampling passes at most, a first and a hires fix; this KSampler samples node {}'s \
             pictures again, themselves a second pass's",
            first.sampler
        );
        return Err(unsupported(sampler_id, &g.nodes[sampler_id], why));
    }
    Ok(Some(first))
}

/// The sampler whose result KSampler `sampler_id` starts from, if any ([`first_pass_of`]
/// without the count of passes).
fn linked_pass(g: &ValidGraph, sampler_id: &str) -> Result<Option<FirstPass>, PromptError> {
    let (latent_id, latent) = follow(g, sampler_id, "latent_image", &LATENT_TAKES, 0)?;
    let class = latent.class_type.as_str();
    if super::ksampler::CLASS_TYPES.contains(&class) {
        return Ok(Some(FirstPass { sampler: latent_id, decode: None, between: vec![], scale: None, upscale: None }));
    }
    if LATENT_SCALES.contains(&class) {
        let (sampler, _) = follow(g, &latent_id, "samples", &super::ksampler::CLASS_TYPES, 0)?;
        let between = vec![latent_id.clone()];
        return Ok(Some(FirstPass { sampler, decode: None, between, scale: Some(latent_id), upscale: None }));
    }
    if class != "VAEEncode" {
        return Ok(None);
    }
    let mut between = vec![latent_id.clone()];
    let (mut scale, mut upscale): (Option<String>, Option<String>) = (None, None);
    let (mut at, mut input) = (latent_id, "pixels");
    loop {
        let (id, node) = follow(g, &at, input, &PIXELS_TAKES, 0)?;
        match node.class_type.as_str() {
            // An upload's image to image (a scaled upload is refused as the sampling chain's).
            "LoadImage" => return Ok(None),
            "VAEDecode" => {
                let (sampler, _) = follow(g, &id, "samples", &super::ksampler::CLASS_TYPES, 0)?;
                between.reverse();
                return Ok(Some(FirstPass { sampler, decode: Some(id), between, scale, upscale }));
            }
            UPSCALE => {
                if let Some(other) = &upscale {
                    let why = format!(
                        "reelbox upscales a first pass's pictures once; these pass node {id}, then node {other}"
                    );
                    return Err(unsupported(other, &g.nodes[other], why));
                }
                upscale = Some(id.clone());
                between.push(id.clone());
                (at, input) = (id, "image");
            }
            _ => {
                // Met walking back: a scale before the model's upscale, which reelbox does not do.
                if let Some(up) = &upscale {
                    let why = format!(
                        "reelbox's second pass resizes a first pass's pictures after their upscale, not before; \
                         link node {up}'s image to the VAEDecode and scale its pictures"
                    );
                    return Err(unsupported(up, &g.nodes[up], why));
                }
                if let Some(other) = &scale {
                    let why = format!(
                        "reelbox scales a first pass's pictures with one node; these pass node {id}, then node {other}"
                    );
                    return Err(unsupported(other, &g.nodes[other], why));
                }
                scale = Some(id.clone());
                between.push(id.clone());
                (at, input) = (id, "image");
            }
        }
    }
}

/// The `refine` request and the nodes of second-pass KSampler `sampler_id`, whose pictures
/// VAEDecode `decode_id` makes, after `first` (whose chain is `sampling`, its pictures
/// `size` when the graph gives it). It samples with the checkpoint its KSampler's model comes
/// from: the first pass's, or another (A1111's hires checkpoint, `refine.model`), whose CLIP
/// its prompts, whose VAE its VAEEncode and VAEDecode then take too.
pub(super) fn second_pass(
    g: &ValidGraph,
    sampler_id: &str,
    decode_id: &str,
    first: FirstPass,
    sampling: &Sampling,
    size: Option<(i64, i64)>,
) -> Result<(RefineRequest, Refining), PromptError> {
    let first_name = text(&g.nodes[&sampling.checkpoint], "ckpt_name");
    let (own_id, own, _) = super::loras::checkpoint_of(g, sampler_id, "model", 0)?;
    let own_name = text(own, "ckpt_name");
    let other = own_id != sampling.checkpoint && own_name != first_name;
    let checkpoint =
        if other { (own_id.as_str(), own_name.as_str()) } else { (sampling.checkpoint.as_str(), first_name.as_str()) };
    let (pos_id, pos) = follow(g, sampler_id, "positive", &["CLIPTextEncode"], 0)?;
    let (neg_id, neg) = follow(g, sampler_id, "negative", &["CLIPTextEncode"], 0)?;
    for (input, id, first_pass) in
        [("positive", &pos_id, &sampling.positive), ("negative", &neg_id, &sampling.negative)]
    {
        // The first pass's prompt, encoded by its checkpoint's CLIP, conditions no other UNet.
        if other && id == first_pass {
            let why = format!(
                "this KSampler samples with node {own_id}'s checkpoint ({own_name}), and its {input} is the first \
                 pass's prompt (node {id}), encoded with node {}'s CLIP: reelbox runs each pass on one \
                 checkpoint's text encoder, UNet and VAE; encode this pass's {input} with node {own_id}'s CLIP",
                sampling.checkpoint
            );
            return Err(unsupported(sampler_id, &g.nodes[sampler_id], why));
        }
        same_checkpoint(g, checkpoint, id, "clip", 1)?;
    }
    super::clip_layer::second_pass_at_first(g, sampler_id, (&pos_id, &neg_id), sampling)?;
    same_checkpoint(g, checkpoint, decode_id, "vae", 2)?;
    for id in first.between.iter().filter(|id| g.nodes[*id].class_type == "VAEEncode") {
        same_checkpoint(g, checkpoint, id, "vae", 2)?;
    }
    let settings = SamplerSettings::of(g, sampler_id)?;
    let mut between = first.between;
    let upscale = match &first.upscale {
        None => None,
        Some(node) => {
            let (loader, loader_node) = follow(g, node, "upscale_model", &["UpscaleModelLoader"], 0)?;
            // The loader runs just before its upscale.
            let at = between.iter().position(|id| id == node).unwrap_or(0);
            between.insert(at, loader.clone());
            // The checked graph names the model itself (the file name a client sent is mapped).
            Some((Upscaling { loader, node: node.clone(), load_image: None }, text(loader_node, "model_name")))
        }
    };
    let resize = first.scale.as_ref().and_then(|id| {
        let node = &g.nodes[id];
        if LATENT_SCALES.contains(&node.class_type.as_str()) {
            latent_resize(node, size)
        } else {
            Some(resize_request(node))
        }
    });
    // A split's second half goes on over its own schedule from the first's stop, as it is.
    let (switch_at_step, strength, steps, steps_mode) = match settings.goes_on {
        Some((start, schedule)) => (Some(start), None, Some(schedule), None),
        None => (None, Some(settings.strength), Some(settings.steps), Some(STEPS_RUN.to_string())),
    };
    let refine = RefineRequest {
        // No picture between the passes: ComfyUI's LATENT goes on, scaled or not.
        from: first.decode.is_none().then(|| "latent".to_string()),
        switch_at_step,
        switch_at: None,
        continues: None,
        // The checked graph names the model itself (the file name a client sent is mapped).
        model: other.then(|| own_name.clone()),
        upscale_model: upscale.as_ref().map(|(_, model)| model.clone()),
        resize,
        strength,
        steps,
        steps_mode,
        seed: Some(settings.seed),
        guidance: Some(settings.cfg),
        scheduler: Some(settings.scheduler.to_string()),
        // Its own `scheduler` input, which may not be the first KSampler's.
        schedule: settings.schedule.map(String::from),
        // Prompts of their own only when other nodes encode them.
        prompt: (pos_id != sampling.positive).then(|| text(pos, "text")),
        negative_prompt: (neg_id != sampling.negative).then(|| text(neg, "text")),
    };
    let scale = first.scale.map(|id| NodeRef { class_type: g.nodes[&id].class_type.clone(), id });
    let refining = Refining {
        checkpoint: other.then_some(own_id),
        between,
        upscale: upscale.map(|(nodes, _)| nodes),
        scale,
        positive: pos_id,
        negative: neg_id,
        sampler: sampler_id.to_string(),
        advanced: settings.advanced,
        decode: decode_id.to_string(),
    };
    Ok((refine, refining))
}

/// The picture resize a latent scale node asks for: the size ComfyUI's scaled latent has, in
/// whole latent cells of 8 pixels, worked out from the first pass's `size` when the graph
/// gives it (an EmptyLatentImage's); without it, the picture scale nodes' rounding, the
/// second pass then cutting each side to a multiple of 8. `None`: LatentUpscale's 0×0 keeps
/// the size.
fn latent_resize(node: &Node, size: Option<(i64, i64)>) -> Option<ResizeRequest> {
    let method = Some(text(node, "upscale_method"));
    // Python's round(), as ComfyUI's nodes use it: halves to even.
    let round = |v: f64| v.round_ties_even() as i64;
    let sized = |width: i64, height: i64, crop: Option<String>| ResizeRequest {
        method: method.clone(),
        width: Some(width),
        height: Some(height),
        crop,
        ..ResizeRequest::default()
    };
    if node.class_type == LATENT_SCALES[1] {
        let by = node.inputs.get("scale_by").and_then(float_value).unwrap_or(1.5);
        return Some(match size {
            Some((w, h)) => sized(round((w / 8) as f64 * by) * 8, round((h / 8) as f64 * by) * 8, None),
            None => ResizeRequest { method, scale_by: Some(by), ..ResizeRequest::default() },
        });
    }
    let side = |input: &str| node.inputs.get(input).and_then(int_value).map_or(512, wire);
    let crop = Some(text(node, "crop"));
    // ComfyUI's LatentUpscale: a 0 side follows the latent's shape, each side at least 64.
    let (w, h) = match (side("width"), side("height"), size) {
        (0, 0, _) => return None,
        (0, h, Some((fw, fh))) => (round((fw / 8) as f64 * h.max(64) as f64 / (fh / 8) as f64).max(64), h.max(64)),
        (w, 0, Some((fw, fh))) => (w.max(64), round((fh / 8) as f64 * w.max(64) as f64 / (fw / 8) as f64).max(64)),
        (w, h, None) if w == 0 || h == 0 => {
            return Some(sized(w.max(64) * i64::from(w > 0), h.max(64) * i64::from(h > 0), crop));
        }
        (w, h, _) => (w.max(64), h.max(64)),
    };
    Some(sized(w / 8 * 8, h / 8 * 8, crop))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::compile::compile;
    use super::super::files::UploadNotFound;
    use super::super::info::node_info as object_info;
    use super::super::nodes::spec;
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use crate::store::records::StageName;

    fn no_uploads(_name: &str) -> Result<super::super::compile::Upload, UploadNotFound> {
        Err(UploadNotFound::NoSuchImage)
    }

    /// The default workflow's picture scaled by `scale` (node 10, taking `from`), encoded
    /// (node 11, unless the scale is a latent's) and sampled again by node 12 at denoise
    /// 0.5, decoded by node 13 and saved by node 14; node 9 still saves the first pass's.
    fn hires(scale: Value, latent: bool) -> Value {
        let mut g = default_workflow();
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        g["10"] = scale;
        let start = if latent {
            "10"
        } else {
            g["11"] = json!({"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}});
            "11"
        };
        let mut second = g["3"].clone();
        second["inputs"]["latent_image"] = json!([start, 0]);
        second["inputs"]["denoise"] = json!(0.5);
        second["inputs"]["seed"] = json!(7);
        g["12"] = second;
        g["13"] = json!({"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}});
        g["14"] = json!({"class_type": "SaveImage", "inputs": {"filename_prefix": "hires", "images": ["13", 0]}});
        g
    }

    fn compiled(g: &Value) -> super::super::compile::Compiled {
        compile(&validate(g, &ctx()).expect("valid"), &no_uploads).expect("compiles")
    }

    #[test]
    fn the_pixel_form_is_one_image_job_with_a_refine_stage() {
        let scale = json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0], "upscale_method": "bicubic", "scale_by": 1.5}});
        let c = compiled(&hires(scale, false));
        assert_eq!(c.kind, "image");
        assert_eq!(
            c.params["refine"],
            json!({"resize": {"method": "bicubic", "scale_by": 1.5}, "strength": 0.5, "steps": 20, "steps_mode": "run",
                "seed": 7, "guidance": 8.0, "scheduler": "euler", "schedule": "normal"}),
            "all 20 steps run, as ComfyUI's second KSampler runs them, over its own schedule"
        );
        let stages: Vec<_> = c.roles.outputs.iter().map(|o| (o.id.as_str(), o.stage)).collect();
        assert_eq!(stages, [("14", Some(StageName::Refine)), ("9", Some(StageName::Generate))]);
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "11", "12", "13", "14"]);
        assert_eq!(c.roles.source_of("refine.strength"), Some(("12".into(), "denoise")));
        assert_eq!(c.roles.source_of("refine.steps_mode"), Some(("12".into(), "denoise")));
        assert_eq!(c.roles.source_of("refine.resize.scale_by"), Some(("10".into(), "scale_by")));
        assert_eq!(c.roles.source_of("refine.schedule"), Some(("12".into(), "scheduler")));
        assert_eq!(c.roles.source_of("steps"), Some(("3".into(), "steps")));
    }

    #[test]
    fn the_latent_form_scales_as_comfyuis_latents_do() {
        let by = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.3}});
        let mut g = hires(by, true);
        g["5"]["inputs"]["width"] = json!(72);
        let c = compiled(&g);
        // Latents of 9×64: round(11.7) = 12 → 96, round(83.2) = 83 → 664.
        assert_eq!(c.params["refine"]["resize"], json!({"method": "nearest-exact", "width": 96, "height": 664}));
        assert_eq!(c.params["refine"]["from"], "latent", "ComfyUI's LATENT goes on: {}", c.params);
        assert_eq!(c.roles.source_of("refine.resize.width"), Some(("10".into(), "scale_by")));
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "12", "13", "14"]);

        let to = |w: i64, h: i64| {
            json!({"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0],
            "upscale_method": "bilinear", "width": w, "height": h, "crop": "center"}})
        };
        let resize_of = |g: Value| compiled(&g).params["refine"]["resize"].clone();
        assert_eq!(
            resize_of(hires(to(100, 20), true)),
            json!({"method": "bilinear", "width": 96, "height": 64, "crop": "center"})
        );
        // 0 follows the shape: round(64 × 1000 / 64) = 1000 → 1000.
        assert_eq!(resize_of(hires(to(0, 1000), true))["width"], 1000);
        assert_eq!(resize_of(hires(to(0, 0), true)), Value::Null, "0×0 keeps the size");
        // Only the first decode's output shows the first pass's pictures.
        let mut g = hires(to(0, 0), true);
        g.as_object_mut().expect("graph").remove("9");
        let c = compiled(&g);
        assert_eq!(c.roles.sampling.as_ref().and_then(|s| s.decode.clone()), None);
        assert_eq!(c.roles.execution_order(), ["4", "6", "7", "5", "3", "10", "12", "13", "14"]);
    }

    #[test]
    fn a_second_pass_with_its_own_prompt_and_no_scale_samples_the_same_size() {
        let mut g =
            hires(json!({"class_type": "CLIPTextEncode", "inputs": {"text": "sharper", "clip": ["4", 1]}}), true);
        g["12"]["inputs"]["latent_image"] = json!(["3", 0]);
        g["12"]["inputs"]["positive"] = json!(["10", 0]);
        let c = compiled(&g);
        assert_eq!(c.params["refine"]["prompt"], "sharper");
        assert_eq!(c.params["refine"]["from"], "latent", "a KSampler straight on one starts from its latent");
        assert!(c.params["refine"].get("resize").is_none() && c.params["refine"].get("negative_prompt").is_none());
        assert_eq!(c.roles.source_of("refine.prompt"), Some(("10".into(), "text")));
    }

    #[test]
    fn a_second_pass_on_its_own_checkpoint_is_the_refines_model_with_its_loader_in_order() {
        let by = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "area", "scale_by": 1.5}});
        let mut g = hires(by, true);
        g["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd-2.safetensors"}});
        g["21"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": "sharper", "clip": ["20", 1]}});
        g["22"] = json!({"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["20", 1]}});
        g["12"]["inputs"]["model"] = json!(["20", 0]);
        (g["12"]["inputs"]["positive"], g["12"]["inputs"]["negative"]) = (json!(["21", 0]), json!(["22", 0]));
        g["13"]["inputs"]["vae"] = json!(["20", 2]);
        let mut c = ctx();
        c.checkpoints.push("tiny-sd-2".into());
        let compiled = compile(&validate(&g, &c).expect("valid"), &no_uploads).expect("compiles");
        assert_eq!(
            (&compiled.params["model"], &compiled.params["refine"]["model"]),
            (&json!("tiny-sd"), &json!("tiny-sd-2"))
        );
        assert_eq!(compiled.roles.source_of("refine.model"), Some(("20".into(), "ckpt_name")));
        assert_eq!(
            compiled.roles.execution_order(),
            ["4", "6", "7", "5", "3", "8", "9", "20", "10", "21", "22", "12", "13", "14"]
        );
        // A second loader of the first's checkpoint is the first's model.
        g["20"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        let compiled = compile(&validate(&g, &c).expect("valid"), &no_uploads).expect("compiles");
        assert!(compiled.params["refine"].get("model").is_none(), "{}", compiled.params);
    }

    #[test]
    fn three_passes_mixed_checkpoints_and_a_scale_before_a_model_upscale_are_refused_at_their_node() {
        let by = json!({"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "area", "scale_by": 1.5}});
        let refused = |g: Value, node: &str| {
            let err = compile(&validate(&g, &ctx()).expect("valid"), &no_uploads).expect_err("refused");
            assert_eq!(err.node_errors[node]["errors"][0]["type"], "unsupported_graph", "{:?}", err.node_errors);
        };
        let mut three = hires(by.clone(), true);
        three["15"] = three["12"].clone();
        three["15"]["inputs"]["latent_image"] = json!(["12", 0]);
        three["13"]["inputs"]["samples"] = json!(["15", 0]);
        refused(three, "15");
        let mut other = hires(by, true);
        other["20"] = json!({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd-2.safetensors"}});
        other["12"]["inputs"]["model"] = json!(["20", 0]);
        let mut c = ctx();
        c.checkpoints.push("tiny-sd-2".into());
        // Its prompts the first pass's, encoded by the first checkpoint's CLIP.
        let err = compile(&validate(&other, &c).expect("valid"), &no_uploads).expect_err("two models");
        assert_eq!(err.node_errors["12"]["errors"][0]["type"], "unsupported_graph", "{:?}", err.node_errors);
        // A scale before the model's upscale, between the passes.
        let mut first = hires(
            json!({"class_type": "ImageScaleBy", "inputs": {"image": ["8", 0],
            "upscale_method": "area", "scale_by": 0.5}}),
            false,
        );
        first["15"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp"}});
        first["16"] =
            json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["15", 0], "image": ["10", 0]}});
        first["11"]["inputs"]["pixels"] = json!(["16", 0]);
        refused(first, "16");
    }

    #[test]
    fn a_model_upscale_between_the_passes_is_the_second_passs_then_its_scale() {
        let mut g = hires(
            json!({"class_type": "ImageScaleBy", "inputs": {"image": ["16", 0],
            "upscale_method": "area", "scale_by": 0.5}}),
            false,
        );
        g["15"] = json!({"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp"}});
        g["16"] =
            json!({"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["15", 0], "image": ["8", 0]}});
        let c = compiled(&g);
        assert_eq!(c.params["refine"]["upscale_model"], "4x-UltraSharp");
        assert_eq!(c.params["refine"]["resize"], json!({"method": "area", "scale_by": 0.5}));
        assert!(c.params.get("upscale_model").is_none(), "not the job's last upscale: {}", c.params);
        assert_eq!(c.roles.source_of("refine.upscale_model"), Some(("15".into(), "model_name")));
        assert_eq!(
            c.roles.execution_order(),
            ["4", "6", "7", "5", "3", "8", "9", "15", "16", "10", "11", "12", "13", "14"]
        );
    }

    #[test]
    fn the_latent_scale_nodes_have_comfyuis_shapes() {
        let up = object_info(&spec("LatentUpscale", &ctx()).expect("LatentUpscale"));
        assert_eq!(up["input_order"]["required"], json!(["samples", "upscale_method", "width", "height", "crop"]));
        assert_eq!(
            up["input"]["required"]["width"],
            json!(["INT", {"default": 512, "min": 0, "max": 2048, "step": 8}])
        );
        assert_eq!(
            up["input"]["required"]["upscale_method"],
            json!([["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]])
        );
        assert_eq!((&up["output"], &up["category"]), (&json!(["LATENT"]), &json!("latent")));
        let by = object_info(&spec("LatentUpscaleBy", &ctx()).expect("LatentUpscaleBy"));
        assert_eq!(by["input_order"]["required"], json!(["samples", "upscale_method", "scale_by"]));
        assert_eq!(
            by["input"]["required"]["scale_by"],
            json!(["FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01, "round": 0.01}])
        );
    }
}

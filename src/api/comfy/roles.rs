//! Which node of a prompt plays which part in its job: the sampling chain of an `image`
//! job, its second pass (the hires fix, its `refine` stage), the upscale after them (a stage of that job) or on its own (an `upscale` job), the
//! resize without a model (a stage of either, before or after the upscale), and the output
//! nodes with the stage whose pictures each shows. Kept with the prompt's
//! record, so messages and history name the right nodes after a restart.

use serde::{Deserialize, Serialize};

use crate::store::records::StageName;

/// An output node and how its pictures are filed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputNode {
    pub id: String,
    pub class_type: String,
    /// `output` (SaveImage) or `temp` (PreviewImage), as ComfyUI files them.
    pub folder: String,
    pub filename_prefix: String,
    /// The stage whose pictures it shows: the sampler's (`generate`) or the upscale's.
    /// `None` in records from before upscales, whose jobs made pictures in one stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<StageName>,
}

/// The nodes of a sampling chain (an `image` job's `generate` stage).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub checkpoint: String,
    /// The LoRA loaders its model and prompts pass, and the CLIPSetLastLayers its prompts
    /// pass, in the order they run (none in records from before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<String>,
    pub positive: String,
    pub negative: String,
    /// EmptyLatentImage, or VAEEncode for image to image.
    pub latent: String,
    pub load_image: Option<String>,
    /// The mask on its latent, for inpainting (none in records from before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<Masking>,
    pub sampler: String,
    /// The sampler is a KSamplerAdvanced (none in records from before it: a KSampler).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advanced: bool,
    /// The VAEDecode of its pictures; `None` when its latents go straight on to a second
    /// pass (the hires fix's latent form), no picture of it shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<String>,
}

/// The nodes of an inpainting's mask (an `image` job's `mask`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Masking {
    /// SetLatentNoiseMask or VAEEncodeForInpaint, whose `mask` it is.
    pub node: String,
    /// The node it starts from: the LoadImage or LoadImageMask whose picture it is, or the
    /// first of the mask nodes it passes.
    pub source: String,
    /// The nodes that run before `node` beside the chain's: the mask nodes after `source`,
    /// in order, and SetLatentNoiseMask's VAEEncode.
    #[serde(default)]
    pub before: Vec<String>,
}

/// A node by id and class type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRef {
    pub id: String,
    pub class_type: String,
}

/// The nodes of a second sampling pass (an `image` job's `refine` stage, the hires fix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refining {
    /// Its own CheckpointLoaderSimple, when it samples with another checkpoint than the first
    /// pass (`refine.model`; none in records from before a second pass could).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The nodes that take the first pass's pictures to it, in order: an upscale with its
    /// loader, a scale node and VAEEncode (the pixel form), or LatentUpscale/LatentUpscaleBy
    /// (the latent form).
    pub between: Vec<String>,
    /// The upscale among them, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale: Option<Upscaling>,
    /// The node whose inputs its `refine.resize` came from, if it scales.
    pub scale: Option<NodeRef>,
    pub positive: String,
    pub negative: String,
    /// The second sampler.
    pub sampler: String,
    /// The second sampler is a KSamplerAdvanced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advanced: bool,
    pub decode: String,
}

/// The nodes of an upscale with a model (an `upscale` stage or job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upscaling {
    /// UpscaleModelLoader.
    pub loader: String,
    /// ImageUpscaleWithModel.
    pub node: String,
    /// The LoadImage it upscales when no sampler makes its picture (an `upscale` job).
    pub load_image: Option<String>,
}

/// The scale node that resizes pictures without a model (a `resize` stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// ImageScale, ImageScaleBy or ImageScaleToTotalPixels.
    pub node: String,
    pub class_type: String,
    /// The LoadImage it resizes when no other node makes its picture (an `upscale` job).
    pub load_image: Option<String>,
    /// It resizes the picture the upscale then takes (an upload's, as `resize_first`).
    #[serde(default)]
    pub before_upscale: bool,
}

/// The nodes of a prompt by role, for progress messages and error mapping. A prompt has a
/// sampling chain or an uploaded picture, and may upscale and resize its pictures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    /// Flattened: records from before upscales keep the chain's fields at the top.
    #[serde(flatten)]
    pub sampling: Option<Sampling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<Refining>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale: Option<Upscaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    pub outputs: Vec<OutputNode>,
}

/// ComfyUI's class type of the node that runs in each stage, for error messages.
const UPSCALE_CLASS: &str = "ImageUpscaleWithModel";

/// The class type of a sampler, a KSamplerAdvanced or a KSampler.
fn sampler_class(advanced: bool) -> &'static str {
    if advanced { super::ksampler::ADVANCED } else { super::ksampler::KSAMPLER }
}

/// The input of a sampler a KSampler's `input` is on it: a KSamplerAdvanced's seed is its
/// `noise_seed`, and where its schedule starts (the job's `strength`) its `start_at_step`.
fn sampler_input(advanced: bool, input: &'static str) -> &'static str {
    match (advanced, input) {
        (true, "seed") => "noise_seed",
        (true, "denoise") => "start_at_step",
        _ => input,
    }
}

impl Roles {
    /// The job's stages in order, as the nodes ask for them: the sampler's, the second
    /// sampler's, then the upscale and the resize in the order the pictures pass them.
    fn stages(&self) -> Vec<StageName> {
        let first = self.scaling.as_ref().is_some_and(|s| s.before_upscale);
        let resize = self.scaling.as_ref().map(|_| StageName::Resize);
        let mut stages: Vec<StageName> = self.sampling.as_ref().map(|_| StageName::Generate).into_iter().collect();
        stages.extend(self.refine.as_ref().map(|_| StageName::Refine));
        stages.extend(resize.filter(|_| first));
        stages.extend(self.upscale.as_ref().map(|_| StageName::Upscale));
        stages.extend(resize.filter(|_| !first));
        stages
    }

    /// Output nodes showing `stage`'s pictures (those of old records show the one stage's).
    fn outputs_of(&self, stage: StageName) -> impl Iterator<Item = String> + '_ {
        self.outputs.iter().filter(move |o| o.stage.is_none_or(|s| s == stage)).map(|o| o.id.clone())
    }

    /// Nodes in the order ComfyUI would execute them: each stage's nodes, then the outputs
    /// of its pictures, so an output of the sampler's pictures comes before the upscale.
    pub fn execution_order(&self) -> Vec<String> {
        let mut order = Vec::new();
        for stage in self.stages() {
            match stage {
                StageName::Generate => {
                    if let Some(s) = &self.sampling {
                        order.push(s.checkpoint.clone());
                        order.extend(s.loras.iter().cloned());
                        order.extend([s.positive.clone(), s.negative.clone()]);
                        order.extend(s.load_image.clone());
                        if let Some(m) = &s.mask {
                            order.push(m.source.clone());
                            order.extend(m.before.iter().cloned());
                        }
                        order.extend([s.latent.clone(), s.sampler.clone()]);
                        order.extend(s.decode.clone());
                    }
                }
                StageName::Refine => {
                    if let Some(r) = &self.refine {
                        order.extend(r.checkpoint.clone());
                        order.extend(r.between.iter().cloned());
                        order.extend([r.positive.clone(), r.negative.clone(), r.sampler.clone(), r.decode.clone()]);
                    }
                }
                StageName::Resize => {
                    if let Some(s) = &self.scaling {
                        order.extend(s.load_image.clone());
                        order.push(s.node.clone());
                    }
                }
                _ => {
                    if let Some(u) = &self.upscale {
                        order.extend(u.load_image.clone());
                        order.extend([u.loader.clone(), u.node.clone()]);
                    }
                }
            }
            order.extend(self.outputs_of(stage));
        }
        let mut seen = std::collections::HashSet::new();
        order.retain(|id| seen.insert(id.clone()));
        order
    }

    /// The node (id, class type) that runs while `stage` does: the sampler, the upscale
    /// or the scale node.
    pub fn node_of(&self, stage: StageName) -> Option<(&str, &str)> {
        match stage {
            StageName::Generate => self.sampling.as_ref().map(|s| (s.sampler.as_str(), sampler_class(s.advanced))),
            StageName::Refine => self.refine.as_ref().map(|r| (r.sampler.as_str(), sampler_class(r.advanced))),
            StageName::Upscale => self.upscale.as_ref().map(|u| (u.node.as_str(), UPSCALE_CLASS)),
            StageName::Resize => self.scaling.as_ref().map(|s| (s.node.as_str(), s.class_type.as_str())),
            _ => None,
        }
    }

    /// The node that runs first (the job's first stage's).
    pub fn first_node(&self) -> Option<(&str, &str)> {
        self.stages().first().and_then(|s| self.node_of(*s))
    }

    /// The scale node's input a `resize.FIELD` parameter came from (`resize.method` is its
    /// `upscale_method`).
    fn scale_input(&self, param: &str) -> Option<(String, &'static str)> {
        let s = self.scaling.as_ref()?;
        Some((s.node.clone(), scale_input_of(&s.class_type, param.strip_prefix("resize.").unwrap_or(""))))
    }

    /// The node and input a `refine.FIELD` parameter came from: the second sampler's, its
    /// prompts', or the node its scale came from.
    fn refine_input(&self, param: &str) -> Option<(String, &'static str)> {
        let r = self.refine.as_ref()?;
        let field = param.strip_prefix("refine.").unwrap_or("");
        if let Some(resize) = field.strip_prefix("resize") {
            return Some(match &r.scale {
                Some(scale) => (scale.id.clone(), scale_input_of(&scale.class_type, resize.trim_start_matches('.'))),
                None => (r.sampler.clone(), "latent_image"),
            });
        }
        let sampler = |input: &'static str| (r.sampler.clone(), sampler_input(r.advanced, input));
        Some(match field {
            "upscale_model" => (r.upscale.as_ref()?.loader.clone(), "model_name"),
            "model" => (r.checkpoint.clone()?, "ckpt_name"),
            "prompt" => (r.positive.clone(), "text"),
            "negative_prompt" => (r.negative.clone(), "text"),
            "strength" | "steps_mode" | "switch_at_step" => sampler("denoise"),
            "steps" => sampler("steps"),
            "guidance" => sampler("cfg"),
            "scheduler" => sampler("sampler_name"),
            "schedule" => sampler("scheduler"),
            "seed" => sampler("seed"),
            // The whole second pass: what its sampler starts from.
            _ => sampler("latent_image"),
        })
    }

    /// The node and input a job parameter came from: an `image` job's, or an `upscale`
    /// job's when the prompt has no sampler.
    pub fn source_of(&self, param: &str) -> Option<(String, &'static str)> {
        if param == "resize" || param.starts_with("resize.") {
            return self.scale_input(param);
        }
        if param == "refine" || param.starts_with("refine.") {
            return self.refine_input(param);
        }
        let upscale = self.upscale.as_ref();
        let Some(s) = &self.sampling else {
            // An upload's: the node that takes it first.
            let scaled_first = self.scaling.as_ref().filter(|s| s.load_image.is_some());
            return match (param, upscale) {
                ("model", Some(u)) => Some((u.loader.clone(), "model_name")),
                (_, Some(u)) if scaled_first.is_none() => Some((u.node.clone(), "image")),
                _ => scaled_first.map(|s| (s.node.clone(), "image")),
            };
        };
        let sampler = |input: &'static str| (s.sampler.clone(), sampler_input(s.advanced, input));
        Some(match param {
            "prompt" => (s.positive.clone(), "text"),
            "negative_prompt" => (s.negative.clone(), "text"),
            "model" => (s.checkpoint.clone(), "ckpt_name"),
            "width" => (s.latent.clone(), "width"),
            "height" => (s.latent.clone(), "height"),
            "n" => (s.latent.clone(), "batch_size"),
            "init_image" => (s.load_image.clone().unwrap_or_else(|| s.latent.clone()), "image"),
            "steps" => sampler("steps"),
            "guidance" => sampler("cfg"),
            "scheduler" => sampler("sampler_name"),
            "schedule" => sampler("scheduler"),
            "strength" | "steps_mode" => sampler("denoise"),
            "upscale_model" => (upscale?.loader.clone(), "model_name"),
            "mask" => (s.mask.as_ref()?.node.clone(), "mask"),
            "mask_grow" => (s.mask.as_ref()?.node.clone(), "grow_mask_by"),
            _ => sampler("seed"),
        })
    }
}

/// The input of a scale node of class `class_type` a resize's `field` came from: its own
/// input by the same name (`method` is `upscale_method`); a latent scale node's `scale_by`
/// made the size its sides were worked out to; the whole resize is the node's picture.
fn scale_input_of(class_type: &str, field: &str) -> &'static str {
    match (class_type, field) {
        (_, "method") => "upscale_method",
        ("LatentUpscaleBy", _) => "scale_by",
        ("LatentUpscale" | "ImageScale", "width") => "width",
        ("LatentUpscale" | "ImageScale", "height") => "height",
        ("LatentUpscale" | "ImageScale", "crop") => "crop",
        ("ImageScaleBy", "scale_by") => "scale_by",
        ("ImageScaleToTotalPixels", "megapixels") => "megapixels",
        ("ImageScaleToTotalPixels", "resolution_steps") => "resolution_steps",
        ("LatentUpscale", _) => "samples",
        _ => "image",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn output(id: &str, stage: Option<StageName>) -> OutputNode {
        OutputNode {
            id: id.into(),
            class_type: "SaveImage".into(),
            folder: "output".into(),
            filename_prefix: "ComfyUI".into(),
            stage,
        }
    }

    fn sampling() -> Sampling {
        Sampling {
            checkpoint: "4".into(),
            loras: Vec::new(),
            positive: "6".into(),
            negative: "7".into(),
            latent: "5".into(),
            load_image: None,
            mask: None,
            sampler: "3".into(),
            advanced: false,
            decode: Some("8".into()),
        }
    }

    #[test]
    fn a_record_from_before_upscales_reads_as_a_sampling_chain() {
        let old = json!({"checkpoint": "4", "positive": "6", "negative": "7", "latent": "5", "load_image": null,
            "sampler": "3", "decode": "8", "outputs": [{"id": "9", "class_type": "SaveImage", "folder": "output",
            "filename_prefix": "ComfyUI"}]});
        let roles: Roles = serde_json::from_value(old.clone()).expect("reads");
        assert_eq!(
            roles,
            Roles {
                sampling: Some(sampling()),
                refine: None,
                upscale: None,
                scaling: None,
                outputs: vec![output("9", None)]
            }
        );
        assert_eq!(serde_json::to_value(&roles).expect("writes"), old, "and is written back the same");
        assert_eq!(roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9"]);
    }

    #[test]
    fn an_upscale_after_the_sampler_runs_after_the_outputs_of_its_pictures() {
        let roles = Roles {
            sampling: Some(sampling()),
            refine: None,
            upscale: Some(Upscaling { loader: "10".into(), node: "11".into(), load_image: None }),
            scaling: None,
            outputs: vec![output("12", Some(StageName::Upscale)), output("9", Some(StageName::Generate))],
        };
        let back: Roles = serde_json::from_value(serde_json::to_value(&roles).expect("writes")).expect("reads");
        assert_eq!(back, roles);
        assert_eq!(roles.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "11", "12"]);
        assert_eq!(roles.node_of(StageName::Upscale), Some(("11", "ImageUpscaleWithModel")));
        assert_eq!(roles.first_node(), Some(("3", "KSampler")));
        assert_eq!(roles.source_of("upscale_model"), Some(("10".into(), "model_name")));
        assert_eq!(roles.source_of("model"), Some(("4".into(), "ckpt_name")));
    }

    #[test]
    fn an_upscale_of_an_upload_has_no_sampler() {
        let roles = Roles {
            sampling: None,
            refine: None,
            upscale: Some(Upscaling { loader: "4".into(), node: "5".into(), load_image: Some("1".into()) }),
            scaling: None,
            outputs: vec![output("6", Some(StageName::Upscale))],
        };
        let back: Roles = serde_json::from_value(serde_json::to_value(&roles).expect("writes")).expect("reads");
        assert_eq!(back, roles);
        assert_eq!(roles.execution_order(), ["1", "4", "5", "6"]);
        assert_eq!(roles.first_node(), Some(("5", "ImageUpscaleWithModel")));
        assert_eq!(roles.node_of(StageName::Generate), None);
        assert_eq!(roles.source_of("model"), Some(("4".into(), "model_name")));
        assert_eq!(roles.source_of("input"), Some(("5".into(), "image")));
    }

    fn scaling(load_image: Option<&str>, before_upscale: bool) -> Scaling {
        Scaling {
            node: "20".into(),
            class_type: "ImageScaleBy".into(),
            load_image: load_image.map(Into::into),
            before_upscale,
        }
    }

    #[test]
    fn a_resize_runs_after_the_pictures_it_takes_and_names_its_node() {
        let after = Roles {
            sampling: Some(sampling()),
            refine: None,
            upscale: Some(Upscaling { loader: "10".into(), node: "11".into(), load_image: None }),
            scaling: Some(scaling(None, false)),
            outputs: vec![output("21", Some(StageName::Resize)), output("9", Some(StageName::Generate))],
        };
        let back: Roles = serde_json::from_value(serde_json::to_value(&after).expect("writes")).expect("reads");
        assert_eq!(back, after);
        assert_eq!(after.execution_order(), ["4", "6", "7", "5", "3", "8", "9", "10", "11", "20", "21"]);
        assert_eq!(after.node_of(StageName::Resize), Some(("20", "ImageScaleBy")));
        assert_eq!(after.source_of("resize.scale_by"), Some(("20".into(), "scale_by")));
        assert_eq!(after.source_of("resize.method"), Some(("20".into(), "upscale_method")));

        // An upload resized, then upscaled: the LoadImage and the scale come first.
        let first = Roles {
            sampling: None,
            refine: None,
            upscale: Some(Upscaling { loader: "4".into(), node: "5".into(), load_image: None }),
            scaling: Some(scaling(Some("1"), true)),
            outputs: vec![output("6", Some(StageName::Upscale))],
        };
        assert_eq!(first.execution_order(), ["1", "20", "4", "5", "6"]);
        assert_eq!(first.first_node(), Some(("20", "ImageScaleBy")));
        assert_eq!(first.source_of("input"), Some(("20".into(), "image")));
        assert_eq!(first.source_of("model"), Some(("4".into(), "model_name")));

        // An upload resized alone.
        let alone = Roles { upscale: None, outputs: vec![output("6", Some(StageName::Resize))], ..first };
        assert_eq!(alone.execution_order(), ["1", "20", "6"]);
        assert_eq!(alone.source_of("input"), Some(("20".into(), "image")));
    }
}

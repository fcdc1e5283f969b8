//! ComfyUI's mask nodes between a MASK's loader and the sampler's SetLatentNoiseMask or
//! VAEEncodeForInpaint: InvertMask, GrowMask, ThresholdMask, FeatherMask, ImageToMask,
//! SolidMask and MaskComposite, their specs as `comfy_extras/nodes_mask.py` gives them (sizes
//! and offsets up to the box's largest side, as every size reelbox lists). Compile reads the
//! nodes a mask passes into a [`Chain`] and works it out by ComfyUI's arithmetic
//! (`mask_ops`) into one picture the init picture's size; the prompt keeps it as an upload
//! that its `image` job names as `mask`, so the job runs, and replays after a restart, as
//! the native masked image job does.

use std::collections::HashMap;

use image::{GrayImage, Luma};
use serde_json::{Value, json};

use super::chain::{follow, unsupported};
use super::compile::input_error;
use super::files::{Upload, UploadLookup, uploaded};
use super::inpaint::LOAD_MASK;
use super::literals::{bool_value, float_value, int_value, text, wire};
use super::mask_ops::{self, Channel, Operation};
use super::nodes::{InputKind, InputSpec, NodeSpec, float, int, link};
use super::validate::{PromptError, ValidGraph};
use crate::media::morph::Footprint;
use crate::media::picture::{PictureError, header_at, open_as_stored};
use crate::pipelines::diffusion::inpaint::Mask;

/// ComfyUI's mask nodes reelbox works out.
pub const CLASS_TYPES: [&str; 7] =
    ["InvertMask", "GrowMask", "ThresholdMask", "FeatherMask", "ImageToMask", "SolidMask", "MaskComposite"];

/// Most nodes one mask may pass: each is a picture's worth of work at submission.
const MAX_STEPS: usize = 64;

/// The spec of a mask node, as ComfyUI defines it; `side` bounds its sizes and offsets.
pub(super) fn spec(class_type: &str, side: i128) -> Option<NodeSpec> {
    let mask = || link("mask", "MASK");
    let combo = |name, choices: &[&str]| InputSpec {
        name,
        kind: InputKind::Combo(choices.iter().map(|c| c.to_string()).collect()),
    };
    let (display_name, description, inputs) = match class_type {
        "InvertMask" => ("InvertMask", "1 − the mask: what it redraws is kept and the rest redrawn.", vec![mask()]),
        "GrowMask" => (
            "GrowMask",
            "Grows the mask by expand pixels (shrinks it where negative); tapered_corners rounds its corners.",
            vec![
                mask(),
                int("expand", 0, -side, side, 1),
                InputSpec { name: "tapered_corners", kind: InputKind::Bool { default: true } },
            ],
        ),
        "ThresholdMask" => {
            ("ThresholdMask", "1 where the mask is above value, else 0.", vec![mask(), float("value", 0.5, 0.0, 1.0)])
        }
        "FeatherMask" => (
            "FeatherMask",
            "Fades the mask out over each side's first pixels.",
            vec![
                mask(),
                int("left", 0, 0, side, 1),
                int("top", 0, 0, side, 1),
                int("right", 0, 0, side, 1),
                int("bottom", 0, 0, side, 1),
            ],
        ),
        "ImageToMask" => (
            "Convert Image to Mask",
            "One channel of a LoadImage's picture as a mask.",
            vec![link("image", "IMAGE"), combo("channel", &Channel::NAMES)],
        ),
        "SolidMask" => (
            "SolidMask",
            "A mask of one value.",
            vec![float("value", 1.0, 0.0, 1.0), int("width", 512, 1, side, 1), int("height", 512, 1, side, 1)],
        ),
        "MaskComposite" => (
            "MaskComposite",
            "Puts source on destination at x, y by operation, clamped to 0…1.",
            vec![
                link("destination", "MASK"),
                link("source", "MASK"),
                int("x", 0, 0, side, 1),
                int("y", 0, 0, side, 1),
                combo("operation", &Operation::NAMES),
            ],
        ),
        _ => return None,
    };
    let class_type = CLASS_TYPES.into_iter().find(|c| *c == class_type)?;
    Some(NodeSpec {
        class_type,
        display_name,
        category: "mask",
        description,
        inputs,
        outputs: &["MASK"],
        output_node: false,
        python_module: "comfy_extras.nodes_mask",
    })
}

/// Whether a class type is one of the mask nodes.
pub(super) fn is_mask_node(class_type: &str) -> bool {
    CLASS_TYPES.contains(&class_type)
}

/// One node a mask passes, its inputs read; a mask input is the index of its step.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// LoadImage's MASK of an upload.
    LoadImage(Upload),
    /// LoadImageMask's channel of an upload.
    LoadImageMask(Upload, Channel),
    /// ImageToMask's channel of the LoadImage (its node id) whose IMAGE it takes.
    ImageToMask(Upload, Channel, String),
    Solid {
        value: f32,
        width: u32,
        height: u32,
    },
    Invert(usize),
    Grow {
        mask: usize,
        expand: i64,
        footprint: Footprint,
    },
    Threshold {
        mask: usize,
        value: f32,
    },
    Feather {
        mask: usize,
        sides: [u32; 4],
    },
    Composite {
        destination: usize,
        source: usize,
        at: (u32, u32),
        operation: Operation,
    },
}

impl Op {
    /// The steps whose masks it takes.
    fn inputs(&self) -> Vec<usize> {
        match self {
            Self::Invert(m) | Self::Grow { mask: m, .. } | Self::Threshold { mask: m, .. } => vec![*m],
            Self::Feather { mask, .. } => vec![*mask],
            Self::Composite { destination, source, .. } => vec![*destination, *source],
            _ => Vec::new(),
        }
    }
}

/// The nodes a mask passes, each once, every node after those it takes; the last makes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Chain {
    steps: Vec<(String, Op)>,
}

impl Chain {
    /// The chain of the mask that `id`'s `input` takes, or the node error of the node that
    /// breaks it (a loop, a link reelbox does not follow, an upload it cannot find).
    pub(super) fn read(g: &ValidGraph, id: &str, input: &str, uploads: UploadLookup) -> Result<Self, PromptError> {
        let mut reader = Reader { g, uploads, steps: Vec::new(), at: HashMap::new(), open: Vec::new() };
        reader.mask(id, input)?;
        Ok(Self { steps: reader.steps })
    }

    /// Its nodes in the order they run.
    pub(super) fn nodes(&self) -> Vec<String> {
        self.steps.iter().map(|(id, _)| id.clone()).collect()
    }

    /// The mask worked out, as a grey PNG (white redraws), checked to be `picture`'s size
    /// (the init picture's upload, LoadImage `load_id`'s).
    pub(super) fn png(&self, g: &ValidGraph, picture: &Upload, load_id: &str) -> Result<Vec<u8>, PromptError> {
        let unreadable = |id: &str, e: PictureError| {
            let received = g.nodes[id].inputs.get("image").cloned().unwrap_or_default();
            input_error(id, &g.nodes[id].class_type, "image", "custom_validation_failed", &e.to_string(), &received)
        };
        let size = header_at(&picture.path).map_err(|e| unreadable(load_id, e))?;
        let mask = self.work_out(|id, upload| open_as_stored(&upload.path).map_err(|e| unreadable(id, e)))?;
        if (mask.width, mask.height) != (size.width, size.height) {
            let (id, input, why) = self.origin(self.steps.len().saturating_sub(1), size.width);
            let message = format!(
                "the mask is {}×{}, the picture (node {load_id}) {}×{}: a mask must be its picture's size{why}",
                mask.width, mask.height, size.width, size.height
            );
            let node = &g.nodes[&id];
            let received = node.inputs.get(input).cloned().unwrap_or_default();
            return Err(input_error(&id, &node.class_type, input, "custom_validation_failed", &message, &received));
        }
        let grey = GrayImage::from_fn(mask.width, mask.height, |x, y| {
            let v = mask.redraw[(y * mask.width + x) as usize];
            Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8])
        });
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| {
            PromptError::top("prompt_outputs_failed_validation", "Prompt outputs failed validation", &e.to_string())
        })?;
        Ok(png)
    }

    /// Each step's mask in turn, a step's masks let go once the last step taking them has.
    fn work_out(
        &self,
        open: impl Fn(&str, &Upload) -> Result<image::DynamicImage, PromptError>,
    ) -> Result<Mask, PromptError> {
        let mut uses = vec![0usize; self.steps.len()];
        self.steps.iter().flat_map(|(_, op)| op.inputs()).for_each(|i| uses[i] += 1);
        let mut made: Vec<Option<Mask>> = Vec::with_capacity(self.steps.len());
        let mut take = |made: &mut Vec<Option<Mask>>, i: usize| {
            uses[i] -= 1;
            let kept = if uses[i] == 0 { made[i].take() } else { made[i].clone() };
            kept.unwrap_or_else(|| mask_ops::solid(0.0, 0, 0))
        };
        for (id, op) in &self.steps {
            let mask = match op {
                Op::LoadImage(upload) => mask_ops::load_image(&open(id, upload)?),
                Op::LoadImageMask(upload, channel) => mask_ops::load_image_mask(&open(id, upload)?, *channel),
                Op::ImageToMask(upload, channel, load) => {
                    let picture = open(load, upload)?;
                    mask_ops::image_channel(&picture, *channel).ok_or_else(|| no_alpha(id))?
                }
                Op::Solid { value, width, height } => mask_ops::solid(*value, *width, *height),
                Op::Invert(m) => mask_ops::invert(take(&mut made, *m)),
                Op::Grow { mask, expand, footprint } => take(&mut made, *mask).spread(*expand, *footprint),
                Op::Threshold { mask, value } => mask_ops::threshold(take(&mut made, *mask), *value),
                Op::Feather { mask, sides } => mask_ops::feather(take(&mut made, *mask), *sides),
                Op::Composite { destination, source, at, operation } => {
                    let destination = take(&mut made, *destination);
                    mask_ops::composite(destination, &take(&mut made, *source), *at, *operation)
                }
            };
            made.push(Some(mask));
        }
        Ok(made.pop().flatten().unwrap_or_else(|| mask_ops::solid(0.0, 0, 0)))
    }

    /// The node and input whose value gives step `i`'s mask its size, and what more to say.
    fn origin(&self, i: usize, picture_width: u32) -> (String, &'static str, &'static str) {
        let Some((id, op)) = self.steps.get(i) else { return (String::new(), "mask", "") };
        match op {
            Op::LoadImage(_) => {
                (id.clone(), "image", " (ComfyUI's MASK of a picture without transparency is an empty 64×64 one)")
            }
            Op::LoadImageMask(..) => (id.clone(), "image", ""),
            Op::ImageToMask(_, _, load) => (load.clone(), "image", ""),
            Op::Solid { width, .. } => (id.clone(), if *width != picture_width { "width" } else { "height" }, ""),
            Op::Composite { destination, .. } => self.origin(*destination, picture_width),
            other => match other.inputs().first() {
                Some(&m) => self.origin(m, picture_width),
                None => (id.clone(), "mask", ""),
            },
        }
    }
}

/// ImageToMask `id`'s refusal of channel alpha: LoadImage's IMAGE is RGB.
fn no_alpha(id: &str) -> PromptError {
    let why =
        "LoadImage's IMAGE has no alpha channel (ComfyUI's is RGB): take LoadImage's MASK, or a LoadImageMask's alpha";
    input_error(id, "ImageToMask", "channel", "custom_validation_failed", why, &json!("alpha"))
}

/// Reads a mask's nodes depth first, each once.
struct Reader<'g> {
    g: &'g ValidGraph,
    uploads: UploadLookup<'g>,
    steps: Vec<(String, Op)>,
    /// Each node read, by its step.
    at: HashMap<String, usize>,
    /// The nodes being read, outermost first (one met again is a loop).
    open: Vec<String>,
}

impl Reader<'_> {
    /// The step of the mask `id`'s `input` takes.
    fn mask(&mut self, id: &str, input: &str) -> Result<usize, PromptError> {
        let g = self.g;
        let node = &g.nodes[id];
        let Some((l, source)) = g.linked(id, input) else {
            return Err(unsupported(id, node, format!("{input} must be linked to a mask")));
        };
        if let Some(&i) = self.at.get(&l.node) {
            return Ok(i);
        }
        let refuse =
            |why: String| input_error(id, &node.class_type, input, "unsupported_graph", &why, &json!([l.node, l.slot]));
        if self.open.contains(&l.node) {
            return Err(refuse(format!("{input} comes from node {}, which takes this node's mask: a loop", l.node)));
        }
        if self.steps.len() >= MAX_STEPS {
            return Err(refuse(format!("reelbox works out a mask through at most {MAX_STEPS} nodes")));
        }
        self.open.push(l.node.clone());
        let read = |s: &Self, input: &str| s.g.nodes[&l.node].inputs.get(input).cloned().unwrap_or(Value::Null);
        let int = |s: &Self, input: &str| wire(int_value(&read(s, input)).unwrap_or(0));
        let side = |s: &Self, input: &str| u32::try_from(int(s, input)).unwrap_or(0);
        let unit = |s: &Self, input: &str, default: f64| float_value(&read(s, input)).unwrap_or(default) as f32;
        let channel = |s: &Self| Channel::named(&text(&s.g.nodes[&l.node], "channel")).unwrap_or(Channel::Red);
        let op = match source.class_type.as_str() {
            "LoadImage" => Op::LoadImage(uploaded(g, &l.node, self.uploads)?),
            LOAD_MASK => Op::LoadImageMask(uploaded(g, &l.node, self.uploads)?, channel(self)),
            "ImageToMask" => {
                let (load, _) = follow(g, &l.node, "image", &["LoadImage"], 0)?;
                Op::ImageToMask(uploaded(g, &load, self.uploads)?, channel(self), load)
            }
            "SolidMask" => {
                Op::Solid { value: unit(self, "value", 1.0), width: side(self, "width"), height: side(self, "height") }
            }
            "InvertMask" => Op::Invert(self.mask(&l.node, "mask")?),
            "GrowMask" => {
                let tapered = bool_value(&read(self, "tapered_corners")).unwrap_or(true);
                let footprint = if tapered { Footprint::Diamond } else { Footprint::Square };
                Op::Grow { mask: self.mask(&l.node, "mask")?, expand: int(self, "expand"), footprint }
            }
            "ThresholdMask" => Op::Threshold { mask: self.mask(&l.node, "mask")?, value: unit(self, "value", 0.5) },
            "FeatherMask" => {
                let sides = ["left", "top", "right", "bottom"].map(|s| side(self, s));
                Op::Feather { mask: self.mask(&l.node, "mask")?, sides }
            }
            "MaskComposite" => Op::Composite {
                destination: self.mask(&l.node, "destination")?,
                source: self.mask(&l.node, "source")?,
                at: (side(self, "x"), side(self, "y")),
                operation: Operation::named(&text(&g.nodes[&l.node], "operation")).unwrap_or(Operation::Multiply),
            },
            other => {
                return Err(refuse(format!(
                    "{input} comes from {other} (node {}); reelbox takes a mask from a LoadImage's MASK, a \
                     LoadImageMask or the mask nodes ({})",
                    l.node,
                    CLASS_TYPES.join(", ")
                )));
            }
        };
        self.open.pop();
        self.steps.push((l.node.clone(), op));
        self.at.insert(l.node, self.steps.len() - 1);
        Ok(self.steps.len() - 1)
    }
}

//! The nodes one mask passes on its way to the sampler (`masks`' nodes, and the pictures a
//! mask is read from: a LoadImage's IMAGE, a MaskToImage's, an ImageInvert of either), read
//! from a checked graph into a [`Chain`] and worked out by ComfyUI's arithmetic (`mask_ops`)
//! into one picture the init picture's size; the prompt keeps it as an upload that its
//! `image` job names as `mask`, so the job runs, and replays after a restart, as the native
//! masked image job does.

use std::collections::HashMap;

use image::{GrayImage, Luma};
use serde_json::{Value, json};

use super::chain::unsupported;
use super::compile::input_error;
use super::files::{Upload, UploadLookup, uploaded};
use super::inpaint::LOAD_MASK;
use super::literals::{bool_value, float_value, int_value, text, wire};
use super::mask_ops::{self, Channel, Operation, Picture};
use super::masks::{CLASS_TYPES, IMAGE_NODES};
use super::validate::{PromptError, ValidGraph};
use crate::media::morph::Footprint;
use crate::media::picture::{PictureError, header_at, open_as_stored};
use crate::pipelines::diffusion::inpaint::Mask;

/// Most nodes one mask may pass: each is a picture's worth of work at submission.
const MAX_STEPS: usize = 64;

/// One node a mask passes, its inputs read; a mask or picture input is the index of its step.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    /// LoadImage's MASK of an upload.
    LoadImage(Upload),
    /// LoadImage's IMAGE of an upload.
    LoadPicture(Upload),
    /// LoadImageMask's channel of an upload.
    LoadImageMask(Upload, Channel),
    ImageToMask {
        image: usize,
        channel: Channel,
    },
    ColorToMask {
        image: usize,
        color: u32,
    },
    MaskToImage(usize),
    InvertImage(usize),
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
    Crop {
        mask: usize,
        at: (u32, u32),
        size: (u32, u32),
    },
}

impl Op {
    /// The steps whose masks or pictures it takes.
    fn inputs(&self) -> Vec<usize> {
        match self {
            Self::Invert(m) | Self::MaskToImage(m) | Self::InvertImage(m) => vec![*m],
            Self::ImageToMask { image, .. } | Self::ColorToMask { image, .. } => vec![*image],
            Self::Grow { mask, .. } | Self::Threshold { mask, .. } => vec![*mask],
            Self::Feather { mask, .. } | Self::Crop { mask, .. } => vec![*mask],
            Self::Composite { destination, source, .. } => vec![*destination, *source],
            Self::LoadImage(_) | Self::LoadPicture(_) | Self::LoadImageMask(..) | Self::Solid { .. } => Vec::new(),
        }
    }
}

/// What a step makes: a MASK, or an IMAGE on a mask's way.
enum Made {
    Mask(Mask),
    Picture(Picture),
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
        reader.step(id, input)?;
        Ok(Self { steps: reader.steps })
    }

    /// Its nodes in the order they run, each once (a LoadImage may give both its outputs).
    pub(super) fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = Vec::with_capacity(self.steps.len());
        for (id, _) in &self.steps {
            if !nodes.contains(id) {
                nodes.push(id.clone());
            }
        }
        nodes
    }

    /// The mask worked out, as a grey PNG (white redraws), checked to be `picture`'s size
    /// (the init picture's upload, LoadImage `load_id`'s).
    pub(super) fn png(&self, g: &ValidGraph, picture: &Upload, load_id: &str) -> Result<Vec<u8>, PromptError> {
        let unreadable = |id: &str, e: PictureError| {
            let received = g.nodes[id].inputs.get("image").cloned().unwrap_or_default();
            input_error(id, &g.nodes[id].class_type, "image", "custom_validation_failed", &e.to_string(), &received)
        };
        let size = header_at(&picture.path).map_err(|e| unreadable(load_id, e))?;
        let open = |id: &str, upload: &Upload| open_as_stored(&upload.path).map_err(|e| unreadable(id, e));
        let mask = self.work_out(g, open)?;
        if (mask.width, mask.height) != (size.width, size.height) {
            let last = self.steps.len().saturating_sub(1);
            let (id, input, why) = self.origin(last, (mask.width, mask.height), size.width);
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

    /// Each step's mask or picture in turn, each let go once the last step taking it has; a
    /// crop past its mask's edge is refused at its node.
    fn work_out(
        &self,
        g: &ValidGraph,
        open: impl Fn(&str, &Upload) -> Result<image::DynamicImage, PromptError>,
    ) -> Result<Mask, PromptError> {
        let mut uses = vec![0usize; self.steps.len()];
        self.steps.iter().flat_map(|(_, op)| op.inputs()).for_each(|i| uses[i] += 1);
        let mut made: Vec<Option<Made>> = Vec::with_capacity(self.steps.len());
        // The reader links masks to mask inputs and pictures to picture inputs (the graph's
        // types are checked): the empty fallbacks are never taken.
        let mut take = |made: &mut Vec<Option<Made>>, i: usize| {
            uses[i] -= 1;
            if uses[i] == 0 { made[i].take() } else { made[i].as_ref().map(Made::copy) }
        };
        let mask = |m: Option<Made>| match m {
            Some(Made::Mask(m)) => m,
            _ => mask_ops::solid(0.0, 0, 0),
        };
        let picture = |p: Option<Made>| match p {
            Some(Made::Picture(p)) => p,
            _ => mask_ops::mask_to_image(mask_ops::solid(0.0, 0, 0)),
        };
        for (id, op) in &self.steps {
            let out = match op {
                Op::LoadPicture(upload) => Made::Picture(mask_ops::load_picture(&open(id, upload)?)),
                Op::MaskToImage(m) => Made::Picture(mask_ops::mask_to_image(mask(take(&mut made, *m)))),
                Op::InvertImage(p) => Made::Picture(mask_ops::invert_image(picture(take(&mut made, *p)))),
                Op::LoadImage(upload) => Made::Mask(mask_ops::load_image(&open(id, upload)?)),
                Op::LoadImageMask(upload, channel) => {
                    Made::Mask(mask_ops::load_image_mask(&open(id, upload)?, *channel))
                }
                Op::ImageToMask { image, channel } => {
                    let p = picture(take(&mut made, *image));
                    Made::Mask(mask_ops::image_channel(&p, *channel).ok_or_else(|| no_alpha(id))?)
                }
                Op::ColorToMask { image, color } => {
                    Made::Mask(mask_ops::color_mask(&picture(take(&mut made, *image)), *color))
                }
                Op::Solid { value, width, height } => Made::Mask(mask_ops::solid(*value, *width, *height)),
                Op::Invert(m) => Made::Mask(mask_ops::invert(mask(take(&mut made, *m)))),
                Op::Grow { mask: m, expand, footprint } => {
                    Made::Mask(mask(take(&mut made, *m)).spread(*expand, *footprint))
                }
                Op::Threshold { mask: m, value } => Made::Mask(mask_ops::threshold(mask(take(&mut made, *m)), *value)),
                Op::Feather { mask: m, sides } => Made::Mask(mask_ops::feather(mask(take(&mut made, *m)), *sides)),
                Op::Composite { destination, source, at, operation } => {
                    let destination = mask(take(&mut made, *destination));
                    Made::Mask(mask_ops::composite(destination, &mask(take(&mut made, *source)), *at, *operation))
                }
                Op::Crop { mask: m, at, size } => {
                    let m = mask(take(&mut made, *m));
                    Made::Mask(mask_ops::crop(&m, *at, *size).ok_or_else(|| past_the_edge(g, id, &m, *at))?)
                }
            };
            made.push(Some(out));
        }
        Ok(mask(made.pop().flatten()))
    }

    /// The node and input whose value gives step `i`'s mask or picture its size (`made`, the
    /// mask's, as every step between keeps its size), and what more to say.
    fn origin(&self, i: usize, made: (u32, u32), picture_width: u32) -> (String, &'static str, &'static str) {
        let Some((id, op)) = self.steps.get(i) else { return (String::new(), "mask", "") };
        match op {
            Op::LoadImage(_) => {
                (id.clone(), "image", " (ComfyUI's MASK of a picture without transparency is an empty 64×64 one)")
            }
            Op::LoadImageMask(..) | Op::LoadPicture(_) => (id.clone(), "image", ""),
            Op::Solid { width, .. } => (id.clone(), if *width != picture_width { "width" } else { "height" }, ""),
            // Its width or height, or its x or y where the mask's edge cut it short.
            Op::Crop { size, .. } => {
                let input = match (made.0 != picture_width, size.0 != made.0, size.1 != made.1) {
                    (true, false, _) => "width",
                    (true, true, _) => "x",
                    (false, _, false) => "height",
                    (false, _, true) => "y",
                };
                (id.clone(), input, "")
            }
            Op::Composite { destination, .. } => self.origin(*destination, made, picture_width),
            other => match other.inputs().first() {
                Some(&m) => self.origin(m, made, picture_width),
                None => (id.clone(), "mask", ""),
            },
        }
    }
}

impl Made {
    fn copy(&self) -> Self {
        match self {
            Self::Mask(m) => Self::Mask(m.clone()),
            Self::Picture(p) => Self::Picture(p.clone()),
        }
    }
}

/// ImageToMask `id`'s refusal of channel alpha: the IMAGEs a mask is read from are RGB.
fn no_alpha(id: &str) -> PromptError {
    let why = "this IMAGE has no alpha channel (ComfyUI's LoadImage and MaskToImage give RGB): take LoadImage's \
               MASK, or a LoadImageMask's alpha";
    input_error(id, "ImageToMask", "channel", "custom_validation_failed", why, &json!("alpha"))
}

/// CropMask `id`'s refusal of a corner (`x`, `y`) past `mask`'s edge: nothing is left.
fn past_the_edge(g: &ValidGraph, id: &str, mask: &Mask, (x, _): (u32, u32)) -> PromptError {
    let (input, edge) = if x >= mask.width { ("x", "right") } else { ("y", "bottom") };
    let message = format!(
        "{input} is past the {edge} edge of the mask it crops ({}×{}): the crop would be empty",
        mask.width, mask.height
    );
    let received = g.nodes[id].inputs.get(input).cloned().unwrap_or_default();
    input_error(id, "CropMask", input, "custom_validation_failed", &message, &received)
}

/// Reads a mask's nodes depth first, each once.
struct Reader<'g> {
    g: &'g ValidGraph,
    uploads: UploadLookup<'g>,
    steps: Vec<(String, Op)>,
    /// Each node's output read, by its step.
    at: HashMap<(String, usize), usize>,
    /// The nodes being read, outermost first (one met again is a loop).
    open: Vec<String>,
}

impl Reader<'_> {
    /// The step of the mask or picture `id`'s `input` takes.
    fn step(&mut self, id: &str, input: &str) -> Result<usize, PromptError> {
        let g = self.g;
        let node = &g.nodes[id];
        let Some((l, source)) = g.linked(id, input) else {
            let what = if input == "image" { "picture" } else { "mask" };
            return Err(unsupported(id, node, format!("{input} must be linked to a {what}")));
        };
        if let Some(&i) = self.at.get(&(l.node.clone(), l.slot)) {
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
        let op = match (source.class_type.as_str(), l.slot) {
            ("LoadImage", 0) => Op::LoadPicture(uploaded(g, &l.node, self.uploads)?),
            ("LoadImage", _) => Op::LoadImage(uploaded(g, &l.node, self.uploads)?),
            (LOAD_MASK, _) => Op::LoadImageMask(uploaded(g, &l.node, self.uploads)?, channel(self)),
            ("ImageToMask", _) => Op::ImageToMask { image: self.step(&l.node, "image")?, channel: channel(self) },
            ("ImageColorToMask", _) => {
                Op::ColorToMask { image: self.step(&l.node, "image")?, color: side(self, "color") }
            }
            ("MaskToImage", _) => Op::MaskToImage(self.step(&l.node, "mask")?),
            ("ImageInvert", _) => Op::InvertImage(self.step(&l.node, "image")?),
            ("SolidMask", _) => {
                Op::Solid { value: unit(self, "value", 1.0), width: side(self, "width"), height: side(self, "height") }
            }
            ("InvertMask", _) => Op::Invert(self.step(&l.node, "mask")?),
            ("GrowMask", _) => {
                let tapered = bool_value(&read(self, "tapered_corners")).unwrap_or(true);
                let footprint = if tapered { Footprint::Diamond } else { Footprint::Square };
                Op::Grow { mask: self.step(&l.node, "mask")?, expand: int(self, "expand"), footprint }
            }
            ("ThresholdMask", _) => {
                Op::Threshold { mask: self.step(&l.node, "mask")?, value: unit(self, "value", 0.5) }
            }
            ("FeatherMask", _) => {
                let sides = ["left", "top", "right", "bottom"].map(|s| side(self, s));
                Op::Feather { mask: self.step(&l.node, "mask")?, sides }
            }
            ("MaskComposite", _) => Op::Composite {
                destination: self.step(&l.node, "destination")?,
                source: self.step(&l.node, "source")?,
                at: (side(self, "x"), side(self, "y")),
                operation: Operation::named(&text(&g.nodes[&l.node], "operation")).unwrap_or(Operation::Multiply),
            },
            ("CropMask", _) => Op::Crop {
                mask: self.step(&l.node, "mask")?,
                at: (side(self, "x"), side(self, "y")),
                size: (side(self, "width"), side(self, "height")),
            },
            (other, _) if input == "image" => {
                return Err(refuse(format!(
                    "image comes from {other} (node {}); reelbox reads a mask's picture from a LoadImage's IMAGE, \
                     a MaskToImage or an {} of one",
                    l.node, IMAGE_NODES[0]
                )));
            }
            (other, _) => {
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
        self.at.insert((l.node, l.slot), self.steps.len() - 1);
        Ok(self.steps.len() - 1)
    }
}

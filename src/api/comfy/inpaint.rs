//! ComfyUI's inpainting graphs as an `image` job's `init_image` + `mask` (+ `mask_grow`):
//! the masked latent a KSampler starts from, a SetLatentNoiseMask over a VAEEncode or a
//! VAEEncodeForInpaint, and where its MASK comes from: a LoadImage's (1 − alpha, so
//! transparent redraws), a LoadImageMask's channel, or the mask nodes (`masks`). reelbox's
//! mask is a picture read by its alpha when it has transparent pixels, else by its grey
//! (`pipelines::diffusion::inpaint::Mask`): a loader's MASK is the upload itself when that
//! reading gives ComfyUI's mask, refused where ComfyUI's would be empty, and otherwise
//! worked out by ComfyUI's arithmetic into a picture of its own, as every mask node's is.

use image::DynamicImage;
use serde_json::json;

use super::chain::{follow, unsupported};
use super::compile::{Masking, Sampling, input_error};
use super::files::{Upload, UploadLookup, uploaded};
use super::literals::{int_value, text};
use super::nodes::{InputKind, InputSpec, NodeSpec, int, link};
use super::validate::{PromptError, ValidGraph};
use super::{mask_chain, masks};
use crate::media::picture::open_as_stored;
use crate::pipelines::diffusion::inpaint::reads_by_alpha;

/// ComfyUI's latent that a KSampler samples only where its mask says.
pub const NOISE_MASK: &str = "SetLatentNoiseMask";
/// ComfyUI's VAEEncode whose latent carries a (grown) mask.
pub const ENCODE_FOR_INPAINT: &str = "VAEEncodeForInpaint";
/// ComfyUI's node reading one channel of an upload as a MASK.
pub const LOAD_MASK: &str = "LoadImageMask";
/// LoadImageMask's channels, as ComfyUI lists them.
const CHANNELS: [&str; 4] = ["alpha", "red", "green", "blue"];

/// The spec of an inpainting node, as ComfyUI's `nodes.py` defines it.
pub(super) fn spec(class_type: &str) -> Option<NodeSpec> {
    let node = |class_type, display_name, category, description, inputs, outputs| NodeSpec {
        class_type,
        display_name,
        category,
        description,
        inputs,
        outputs,
        output_node: false,
        python_module: "nodes",
    };
    Some(match class_type {
        NOISE_MASK => node(
            NOISE_MASK,
            "Set Latent Noise Mask",
            "latent/inpaint",
            "Samples only the masked part of a picture's latent (the rest kept).",
            vec![link("samples", "LATENT"), link("mask", "MASK")],
            &["LATENT"],
        ),
        ENCODE_FOR_INPAINT => node(
            ENCODE_FOR_INPAINT,
            "VAE Encode (for Inpainting)",
            "latent/inpaint",
            "Encodes a picture with its mask grown by grow_mask_by pixels; only the masked part is sampled.",
            vec![link("pixels", "IMAGE"), link("vae", "VAE"), link("mask", "MASK"), int("grow_mask_by", 6, 0, 64, 1)],
            &["LATENT"],
        ),
        LOAD_MASK => node(
            LOAD_MASK,
            "Load Image (as Mask)",
            "mask",
            "One channel of a picture uploaded with /upload/image as a mask (alpha: transparent redraws).",
            vec![
                InputSpec { name: "image", kind: InputKind::Text { default: "", multiline: false } },
                InputSpec { name: "channel", kind: InputKind::Combo(CHANNELS.map(String::from).to_vec()) },
            ],
            &["MASK"],
        ),
        _ => return None,
    })
}

/// What a KSampler's `latent_image` starts from when it is a picture: the VAEEncode (or
/// VAEEncodeForInpaint) whose `pixels` it is, and its mask's node when it has one.
pub(super) fn encode_of(g: &ValidGraph, latent_id: &str) -> Result<(String, Option<String>), PromptError> {
    Ok(match g.nodes[latent_id].class_type.as_str() {
        NOISE_MASK => (follow(g, latent_id, "samples", &["VAEEncode"], 0)?.0, Some(latent_id.to_string())),
        ENCODE_FOR_INPAINT => (latent_id.to_string(), Some(latent_id.to_string())),
        _ => (latent_id.to_string(), None),
    })
}

/// The mask a job takes: an upload as it was sent, or a grey PNG worked out from the mask
/// nodes, which the prompt keeps as an upload before it submits the job.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskPicture {
    /// The artifact id of an upload.
    Upload(String),
    /// A grey PNG, white redrawing.
    Made(Vec<u8>),
}

impl MaskPicture {
    /// The upload's id, or the PNG to keep as one.
    pub fn split(self) -> (Option<String>, Option<Vec<u8>>) {
        match self {
            Self::Upload(id) => (Some(id), None),
            Self::Made(png) => (None, Some(png)),
        }
    }
}

/// The mask and the growth of mask node `node_id` (SetLatentNoiseMask or
/// VAEEncodeForInpaint) over `picture` (the upload of LoadImage `load_id`), with the nodes it
/// names for the roles. A loader's MASK that reelbox reads from the upload as ComfyUI does is
/// the upload; any other is worked out ([`mask_chain::Chain`]).
pub(super) fn mask_of(
    g: &ValidGraph,
    (node_id, encode_id): (&str, &str),
    (picture, load_id): (&Upload, &str),
    uploads: UploadLookup,
) -> Result<(MaskPicture, Option<i64>, Masking), PromptError> {
    let node = &g.nodes[node_id];
    let as_sent = match g.linked(node_id, "mask") {
        Some((l, n)) if (n.class_type == "LoadImage" && l.slot == 1) || n.class_type == LOAD_MASK => {
            as_sent(g, &l.node, uploads)?
        }
        Some((_, n)) if masks::is_mask_node(&n.class_type) => None,
        Some((l, n)) => {
            let why = format!(
                "mask comes from {} (node {}); reelbox takes a mask from a LoadImage's MASK, a LoadImageMask or \
                 the mask nodes ({})",
                n.class_type,
                l.node,
                masks::CLASS_TYPES.join(", ")
            );
            return Err(input_error(
                node_id,
                &node.class_type,
                "mask",
                "unsupported_graph",
                &why,
                &json!([l.node, l.slot]),
            ));
        }
        None => {
            return Err(unsupported(node_id, node, "mask must be linked to a LoadImage's MASK or a mask node".into()));
        }
    };
    let (mask, chain) = match as_sent {
        Some((source, upload)) => (MaskPicture::Upload(upload.id), vec![source]),
        None => {
            let chain = mask_chain::Chain::read(g, node_id, "mask", uploads)?;
            (MaskPicture::Made(chain.png(g, picture, load_id)?), chain.nodes())
        }
    };
    // ComfyUI's kernel of side `grow_mask_by` reaches half of it past each edge.
    let grow = (node.class_type == ENCODE_FOR_INPAINT)
        .then(|| node.inputs.get("grow_mask_by").and_then(int_value).unwrap_or(6) / 2)
        .and_then(|g| i64::try_from(g).ok());
    let (source, mut before) = match chain.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    if encode_id != node_id {
        before.push(encode_id.to_string());
    }
    let masking = Masking { node: node_id.to_string(), source, before };
    Ok((mask, grow, masking))
}

/// The loader `source_id` and its upload when reelbox reads the upload as ComfyUI reads its
/// MASK; `None` for a colour channel, which is worked out; a refusal where ComfyUI's mask
/// would be empty or the picture cannot be read.
fn as_sent(g: &ValidGraph, source_id: &str, uploads: UploadLookup) -> Result<Option<(String, Upload)>, PromptError> {
    let source = &g.nodes[source_id];
    let channel = if source.class_type == LOAD_MASK { text(source, "channel") } else { "alpha".into() };
    let upload = uploaded(g, source_id, uploads)?;
    match check_reading(&upload, &channel) {
        Ok(()) => Ok(Some((source_id.to_string(), upload))),
        Err(NotOurMask::Colour) => Ok(None),
        Err(why) => {
            let input = if channel == "alpha" { "image" } else { "channel" };
            let received = source.inputs.get(input).cloned().unwrap_or_default();
            Err(input_error(
                source_id,
                &source.class_type,
                input,
                "custom_validation_failed",
                &why.to_string(),
                &received,
            ))
        }
    }
}

/// Refuses a masked first pass that a second KSampler samples again (the hires fix): the
/// `image` kind redraws a masked picture in one pass.
pub(super) fn one_pass(g: &ValidGraph, first: &Sampling, second: &str) -> Result<(), PromptError> {
    let Some(m) = &first.mask else { return Ok(()) };
    let why = format!(
        "reelbox redraws a masked picture in one pass; node {second} samples its pictures again (a hires fix): \
         send the first pass's picture with its mask, or leave the second pass out"
    );
    Err(unsupported(&m.node, &g.nodes[&m.node], why))
}

/// Why an upload's MASK is not one reelbox reads as ComfyUI does.
#[derive(Debug, thiserror::Error)]
enum NotOurMask {
    #[error("cannot read the picture: {0}")]
    Unreadable(#[from] crate::media::picture::PictureError),
    // ComfyUI's mask of a picture without transparency is all zeros: nothing redrawn.
    #[error(
        "this picture has no transparent pixels, so its mask is empty and nothing would be redrawn; paint the part \
         to redraw in the mask editor (it saves it transparent), or load a black-and-white mask with LoadImageMask, \
         channel red"
    )]
    Empty,
    /// A colour channel of a coloured picture: reelbox's reading differs, so it is worked out.
    #[error("a colour channel of a coloured picture")]
    Colour,
}

/// Whether reelbox's reading of the upload (by alpha where it has transparent pixels, else by
/// grey) gives ComfyUI's mask of its `channel`; else why not.
fn check_reading(upload: &Upload, channel: &str) -> Result<(), NotOurMask> {
    let picture: DynamicImage = open_as_stored(&upload.path)?;
    match (channel, reads_by_alpha(&picture)) {
        ("alpha", true) => Ok(()),
        ("alpha", false) => Err(NotOurMask::Empty),
        (_, false) if is_grey(&picture) => Ok(()),
        _ => Err(NotOurMask::Colour),
    }
}

/// Whether every pixel is grey (red = green = blue), so its grey is each of its channels.
fn is_grey(picture: &DynamicImage) -> bool {
    picture.color().channel_count() < 3 || picture.to_rgb8().pixels().all(|p| p[0] == p[1] && p[1] == p[2])
}

//! The specs of ComfyUI's mask nodes between a MASK's loader and the sampler's
//! SetLatentNoiseMask or VAEEncodeForInpaint: InvertMask, GrowMask, ThresholdMask,
//! FeatherMask, ImageToMask, ImageColorToMask, SolidMask, MaskComposite, CropMask and
//! MaskToImage, as `comfy_extras/nodes_mask.py` gives them, and ImageInvert (`nodes.py`),
//! the picture node a mask's picture may pass (sizes and offsets up to the box's largest
//! side, as every size reelbox lists). Compile reads the nodes a mask passes and works it
//! out (`mask_chain`).

use super::mask_ops::{Channel, Operation};
use super::nodes::{InputKind, InputSpec, NodeSpec, float, int, link};

/// ComfyUI's mask nodes reelbox works out.
pub const CLASS_TYPES: [&str; 10] = [
    "InvertMask",
    "GrowMask",
    "ThresholdMask",
    "FeatherMask",
    "ImageToMask",
    "ImageColorToMask",
    "SolidMask",
    "MaskComposite",
    "CropMask",
    "MaskToImage",
];

/// ComfyUI's picture nodes reelbox works out on a mask's way (ImageInvert: a mask painted
/// black on white made white on black).
pub const IMAGE_NODES: [&str; 1] = ["ImageInvert"];

/// The mask nodes, then the picture node.
pub fn class_types() -> impl Iterator<Item = &'static str> {
    CLASS_TYPES.into_iter().chain(IMAGE_NODES)
}

/// The spec of a mask node, as ComfyUI defines it; `side` bounds its sizes and offsets.
pub(super) fn spec(class_type: &str, side: i128) -> Option<NodeSpec> {
    let mask = || link("mask", "MASK");
    let combo = |name, choices: &[&str]| InputSpec {
        name,
        kind: InputKind::Combo(choices.iter().map(|c| c.to_string()).collect()),
    };
    // ComfyUI's page shows it as a colour picker.
    let color = InputSpec {
        name: "color",
        kind: InputKind::Int { default: 0, min: 0, max: 0xFF_FFFF, step: 1, display: Some("color") },
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
            "One channel of a picture (a LoadImage's, a MaskToImage's) as a mask.",
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
        "ImageColorToMask" => (
            "ImageColorToMask",
            "1 where the picture is exactly color (0xRRGGBB), else 0: a mask painted in one colour.",
            vec![link("image", "IMAGE"), color],
        ),
        "CropMask" => (
            "CropMask",
            "The width × height part of the mask from x, y.",
            vec![
                mask(),
                int("x", 0, 0, side, 1),
                int("y", 0, 0, side, 1),
                int("width", 512, 1, side, 1),
                int("height", 512, 1, side, 1),
            ],
        ),
        "MaskToImage" => ("Convert Mask to Image", "The mask as a grey picture.", vec![mask()]),
        "ImageInvert" => ("Invert Image", "1 − each value of the picture.", vec![link("image", "IMAGE")]),
        _ => return None,
    };
    let class_type = class_types().find(|c| *c == class_type)?;
    let image = IMAGE_NODES.contains(&class_type);
    Some(NodeSpec {
        class_type,
        display_name,
        category: if image { "image" } else { "mask" },
        description,
        inputs,
        outputs: if is_mask_node(class_type) { &["MASK"] } else { &["IMAGE"] },
        output_node: false,
        python_module: if image { "nodes" } else { "comfy_extras.nodes_mask" },
    })
}

/// Whether a class type is one of the mask nodes that give a MASK.
pub(super) fn is_mask_node(class_type: &str) -> bool {
    CLASS_TYPES.contains(&class_type) && class_type != "MaskToImage"
}

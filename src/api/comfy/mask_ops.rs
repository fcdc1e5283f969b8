//! ComfyUI's mask arithmetic (`comfy_extras/nodes_mask.py`, `nodes.py`'s loaders and
//! ImageInvert) on reelbox's [`Mask`], whose 1 redraws as ComfyUI's MASK does, and on the
//! [`Picture`]s (ComfyUI's IMAGE) a mask is read from: values in float32 as PyTorch
//! computes them, the quirks kept (FeatherMask's `right` and `bottom` start at the first
//! column and row; `and`/`or`/`xor` and ImageColorToMask's bytes round halves to even).
//! Growing is [`Mask::spread`]'s, SciPy's steps in one pass.

use image::DynamicImage;

use crate::pipelines::diffusion::inpaint::Mask;

/// A picture's channel, as LoadImageMask and ImageToMask name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Red,
    Green,
    Blue,
    Alpha,
}

impl Channel {
    /// ComfyUI's names, in its order.
    pub const NAMES: [&str; 4] = ["red", "green", "blue", "alpha"];

    /// The channel a name means.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "red" => Self::Red,
            "green" => Self::Green,
            "blue" => Self::Blue,
            "alpha" => Self::Alpha,
            _ => return None,
        })
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How MaskComposite puts its source on its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Multiply,
    Add,
    Subtract,
    And,
    Or,
    Xor,
}

impl Operation {
    /// ComfyUI's names, in its order.
    pub const NAMES: [&str; 6] = ["multiply", "add", "subtract", "and", "or", "xor"];

    /// The operation a name means.
    pub fn named(name: &str) -> Option<Self> {
        let all = [Self::Multiply, Self::Add, Self::Subtract, Self::And, Self::Or, Self::Xor];
        Self::NAMES.iter().position(|n| *n == name).map(|i| all[i])
    }

    fn apply(self, d: f32, s: f32) -> f32 {
        // PyTorch's round() takes halves to even; bool() is "not zero".
        let on = |v: f32| v.round_ties_even() != 0.0;
        match self {
            Self::Multiply => d * s,
            Self::Add => d + s,
            Self::Subtract => d - s,
            Self::And => f32::from(u8::from(on(d) && on(s))),
            Self::Or => f32::from(u8::from(on(d) || on(s))),
            Self::Xor => f32::from(u8::from(on(d) != on(s))),
        }
    }
}

/// A mask of `width`×`height` values.
fn of(width: u32, height: u32, redraw: Vec<f32>) -> Mask {
    Mask { width, height, redraw }
}

/// A byte as ComfyUI's loaders read it (`np.float32(v) / 255`).
fn unit(v: u8) -> f32 {
    f32::from(v) / 255.0
}

/// LoadImage's MASK: 1 − alpha; for a picture without an alpha channel, ComfyUI's empty
/// 64×64 mask.
pub fn load_image(picture: &DynamicImage) -> Mask {
    if !picture.color().has_alpha() {
        return of(64, 64, vec![0.0; 64 * 64]);
    }
    let rgba = picture.to_rgba8();
    of(rgba.width(), rgba.height(), rgba.pixels().map(|p| 1.0 - unit(p[3])).collect())
}

/// LoadImageMask's `channel` of the picture read as RGBA (opaque where it has no alpha):
/// alpha inverted (transparent redraws), a colour as it is.
pub fn load_image_mask(picture: &DynamicImage, channel: Channel) -> Mask {
    let rgba = picture.to_rgba8();
    let read = |v: u8| if channel == Channel::Alpha { 1.0 - unit(v) } else { unit(v) };
    of(rgba.width(), rgba.height(), rgba.pixels().map(|p| read(p[channel.index()])).collect())
}

/// An IMAGE on a mask's way: red, green and blue 0…1 a pixel, row by row. Every IMAGE
/// reelbox reads a mask from is RGB, as LoadImage's and MaskToImage's are in ComfyUI.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<[f32; 3]>,
}

/// LoadImage's IMAGE: the picture as RGB (alpha dropped, not blended), each byte / 255.
pub fn load_picture(picture: &DynamicImage) -> Picture {
    let rgb = picture.to_rgb8();
    Picture { width: rgb.width(), height: rgb.height(), rgb: rgb.pixels().map(|p| p.0.map(unit)).collect() }
}

/// MaskToImage: the mask's value in each channel.
pub fn mask_to_image(mask: Mask) -> Picture {
    Picture { width: mask.width, height: mask.height, rgb: mask.redraw.into_iter().map(|v| [v; 3]).collect() }
}

/// ImageInvert: 1 − each value.
pub fn invert_image(mut picture: Picture) -> Picture {
    picture.rgb.iter_mut().flatten().for_each(|v| *v = 1.0 - *v);
    picture
}

/// ImageToMask's colour `channel` of an IMAGE; `None` for alpha, which an RGB IMAGE lacks.
pub fn image_channel(picture: &Picture, channel: Channel) -> Option<Mask> {
    let i = (channel != Channel::Alpha).then(|| channel.index())?;
    Some(of(picture.width, picture.height, picture.rgb.iter().map(|p| p[i]).collect()))
}

/// ImageColorToMask: 1 where the pixel is `color`, else 0; each channel clamped to 0…1,
/// times 255 and rounded (halves to even, as `torch.round`), packed as
/// (red << 16) + (green << 8) + blue. (ComfyUI's gave 255 for 1 before mid 2025, PR #8771.)
pub fn color_mask(picture: &Picture, color: u32) -> Mask {
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u32;
    let packed = |[r, g, b]: [f32; 3]| (byte(r) << 16) + (byte(g) << 8) + byte(b);
    let redraw = picture.rgb.iter().map(|p| f32::from(u8::from(packed(*p) == color))).collect();
    of(picture.width, picture.height, redraw)
}

/// CropMask: `width`×`height` values from (`x`, `y`), cut short at the mask's edges as
/// slicing is; `None` where (`x`, `y`) is past them, which leaves nothing.
pub fn crop(mask: &Mask, (x, y): (u32, u32), (width, height): (u32, u32)) -> Option<Mask> {
    if x >= mask.width || y >= mask.height {
        return None;
    }
    let (w, h) = (width.min(mask.width - x), height.min(mask.height - y));
    let row = |r: u32| {
        let start = ((y + r) * mask.width + x) as usize;
        mask.redraw[start..start + w as usize].iter().copied()
    };
    Some(of(w, h, (0..h).flat_map(row).collect()))
}

/// SolidMask: `value` everywhere.
pub fn solid(value: f32, width: u32, height: u32) -> Mask {
    of(width, height, vec![value; width as usize * height as usize])
}

/// InvertMask: 1 − each value.
pub fn invert(mut mask: Mask) -> Mask {
    mask.redraw.iter_mut().for_each(|v| *v = 1.0 - *v);
    mask
}

/// ThresholdMask: 1 above `value`, else 0.
pub fn threshold(mut mask: Mask, value: f32) -> Mask {
    mask.redraw.iter_mut().for_each(|v| *v = f32::from(u8::from(*v > value)));
    mask
}

/// FeatherMask: each side's first `n` columns or rows scaled by (k + 1) / n, k counted from
/// that side. As ComfyUI indexes `-k`, the right side's k = 0 is the first column, not the
/// last (and the bottom's the first row): the last column is scaled by 2 / n.
pub fn feather(mut mask: Mask, [left, top, right, bottom]: [u32; 4]) -> Mask {
    let (w, h) = (mask.width as usize, mask.height as usize);
    let (left, right) = ((left as usize).min(w), (right as usize).min(w));
    let (top, bottom) = ((top as usize).min(h), (bottom as usize).min(h));
    let rate = |k: usize, n: usize| ((k as f64 + 1.0) / n as f64) as f32;
    let from_end = |k: usize, len: usize| if k == 0 { 0 } else { len - k };
    let mut scale_column = |x: usize, r: f32| (0..h).for_each(|y| mask.redraw[y * w + x] *= r);
    (0..left).for_each(|k| scale_column(k, rate(k, left)));
    (0..right).for_each(|k| scale_column(from_end(k, w), rate(k, right)));
    let mut scale_row = |y: usize, r: f32| mask.redraw[y * w..(y + 1) * w].iter_mut().for_each(|v| *v *= r);
    (0..top).for_each(|k| scale_row(k, rate(k, top)));
    (0..bottom).for_each(|k| scale_row(from_end(k, h), rate(k, bottom)));
    mask
}

/// MaskComposite: `source` put on `destination` at (`x`, `y`) by `operation` where they
/// overlap (the destination's size kept), then every value clamped to 0…1.
pub fn composite(mut destination: Mask, source: &Mask, (x, y): (u32, u32), operation: Operation) -> Mask {
    let (dw, dh) = (destination.width as usize, destination.height as usize);
    let (sw, sh) = (source.width as usize, source.height as usize);
    let (left, top) = (x as usize, y as usize);
    for row in top..(top + sh).min(dh) {
        for col in left..(left + sw).min(dw) {
            let d = &mut destination.redraw[row * dw + col];
            *d = operation.apply(*d, source.redraw[(row - top) * sw + col - left]);
        }
    }
    destination.redraw.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    destination
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn row(values: &[f32]) -> Mask {
        of(values.len() as u32, 1, values.to_vec())
    }

    #[test]
    fn the_loaders_read_as_comfyui_does() {
        let rgba = RgbaImage::from_fn(3, 1, |x, _| Rgba([255, 51, 0, [0, 255, 102][x as usize]]));
        let rgba = DynamicImage::ImageRgba8(rgba);
        assert_eq!(load_image(&rgba).redraw, [1.0, 0.0, 1.0 - 0.4]);
        assert_eq!(load_image_mask(&rgba, Channel::Alpha).redraw, load_image(&rgba).redraw);
        assert_eq!(load_image_mask(&rgba, Channel::Green).redraw, [0.2; 3]);
        let image = load_picture(&rgba);
        assert_eq!(image_channel(&image, Channel::Red).map(|m| m.redraw), Some(vec![1.0; 3]), "alpha dropped");
        assert_eq!(image_channel(&image, Channel::Alpha), None, "LoadImage's IMAGE is RGB");
        // No alpha channel: LoadImage's MASK is ComfyUI's empty 64×64; LoadImageMask's alpha all kept.
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(2, 2, Rgb([255, 0, 0])));
        assert_eq!((load_image(&rgb).width, load_image(&rgb).redraw.iter().sum::<f32>()), (64, 0.0));
        assert_eq!(load_image_mask(&rgb, Channel::Alpha).redraw, [0.0; 4]);
    }

    #[test]
    fn invert_threshold_and_solid() {
        assert_eq!(invert(row(&[0.0, 0.25, 1.0])).redraw, [1.0, 0.75, 0.0]);
        assert_eq!(threshold(row(&[0.5, 0.51, 0.2]), 0.5).redraw, [0.0, 1.0, 0.0], "strictly above");
        assert_eq!(solid(0.5, 2, 3).redraw, [0.5; 6]);
    }

    #[test]
    fn feather_scales_each_sides_columns_with_comfyuis_indexing() {
        let left = feather(row(&[1.0; 6]), [3, 0, 0, 0]);
        assert_eq!(left.redraw, [1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0, 1.0, 1.0]);
        // ComfyUI's output[:, :, -x] for x = 0 is column 0: the first column, then the last ones.
        let right = feather(row(&[1.0; 6]), [0, 0, 3, 0]);
        assert_eq!(right.redraw, [1.0 / 3.0, 1.0, 1.0, 1.0, 1.0, 2.0 / 3.0]);
        let column = of(1, 4, vec![1.0; 4]);
        assert_eq!(
            feather(column, [0, 2, 0, 2]).redraw,
            [0.25, 1.0, 1.0, 1.0],
            "top 1/2, then bottom's k = 0 on row 0"
        );
        assert_eq!(feather(row(&[1.0; 2]), [9, 0, 0, 0]).redraw, [0.5, 1.0], "a side no wider than the mask");
    }

    #[test]
    fn composite_overlaps_by_each_operation_then_clamps() {
        let d = || row(&[0.0, 0.25, 0.75, 1.0]);
        let s = row(&[0.5, 0.5, 0.5]);
        let at = |op| composite(d(), &s, (1, 0), op).redraw;
        assert_eq!(at(Operation::Multiply), [0.0, 0.125, 0.375, 0.5]);
        assert_eq!(at(Operation::Add), [0.0, 0.75, 1.0, 1.0]);
        assert_eq!(at(Operation::Subtract), [0.0, 0.0, 0.25, 0.5]);
        // 0.5 rounds to 0 (halves to even): "and" of anything with it is off, "or" the other's.
        assert_eq!(at(Operation::And), [0.0, 0.0, 0.0, 0.0]);
        assert_eq!(at(Operation::Or), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(at(Operation::Xor), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(composite(d(), &s, (9, 0), Operation::Add).redraw, d().redraw, "no overlap: unchanged");
        assert_eq!(Operation::named("xor"), Some(Operation::Xor));
        assert_eq!(Operation::named("divide"), None);
    }

    #[test]
    fn pictures_masks_and_colours_round_trip_as_comfyui_computes_them() {
        let m = row(&[0.0, 0.3, 1.0]);
        let image = mask_to_image(m.clone());
        assert_eq!(image.rgb, [[0.0; 3], [0.3; 3], [1.0; 3]]);
        assert_eq!(image_channel(&image, Channel::Blue), Some(m), "MaskToImage → ImageToMask gives the mask back");
        assert_eq!(image_channel(&invert_image(image), Channel::Green).map(|m| m.redraw), Some(vec![1.0, 0.7, 0.0]));
        // Red painted on white, one pixel a shade off: only the exact colour is 1.
        let painted =
            RgbImage::from_fn(4, 1, |x, _| Rgb([[255, 255, 254, 255][x as usize], [0, 255, 0, 0][x as usize], 0]));
        let painted = load_picture(&DynamicImage::ImageRgb8(painted));
        assert_eq!(color_mask(&painted, 0xFF0000).redraw, [1.0, 0.0, 0.0, 1.0]);
        assert_eq!(color_mask(&painted, 0xFFFF00).redraw, [0.0, 1.0, 0.0, 0.0]);
        // Values past 0…1 (an inverted mask's can be) clamp first.
        let odd = Picture { width: 2, height: 1, rgb: vec![[-0.2, 0.0, 0.0], [1.5, 1.0, 1.0]] };
        assert_eq!(color_mask(&odd, 0).redraw, [1.0, 0.0]);
        assert_eq!(color_mask(&odd, 0xFFFFFF).redraw, [0.0, 1.0]);
    }

    #[test]
    fn crop_cuts_short_at_the_edges_and_refuses_past_them() {
        let m = of(3, 2, vec![0.0, 0.1, 0.2, 1.0, 1.1, 1.2]);
        assert_eq!(crop(&m, (1, 0), (2, 1)), Some(of(2, 1, vec![0.1, 0.2])));
        assert_eq!(crop(&m, (2, 1), (512, 512)), Some(of(1, 1, vec![1.2])), "as slicing does");
        assert_eq!((crop(&m, (3, 0), (1, 1)), crop(&m, (0, 2), (1, 1))), (None, None));
    }
}

//! ComfyUI's mask arithmetic (`comfy_extras/nodes_mask.py`, `nodes.py`'s loaders) on
//! reelbox's [`Mask`], whose 1 redraws as ComfyUI's MASK does: values in float32 as
//! PyTorch computes them, the quirks kept (FeatherMask's `right` and `bottom` start at the
//! first column and row; `and`/`or`/`xor` round halves to even). Growing is
//! [`Mask::spread`]'s, SciPy's steps in one pass.

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

/// ImageToMask's colour `channel` of LoadImage's IMAGE (the picture as RGB, alpha dropped);
/// `None` for alpha, which that IMAGE lacks.
pub fn image_channel(picture: &DynamicImage, channel: Channel) -> Option<Mask> {
    if channel == Channel::Alpha {
        return None;
    }
    let rgb = picture.to_rgb8();
    Some(of(rgb.width(), rgb.height(), rgb.pixels().map(|p| unit(p[channel.index()])).collect()))
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
        assert_eq!(image_channel(&rgba, Channel::Red).map(|m| m.redraw), Some(vec![1.0; 3]), "alpha dropped");
        assert_eq!(image_channel(&rgba, Channel::Alpha), None, "LoadImage's IMAGE is RGB");
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
}

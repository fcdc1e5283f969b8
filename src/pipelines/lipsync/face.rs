//! Face geometry for lip-sync: boxes (given, or found by an optional detector), Wav2Lip's
//! padding and temporal smoothing, the 96×96 network input, and pasting the generated
//! face back with a feathered edge that never touches pixels outside the box.

use image::imageops::{FilterType, crop_imm, resize};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// Side of the square face crop Wav2Lip works on.
pub const FACE_SIZE: usize = 96;
/// Wav2Lip's default box padding in pixels: top, bottom, left, right (the chin needs room).
pub const WAV2LIP_PADS: [u32; 4] = [0, 10, 0, 0];
/// Frames averaged when smoothing detected boxes (Wav2Lip's `T`).
pub const SMOOTH_WINDOW: usize = 5;
/// Longest side a portrait (still or video) is lip-synced at: Full HD, which phones and
/// browsers play. Wav2Lip sees a 96×96 face crop, so the lips lose nothing, while a batch of
/// frames the size of a 48-megapixel phone photo would hold gigabytes, and a 4K phone video
/// would fit only a second of frames in the source-frame budget.
pub const MAX_PORTRAIT_SIDE: u32 = 1920;

/// A `width`×`height` frame's size scaled down to at most `max_side` pixels a side (even
/// sides, as H.264 wants), and the scale applied; the size as it is and 1 when it fits.
pub fn fit_size(width: u32, height: u32, max_side: u32) -> (u32, u32, f64) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height, 1.0);
    }
    let scale = f64::from(max_side) / f64::from(long);
    let side = |v: u32| (((f64::from(v) * scale) as u32) & !1).max(2);
    (side(width), side(height), scale)
}

/// `portrait` scaled down by [`fit_size`] (returned as it is when it fits) and the scale
/// applied; boxes on it follow with [`FaceBox::scaled`].
pub fn fit_still(portrait: RgbImage, max_side: u32) -> (RgbImage, f64) {
    let (w, h, scale) = fit_size(portrait.width(), portrait.height(), max_side);
    if scale == 1.0 {
        return (portrait, scale);
    }
    (resize(&portrait, w, h, FilterType::Triangle), scale)
}

/// A face rectangle in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl FaceBox {
    /// A box from its corner and size.
    pub fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// A box from `[x, y, w, h]`, the API's and profile's spelling.
    pub fn from_xywh(b: [u32; 4]) -> Self {
        Self::new(b[0], b[1], b[2], b[3])
    }

    /// The box grown by `pads` (top, bottom, left, right) and clipped to a `width`×`height`
    /// image; `None` when nothing of it lies inside the image.
    pub fn padded(&self, pads: [u32; 4], width: u32, height: u32) -> Option<FaceBox> {
        let x1 = self.x.saturating_sub(pads[2]);
        let y1 = self.y.saturating_sub(pads[0]);
        let x2 = self.x.saturating_add(self.w).saturating_add(pads[3]).min(width);
        let y2 = self.y.saturating_add(self.h).saturating_add(pads[1]).min(height);
        (x2 > x1 && y2 > y1).then(|| FaceBox::new(x1, y1, x2 - x1, y2 - y1))
    }

    /// The box on the picture scaled by `scale` ([`fit_size`], [`fit_still`]); like the picture's, its
    /// edges are clipped where it is used ([`FaceBox::padded`]).
    pub fn scaled(&self, scale: f64) -> FaceBox {
        let at = |v: u32| (f64::from(v) * scale).round() as u32;
        FaceBox::new(at(self.x), at(self.y), at(self.w).max(1), at(self.h).max(1))
    }

    /// Whether pixel (x, y) lies inside the box.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x - self.x < self.w && y - self.y < self.h
    }
}

/// Finds the face in a frame; implemented by face-detector models when one is installed.
pub trait FaceDetector: Send + Sync {
    /// The most prominent face, or `None` when there is none.
    fn detect(&self, frame: &RgbImage) -> Result<Option<FaceBox>, super::LipsyncError>;
}

/// Wav2Lip's box smoothing: each box becomes the mean of itself and the next `window − 1`
/// boxes (the last `window` boxes near the end), which steadies jittery detections.
pub fn smooth_boxes(boxes: &[FaceBox], window: usize) -> Vec<FaceBox> {
    let n = boxes.len();
    let window = window.clamp(1, n.max(1));
    (0..n)
        .map(|i| {
            let start = if i + window > n { n - window } else { i };
            let slice = &boxes[start..start + window];
            let mean = |f: fn(&FaceBox) -> (u32, u32)| {
                let (a, b) = slice.iter().map(f).fold((0u64, 0u64), |(sa, sb), (a, b)| (sa + a as u64, sb + b as u64));
                ((a as f64 / window as f64) as u32, (b as f64 / window as f64) as u32)
            };
            // Mean of corners, as Wav2Lip averages (x1, y1, x2, y2), then back to a size.
            let (x1, y1) = mean(|b| (b.x, b.y));
            let (x2, y2) = mean(|b| (b.x + b.w, b.y + b.h));
            FaceBox::new(x1, y1, x2.saturating_sub(x1).max(1), y2.saturating_sub(y1).max(1))
        })
        .collect()
}

/// Writes the network input for one face into `out` (`6·96·96` floats, CHW): the crop
/// resized to 96×96 in BGR order with rows ≥ 48 zeroed, then the unmasked crop; /255.
pub fn face_input(frame: &RgbImage, face: FaceBox, out: &mut [f32]) {
    let crop = crop_imm(frame, face.x, face.y, face.w, face.h).to_image();
    let face_img = resize(&crop, FACE_SIZE as u32, FACE_SIZE as u32, FilterType::Triangle);
    let plane = FACE_SIZE * FACE_SIZE;
    for (i, px) in face_img.pixels().enumerate() {
        let row = i / FACE_SIZE;
        for c in 0..3 {
            // BGR: channel c takes RGB component 2 − c.
            let v = f32::from(px.0[2 - c]) / 255.0;
            out[(3 + c) * plane + i] = v;
            out[c * plane + i] = if row >= FACE_SIZE / 2 { 0.0 } else { v };
        }
    }
}

/// Blend weight per pixel of a `w`×`h` box: 1 inside, falling smoothly to 0 at the edge
/// over `feather` pixels.
pub fn feather_mask(w: u32, h: u32, feather: f32) -> Vec<f32> {
    let feather = feather.max(1.0);
    let mut mask = Vec::with_capacity(w as usize * h as usize);
    for y in 0..h {
        for x in 0..w {
            let d = (x as f32 + 0.5).min(w as f32 - x as f32 - 0.5).min(y as f32 + 0.5).min(h as f32 - y as f32 - 0.5);
            let t = (d / feather).clamp(0.0, 1.0);
            mask.push(t * t * (3.0 - 2.0 * t));
        }
    }
    mask
}

/// Feather width for a box: a tenth of its shorter side.
pub fn feather_for(face: FaceBox) -> f32 {
    (face.w.min(face.h) as f32 * 0.1).max(1.0)
}

/// Converts a predicted face (`3·96·96` floats, BGR, CHW, [0, 1]) to an RGB image.
pub fn predicted_face(pred: &[f32]) -> RgbImage {
    let plane = FACE_SIZE * FACE_SIZE;
    // +0.5 and truncation rounds the non-negative values clamp leaves.
    let to_u8 = |v: f32| ((v * 255.0).clamp(0.0, 255.0) + 0.5) as u8;
    RgbImage::from_fn(FACE_SIZE as u32, FACE_SIZE as u32, |x, y| {
        let i = y as usize * FACE_SIZE + x as usize;
        Rgb([to_u8(pred[2 * plane + i]), to_u8(pred[plane + i]), to_u8(pred[i])])
    })
}

/// Pastes a predicted face into `frame` inside `face`, resized to the box and blended
/// through `mask` (from [`feather_mask`]); pixels outside the box are left untouched.
pub fn paste_face(frame: &mut RgbImage, face: FaceBox, pred: &[f32], mask: &[f32]) {
    let resized = resize(&predicted_face(pred), face.w, face.h, FilterType::Triangle);
    let (fw, bw) = (frame.width() as usize, face.w as usize);
    let dst: &mut [u8] = frame;
    for (dy, (src, alpha)) in resized.chunks_exact(bw * 3).zip(mask.chunks_exact(bw)).enumerate() {
        let start = ((face.y as usize + dy) * fw + face.x as usize) * 3;
        let line = &mut dst[start..start + bw * 3];
        for ((d, s), &a) in line.chunks_exact_mut(3).zip(src.chunks_exact(3)).zip(alpha) {
            for c in 0..3 {
                let v = a * f32::from(s[c]) + (1.0 - a) * f32::from(d[c]);
                d[c] = (v.clamp(0.0, 255.0) + 0.5) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_still_is_scaled_to_fit_with_its_face_box_and_a_small_one_is_kept() {
        let (small, scale) = fit_still(RgbImage::new(3000, 4000), MAX_PORTRAIT_SIDE);
        assert_eq!(small.dimensions(), (1440, 1920));
        assert_eq!(FaceBox::new(1000, 2000, 600, 800).scaled(scale), FaceBox::new(480, 960, 288, 384));
        let (kept, scale) = fit_still(RgbImage::new(121, 160), MAX_PORTRAIT_SIDE);
        assert_eq!((kept.dimensions(), scale), ((121, 160), 1.0));
        assert_eq!(FaceBox::new(5, 6, 7, 8).scaled(scale), FaceBox::new(5, 6, 7, 8));
        // A 4K phone video's frames; odd sides rounded down to even.
        assert_eq!(fit_size(3840, 2160, MAX_PORTRAIT_SIDE), (1920, 1080, 0.5));
        assert_eq!(fit_size(1921, 1081, 1920).0 % 2, 0);
    }

    #[test]
    fn padding_grows_the_chin_and_clips_to_the_image() {
        let b = FaceBox::new(10, 20, 30, 40);
        assert_eq!(b.padded(WAV2LIP_PADS, 100, 100), Some(FaceBox::new(10, 20, 30, 50)));
        assert_eq!(b.padded(WAV2LIP_PADS, 100, 65), Some(FaceBox::new(10, 20, 30, 45)));
        assert_eq!(FaceBox::new(200, 0, 10, 10).padded(WAV2LIP_PADS, 100, 100), None);
    }

    #[test]
    fn smoothing_averages_a_forward_window_like_wav2lip() {
        let boxes: Vec<FaceBox> = (0..6).map(|i| FaceBox::new(i * 10, 0, 10, 10)).collect();
        let s = smooth_boxes(&boxes, 5);
        // i=0: mean x of 0..5 = 20; i=1 and later use the last five: mean 30.
        assert_eq!(s[0], FaceBox::new(20, 0, 10, 10));
        assert_eq!(s[1], FaceBox::new(30, 0, 10, 10));
        assert_eq!(s[5], FaceBox::new(30, 0, 10, 10));
    }

    #[test]
    fn face_input_is_bgr_with_the_lower_half_masked() {
        let frame = RgbImage::from_pixel(50, 50, Rgb([255, 0, 51]));
        let mut out = vec![0.0; 6 * FACE_SIZE * FACE_SIZE];
        face_input(&frame, FaceBox::new(5, 5, 40, 40), &mut out);
        let plane = FACE_SIZE * FACE_SIZE;
        let at = |c: usize, row: usize| out[c * plane + row * FACE_SIZE + 10];
        assert_eq!((at(0, 10), at(2, 10)), (0.2, 1.0)); // B, R of the masked copy, upper half
        assert_eq!((at(0, 60), at(2, 60)), (0.0, 0.0)); // masked lower half
        assert_eq!((at(3, 60), at(5, 60)), (0.2, 1.0)); // reference copy keeps it
    }

    #[test]
    fn paste_changes_only_pixels_inside_the_box() {
        let mut frame = RgbImage::from_pixel(64, 48, Rgb([10, 20, 30]));
        let before = frame.clone();
        let face = FaceBox::new(20, 10, 25, 30);
        let pred = vec![1.0; 3 * FACE_SIZE * FACE_SIZE];
        paste_face(&mut frame, face, &pred, &feather_mask(face.w, face.h, feather_for(face)));
        for (x, y, px) in frame.enumerate_pixels() {
            if !face.contains(x, y) {
                assert_eq!(px, before.get_pixel(x, y), "({x},{y}) changed");
            }
        }
        assert_eq!(frame.get_pixel(32, 25).0, [255, 255, 255]); // centre fully replaced
        assert!(frame.get_pixel(20, 25).0[0] < 128); // edge mostly original
    }
}

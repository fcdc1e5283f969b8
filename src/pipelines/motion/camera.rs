//! Camera moves over a still keyframe ("Ken Burns"): a view rectangle with the output's
//! aspect ratio zooms and pans across the picture with easing, sampled bilinearly.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How progress through a move is shaped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Easing {
    Linear,
    /// Slow start and end (smoothstep).
    InOut,
    /// Starts fast, settles.
    Out,
}

impl Easing {
    /// Maps linear time `t` ∈ [0, 1] to eased progress ∈ [0, 1].
    pub fn apply(self, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Easing::Linear => t,
            Easing::InOut => t * t * (3.0 - 2.0 * t),
            Easing::Out => 1.0 - (1.0 - t) * (1.0 - t),
        }
    }
}

/// A camera move. Zoom 1 shows the largest output-shaped rectangle that fits the keyframe;
/// zoom 2 shows half of it. Pan −1…1 places the view from one edge of the remaining
/// room to the other (0 = centred), per axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraMove {
    pub zoom_from: f64,
    pub zoom_to: f64,
    pub pan_from: (f64, f64),
    pub pan_to: (f64, f64),
    pub easing: Easing,
}

impl CameraMove {
    /// No movement: the centred, fitted view throughout.
    pub fn still() -> Self {
        Self { zoom_from: 1.0, zoom_to: 1.0, pan_from: (0.0, 0.0), pan_to: (0.0, 0.0), easing: Easing::Linear }
    }

    /// A gentle move chosen by `seed`: zoom in, zoom out, or a pan in one of four
    /// directions (at a slight zoom, so there is room to pan). The same seed always
    /// gives the same move.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let amount = rng.random_range(1.12..1.30);
        let drift = (rng.random_range(-0.3..0.3), rng.random_range(-0.3..0.3));
        let easing = if rng.random_bool(0.5) { Easing::InOut } else { Easing::Out };
        let pan = |from: (f64, f64), to: (f64, f64)| Self {
            zoom_from: amount,
            zoom_to: amount,
            pan_from: from,
            pan_to: to,
            easing,
        };
        match rng.random_range(0..6u32) {
            0 => Self { zoom_from: 1.0, zoom_to: amount, pan_from: (0.0, 0.0), pan_to: drift, easing },
            1 => Self { zoom_from: amount, zoom_to: 1.0, pan_from: drift, pan_to: (0.0, 0.0), easing },
            2 => pan((-0.8, drift.1), (0.8, drift.1)),
            3 => pan((0.8, drift.1), (-0.8, drift.1)),
            4 => pan((drift.0, -0.8), (drift.0, 0.8)),
            _ => pan((drift.0, 0.8), (drift.0, -0.8)),
        }
    }

    /// The view rectangle (x, y, w, h) in keyframe pixels at time `t` ∈ [0, 1].
    pub fn view(&self, t: f64, key_w: u32, key_h: u32, out_w: u32, out_h: u32) -> (f64, f64, f64, f64) {
        let e = self.easing.apply(t);
        let lerp = |a: f64, b: f64| a + (b - a) * e;
        let zoom = lerp(self.zoom_from, self.zoom_to).max(1.0);
        let (kw, kh) = (f64::from(key_w), f64::from(key_h));
        let aspect = f64::from(out_w.max(1)) / f64::from(out_h.max(1));
        let (fit_w, fit_h) = if kw / kh > aspect { (kh * aspect, kh) } else { (kw, kw / aspect) };
        let (vw, vh) = (fit_w / zoom, fit_h / zoom);
        let (px, py) = (lerp(self.pan_from.0, self.pan_to.0), lerp(self.pan_from.1, self.pan_to.1));
        let x = (kw - vw) / 2.0 * (1.0 + px.clamp(-1.0, 1.0));
        let y = (kh - vh) / 2.0 * (1.0 + py.clamp(-1.0, 1.0));
        (x, y, vw, vh)
    }
}

/// One frame of `mv` over `keyframe` at time `t` ∈ [0, 1], `out_w`×`out_h`, bilinear.
pub fn camera_frame(keyframe: &RgbImage, mv: &CameraMove, t: f64, out_w: u32, out_h: u32) -> RgbImage {
    let (kw, kh) = keyframe.dimensions();
    if kw == 0 || kh == 0 {
        return RgbImage::new(out_w, out_h);
    }
    let (vx, vy, vw, vh) = mv.view(t, kw, kh, out_w, out_h);
    // Every row samples the same columns and every column the same rows: source positions
    // and weights are worked out once per frame, not once per pixel. Pixel centres map to
    // pixel centres.
    let taps = |start: f64, step: f64, n: u32, len: u32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let f = (start + (f64::from(i) + 0.5) * step - 0.5).clamp(0.0, f64::from(len - 1));
                let i0 = f.floor() as u32;
                (i0 as usize, (i0 + 1).min(len - 1) as usize, (f - f64::from(i0)) as f32)
            })
            .collect()
    };
    let cols = taps(vx, vw / f64::from(out_w.max(1)), out_w, kw);
    let rows = taps(vy, vh / f64::from(out_h.max(1)), out_h, kh);
    let (raw, stride) = (keyframe.as_raw(), kw as usize * 3);
    let mut out = RgbImage::new(out_w, out_h);
    for (line, &(y0, y1, ay)) in out.chunks_exact_mut(out_w as usize * 3).zip(&rows) {
        let (top, bottom) = (&raw[y0 * stride..][..stride], &raw[y1 * stride..][..stride]);
        for (px, &(x0, x1, ax)) in line.chunks_exact_mut(3).zip(&cols) {
            for (c, p) in px.iter_mut().enumerate() {
                let (a, b) = (f32::from(top[x0 * 3 + c]), f32::from(top[x1 * 3 + c]));
                let (d, e) = (f32::from(bottom[x0 * 3 + c]), f32::from(bottom[x1 * 3 + c]));
                let (upper, lower) = (a + (b - a) * ax, d + (e - d) * ax);
                // +0.5 and truncation rounds the non-negative values clamp leaves.
                *p = ((upper + (lower - upper) * ay).clamp(0.0, 255.0) + 0.5) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn easing_starts_and_ends_in_place() {
        for e in [Easing::Linear, Easing::InOut, Easing::Out] {
            assert_eq!((e.apply(0.0), e.apply(1.0)), (0.0, 1.0));
        }
        assert_eq!(Easing::InOut.apply(0.5), 0.5);
        assert!(Easing::Out.apply(0.5) > 0.5);
    }

    #[test]
    fn the_fitted_view_keeps_the_output_aspect() {
        // 400×300 keyframe, 16:9 output: full width, 225 rows, centred.
        let (x, y, w, h) = CameraMove::still().view(0.3, 400, 300, 160, 90);
        assert_eq!((x, y, w, h), (0.0, 37.5, 400.0, 225.0));
        let zoomed = CameraMove { zoom_from: 2.0, zoom_to: 2.0, ..CameraMove::still() };
        assert_eq!(zoomed.view(0.0, 400, 300, 160, 90), (100.0, 93.75, 200.0, 112.5));
    }

    #[test]
    fn an_unmoved_same_size_view_reproduces_the_keyframe() {
        let key = RgbImage::from_fn(40, 30, |x, y| Rgb([x as u8 * 6, y as u8 * 8, 99]));
        assert_eq!(camera_frame(&key, &CameraMove::still(), 0.5, 40, 30), key);
    }
}

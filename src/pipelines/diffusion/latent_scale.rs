//! A sampler's latents scaled to another size, as ComfyUI's LatentUpscale and LatentUpscaleBy
//! scale them (`comfy.utils.common_upscale`): a centre crop in whole latent cells, then
//! PyTorch's `F.interpolate` with `align_corners=False` (`nearest-exact`, `bilinear`,
//! `bicubic`, `area`) or ComfyUI's own `bislerp`. Pure math on `[C, H, W]` planes of `f32`,
//! computed in `f32` as PyTorch does, so a hires fix starts from the latent ComfyUI's would.

use crate::media::resize::{Method, Region};

/// The height and width of a latent, in cells.
pub type Cells = (usize, usize);

/// `region` of the `[c, h, w]` latent `src` (ComfyUI's `crop: center` before it scales).
pub fn crop(src: &[f32], c: usize, (h, w): Cells, region: Region) -> Vec<f32> {
    let (x, y, rw, rh) = (region.x as usize, region.y as usize, region.width as usize, region.height as usize);
    let mut out = Vec::with_capacity(c * rh * rw);
    for plane in src.chunks(h * w).take(c) {
        for row in plane.chunks(w).skip(y).take(rh) {
            out.extend_from_slice(&row[x..x + rw]);
        }
    }
    out
}

/// The `[c, h, w]` latent `src` scaled to `to` cells by `method`. `lanczos` is not a latent's
/// method (ComfyUI's latent nodes do not offer it; requests are refused before): it scales as
/// `bicubic` does.
pub fn scale(src: &[f32], c: usize, from: Cells, to: Cells, method: Method) -> Vec<f32> {
    if from == to {
        return src.to_vec();
    }
    if method == Method::Bislerp {
        return bislerp(src, c, from, to);
    }
    let taps = |old: usize, new: usize| match method {
        Method::NearestExact => nearest_exact(old, new),
        Method::Bilinear => linear(old, new),
        Method::Area => area(old, new),
        Method::Bicubic | Method::Lanczos | Method::Bislerp => cubic(old, new),
    };
    // Each of these is separable: rows first, then columns.
    let across = along_width(src, c * from.0, from.1, &taps(from.1, to.1));
    along_height(&across, c, from.0, to.1, &taps(from.0, to.0))
}

/// One output cell's sources along a side: `(input index, weight)`.
type Taps = Vec<Vec<(usize, f32)>>;

/// PyTorch's scale of a side, `input / output`, in `f32`.
fn ratio(old: usize, new: usize) -> f32 {
    old as f32 / new as f32
}

/// `nearest-exact`: the cell whose centre is nearest, `floor((j + 0.5) · scale)`.
fn nearest_exact(old: usize, new: usize) -> Taps {
    let s = ratio(old, new);
    (0..new).map(|j| vec![((((j as f32 + 0.5) * s).floor() as usize).min(old - 1), 1.0)]).collect()
}

/// The source coordinate of output cell `j` with pixel centres aligned (`align_corners=False`).
fn centre(j: usize, s: f32) -> f32 {
    (j as f32 + 0.5) * s - 0.5
}

/// `bilinear`: the two nearest cells, the coordinate clamped at 0 as PyTorch does.
fn linear(old: usize, new: usize) -> Taps {
    let s = ratio(old, new);
    (0..new).map(|j| linear_pair(centre(j, s).max(0.0), old)).collect()
}

fn linear_pair(x: f32, old: usize) -> Vec<(usize, f32)> {
    let i0 = (x as usize).min(old - 1);
    let i1 = (i0 + 1).min(old - 1);
    let l = x - i0 as f32;
    vec![(i0, 1.0 - l), (i1, l)]
}

/// `bicubic`: four cells, Keys' kernel with a = −0.75 (PyTorch's), indices clamped to the edge.
fn cubic(old: usize, new: usize) -> Taps {
    const A: f32 = -0.75;
    let near = |t: f32| ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let far = |t: f32| ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A;
    let s = ratio(old, new);
    (0..new)
        .map(|j| {
            let x = centre(j, s);
            let i = x.floor();
            let t = x - i;
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            let at = |k: i64| (i as i64 + k).clamp(0, old as i64 - 1) as usize;
            (0..4).map(|k| (at(k as i64 - 1), weights[k])).collect()
        })
        .collect()
}

/// `area`: adaptive average pooling, cell `j` the mean of cells `floor(j·old/new)` up to
/// `ceil((j+1)·old/new)`.
fn area(old: usize, new: usize) -> Taps {
    (0..new)
        .map(|j| {
            let start = j * old / new;
            let end = ((j + 1) * old).div_ceil(new);
            let w = 1.0 / (end - start) as f32;
            (start..end).map(|i| (i, w)).collect()
        })
        .collect()
}

/// Every row (`rows` of `w` cells) of `src` resampled along its width by `taps`.
fn along_width(src: &[f32], rows: usize, w: usize, taps: &Taps) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * taps.len());
    for row in src.chunks(w).take(rows) {
        out.extend(taps.iter().map(|t| t.iter().map(|&(i, k)| row[i] * k).sum::<f32>()));
    }
    out
}

/// Every column of `c` planes of `h`×`w` cells resampled along its height by `taps`.
fn along_height(src: &[f32], c: usize, h: usize, w: usize, taps: &Taps) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * taps.len() * w);
    for plane in src.chunks(h * w).take(c) {
        for t in taps {
            out.extend((0..w).map(|x| t.iter().map(|&(i, k)| plane[i * w + x] * k).sum::<f32>()));
        }
    }
    out
}

/// ComfyUI's `bislerp`: along the width, then the height, each output cell the spherical
/// interpolation of the channel vectors of its two bilinear neighbours.
fn bislerp(src: &[f32], c: usize, (h, w): Cells, (new_h, new_w): Cells) -> Vec<f32> {
    let (first, second, ratios) = bislerp_neighbours(w, new_w);
    let mut across = vec![0f32; c * h * new_w];
    for y in 0..h {
        for j in 0..new_w {
            let cell = |x: usize| -> Vec<f32> { (0..c).map(|ch| src[(ch * h + y) * w + x]).collect() };
            for (ch, v) in slerp(&cell(first[j]), &cell(second[j]), ratios[j]).into_iter().enumerate() {
                across[(ch * h + y) * new_w + j] = v;
            }
        }
    }
    let (first, second, ratios) = bislerp_neighbours(h, new_h);
    let mut out = vec![0f32; c * new_h * new_w];
    for i in 0..new_h {
        for x in 0..new_w {
            let cell = |y: usize| -> Vec<f32> { (0..c).map(|ch| across[(ch * h + y) * new_w + x]).collect() };
            for (ch, v) in slerp(&cell(first[i]), &cell(second[i]), ratios[i]).into_iter().enumerate() {
                out[(ch * new_h + i) * new_w + x] = v;
            }
        }
    }
    out
}

/// `bislerp`'s neighbours of each output cell and its ratio between them: its bilinear
/// coordinate's whole part and fraction, and the next cell (the last one at the edge), as
/// ComfyUI works them out by interpolating the cells' indices.
fn bislerp_neighbours(old: usize, new: usize) -> (Vec<usize>, Vec<usize>, Vec<f32>) {
    let next = |i: usize| if i + 1 < old { (i + 1) as f32 } else { i as f32 };
    let s = ratio(old, new);
    let (mut first, mut second, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for j in 0..new {
        let pair = linear_pair(centre(j, s).max(0.0), old);
        let ((i0, w0), (i1, w1)) = (pair[0], pair[1]);
        let coord = w0 * i0 as f32 + w1 * i1 as f32;
        let coord2 = w0 * next(i0) + w1 * next(i1);
        first.push(coord as usize);
        second.push(coord2 as usize);
        ratios.push(coord - coord.floor());
    }
    (first, second, ratios)
}

/// ComfyUI's `slerp` of channel vectors `b1`, `b2` at ratio `r`: the directions slerped, the
/// length interpolated linearly; equal directions keep `b1`, opposite ones lerp.
fn slerp(b1: &[f32], b2: &[f32], r: f32) -> Vec<f32> {
    let norm = |b: &[f32]| b.iter().map(|v| v * v).sum::<f32>().sqrt();
    let (n1, n2) = (norm(b1), norm(b2));
    let unit = |b: &[f32], n: f32| -> Vec<f32> { b.iter().map(|v| if n == 0.0 { 0.0 } else { v / n }).collect() };
    let (u1, u2) = (unit(b1, n1), unit(b2, n2));
    let dot: f32 = u1.iter().zip(&u2).map(|(a, b)| a * b).sum();
    if dot > 1.0 - 1e-5 {
        return b1.to_vec();
    }
    if dot < 1e-5 - 1.0 {
        return b1.iter().zip(b2).map(|(a, b)| a * (1.0 - r) + b * r).collect();
    }
    let omega = dot.acos();
    let so = omega.sin();
    let (k1, k2) = (((1.0 - r) * omega).sin() / so, (r * omega).sin() / so);
    let length = n1 * (1.0 - r) + n2 * r;
    u1.iter().zip(&u2).map(|(a, b)| (k1 * a + k2 * b) * length).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3×4 plane `i² / 10 − i` (i = 0..12).
    fn plane() -> Vec<f32> {
        (0..12).map(|i| i as f32 * i as f32 * 0.1 - i as f32).collect()
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-5, "{what} [{i}]: {g} != {w}\n{got:?}");
        }
    }

    /// Values from PyTorch 2.15: `F.interpolate(x, size=…, mode=…)` of `plane()` as
    /// `[1, 1, 3, 4]` (rounded to 6 places).
    #[test]
    fn every_method_matches_pytorchs_interpolate() {
        let cases: [(Method, Cells, &[f32]); 8] = [
            (Method::NearestExact, (2, 3), &[0.0, -1.6, -2.1, -1.6, 0.0, 1.1]),
            (Method::Bilinear, (2, 3), &[-0.716667, -1.55, -2.05, -1.716667, -0.95, 0.15]),
            (Method::Area, (2, 3), &[-1.45, -1.85, -2.05, -1.85, -1.45, -0.85]),
            (Method::Bicubic, (2, 3), &[-0.669571, -1.629687, -2.172212, -1.800105, -0.982812, 0.252072]),
            (
                Method::NearestExact,
                (5, 7),
                &[
                    0.0, 0.0, -0.9, -1.6, -1.6, -2.1, -2.1, 0.0, 0.0, -0.9, -1.6, -1.6, -2.1, -2.1, -2.4, -2.4, -2.5,
                    -2.4, -2.4, -2.1, -2.1, -1.6, -1.6, -0.9, 0.0, 0.0, 1.1, 1.1, -1.6, -1.6, -0.9, 0.0, 0.0, 1.1, 1.1,
                ],
            ),
            (
                Method::Bilinear,
                (5, 7),
                &[
                    0.0, -0.321429, -0.835714, -1.25, -1.635714, -1.921429, -2.1, -0.96, -1.167143, -1.498571, -1.73,
                    -1.932857, -2.035714, -2.1, -2.4, -2.435714, -2.492857, -2.45, -2.378571, -2.207143, -2.1, -1.92,
                    -1.784285, -1.567142, -1.25, -0.904285, -0.458571, -0.179999, -1.6, -1.35, -0.95, -0.45, 0.078572,
                    0.707143, 1.1,
                ],
            ),
            (
                Method::Area,
                (5, 7),
                &[
                    0.0, -0.45, -0.9, -1.25, -1.6, -1.85, -2.1, -1.2, -1.45, -1.7, -1.85, -2.0, -2.05, -2.1, -2.4,
                    -2.45, -2.5, -2.45, -2.4, -2.25, -2.1, -2.0, -1.85, -1.7, -1.45, -1.2, -0.85, -0.5, -1.6, -1.25,
                    -0.9, -0.45, 0.0, 0.55, 1.1,
                ],
            ),
            (
                Method::Bicubic,
                (5, 7),
                &[
                    0.327315, -0.054666, -0.65463, -1.1723, -1.592085, -1.951231, -2.157228, -0.924588, -1.181827,
                    -1.578313, -1.8971, -2.118001, -2.273669, -2.354926, -2.390079, -2.440224, -2.498897, -2.4875,
                    -2.378217, -2.196073, -2.070235, -2.12757, -1.970621, -1.691482, -1.3499, -0.910431, -0.390476,
                    -0.057543, -1.600272, -1.318582, -0.835965, -0.2955, 0.342852, 1.066284, 1.523958,
                ],
            ),
        ];
        for (method, to, want) in cases {
            close(&scale(&plane(), 1, (3, 4), to, method), want, &format!("{method:?} to {to:?}"));
        }
        // Each channel scales on its own.
        let two: Vec<f32> = plane().into_iter().chain(plane()).collect();
        let both = scale(&two, 2, (3, 4), (2, 3), Method::Bilinear);
        assert_eq!(both[..6], both[6..]);
    }

    /// ComfyUI's `bislerp` of two channels, `2·sin(1.7·i) + 0.3` as `[1, 2, 3, 4]`, run by
    /// PyTorch 2.15 (rounded to 6 places).
    #[test]
    fn bislerp_matches_comfyuis() {
        let src: Vec<f32> = (0..24).map(|i| (i as f32 * 1.7).sin() * 2.0 + 0.3).collect();
        let want = [
            1.060059, 1.098237, -1.733045, 2.119105, -0.425725, -0.855818, 2.072555, -1.597594, 0.688715, 1.00968,
            -1.728917, 1.943292,
        ];
        close(&scale(&src, 2, (3, 4), (2, 3), Method::Bislerp), &want, "bislerp to 2x3");
        let up = scale(&src, 2, (3, 4), (5, 7), Method::Bislerp);
        let want_first_rows = [
            0.3, 1.361784, 2.26598, 1.328473, -0.449462, -1.766871, -1.551629, 0.70165, 1.668486, 2.214432, 0.953326,
            -0.825182, -1.82514, -1.367966,
        ];
        close(&up[..14], &want_first_rows, "bislerp to 5x7, channel 0");
        let want_last = [-1.419925, -1.631134, -0.087275, 1.663335, 2.271201];
        close(&up[65..], &want_last, "bislerp to 5x7, the end of channel 1");
    }

    #[test]
    fn a_centre_crop_keeps_the_middle_cells_of_every_channel() {
        let two: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let region = Region { x: 1, y: 0, width: 2, height: 3 };
        assert_eq!(crop(&two, 2, (3, 4), region), [1.0, 2.0, 5.0, 6.0, 9.0, 10.0, 13.0, 14.0, 17.0, 18.0, 21.0, 22.0]);
    }
}

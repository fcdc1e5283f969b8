//! Inpainting with the plain 4-channel UNets every installed model has, as ComfyUI's
//! SetLatentNoiseMask and A1111's "latent noise mask" do (dedicated 9-channel inpainting
//! UNets, which take the mask as an input, are not run): after every step, outside the mask
//! the latents are put back to the picture's own, noised to the level the next step starts
//! from (clean after the last), so only the masked part is sampled; after decoding, outside
//! the mask the picture's own pixels are put back, so what the mask keeps comes back exactly
//! as it was sent. The redrawn part fades in over [`FEATHER_PX`] pixels inside the mask's
//! edge (A1111's mask blur, kept inside the mask), so there is no seam.

use image::{DynamicImage, GrayImage, imageops};

use super::DiffusionError;
use super::pipeline::{DecodedImage, InitImage};
use super::samplers::Scheduler;
use crate::media::morph::{self, Footprint};

/// Half the width of the soft edge: the redrawn part fades in over the `2 × FEATHER_PX`
/// pixels inside the mask's edge (a box blur of the mask shrunk by as much, so it stays 0
/// wherever the mask keeps).
pub const FEATHER_PX: usize = 3;

/// Which pixels of a picture are redrawn: 1 redraws, 0 keeps, between blends.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    /// `[height, width]`, row by row, in [0, 1].
    pub redraw: Vec<f32>,
}

impl Mask {
    /// Reads a mask picture at `width`×`height` (resized, bilinear, when it is another size).
    /// A picture with transparency says it by its alpha, as OpenAI's masks do: transparent
    /// redraws, opaque keeps. One without (no alpha channel, or every pixel opaque) says it
    /// by its brightness, as A1111's and ComfyUI's LoadImageMask do: white redraws, black keeps.
    pub fn from_picture(picture: &DynamicImage, width: u32, height: u32) -> Self {
        let gray: GrayImage = if reads_by_alpha(picture) {
            let rgba = picture.to_rgba8();
            GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| image::Luma([u8::MAX - rgba.get_pixel(x, y)[3]]))
        } else {
            picture.to_luma8()
        };
        let gray = if gray.dimensions() == (width, height) {
            gray
        } else {
            imageops::resize(&gray, width, height, imageops::FilterType::Triangle)
        };
        let redraw = gray.pixels().map(|p| f32::from(p[0]) / 255.0).collect();
        Self { width, height, redraw }
    }

    /// The mask grown by `px` pixels on every side (a maximum over each square of side
    /// `2·px + 1`, as ComfyUI's VAEEncodeForInpaint grows its mask before sampling), so the
    /// redrawn part reaches past an edge drawn tight.
    pub fn grown(self, px: u32) -> Self {
        self.spread(i64::from(px), Footprint::Square)
    }

    /// The mask grown by `px` pixels (shrunk where negative), each step reaching the pixels
    /// `footprint` says (ComfyUI's GrowMask: `Diamond` with its `tapered_corners`).
    pub fn spread(self, px: i64, footprint: Footprint) -> Self {
        let redraw = morph::spread(&self.redraw, self.width as usize, self.height as usize, px, footprint);
        Self { redraw, ..self }
    }

    /// The mask on the latent grid of a `factor`-pixel cell: each cell the average of its
    /// pixels (a cell the mask's edge crosses is sampled in part, blending both sides).
    pub fn cells(&self, factor: usize) -> Vec<f32> {
        let (w, h, f) = (self.width as usize, self.height as usize, factor.max(1));
        let (lw, lh) = (w / f, h / f);
        let mut out = vec![0f32; lw * lh];
        for (cy, row) in out.chunks_mut(lw.max(1)).enumerate() {
            for (cx, cell) in row.iter_mut().enumerate() {
                let mut sum = 0f32;
                for y in cy * f..(cy + 1) * f {
                    sum += self.redraw[y * w + cx * f..y * w + (cx + 1) * f].iter().sum::<f32>();
                }
                *cell = sum / (f * f) as f32;
            }
        }
        out
    }

    /// The mask with its soft edge for the final picture: shrunk by `radius` pixels (a
    /// minimum over each square of side `2·radius + 1`), then box-blurred by as much, so it
    /// is never above the mask: a pixel the mask keeps stays kept.
    pub fn feathered(&self, radius: usize) -> Vec<f32> {
        let (w, h) = (self.width as usize, self.height as usize);
        let steps = -i64::try_from(radius).unwrap_or(i64::MAX);
        let shrunk = morph::spread(&self.redraw, w, h, steps, Footprint::Square);
        separable(&shrunk, w, h, radius, |window| window.iter().sum::<f32>() / window.len() as f32)
    }
}

/// `reduce` over the `2·radius + 1` neighbours of each value along rows, then along columns
/// (clipped at the picture's border, so its own edge is no mask edge).
fn separable(values: &[f32], w: usize, h: usize, radius: usize, reduce: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    let mut across = vec![0f32; values.len()];
    for y in 0..h {
        let row = &values[y * w..(y + 1) * w];
        for x in 0..w {
            across[y * w + x] = reduce(&row[x.saturating_sub(radius)..(x + radius + 1).min(w)]);
        }
    }
    let mut out = vec![0f32; values.len()];
    let mut column = Vec::with_capacity(h);
    for x in 0..w {
        column.clear();
        column.extend((0..h).map(|y| across[y * w + x]));
        for y in 0..h {
            out[y * w + x] = reduce(&column[y.saturating_sub(radius)..(y + radius + 1).min(h)]);
        }
    }
    out
}

/// Whether a mask picture says where by its alpha (it has transparent pixels) rather than
/// by its grey ([`Mask::from_picture`]).
pub fn reads_by_alpha(picture: &DynamicImage) -> bool {
    picture.color().has_alpha() && picture.to_rgba8().pixels().any(|p| p[3] < u8::MAX)
}

/// What keeps the unmasked part while sampling: the picture's clean latents, the noise they
/// were first noised with (diffusers' inpainting reuses it at every step), and the mask per
/// latent cell.
pub(super) struct Keep {
    clean: Vec<f32>,
    noise: Vec<f32>,
    cells: Vec<f32>,
    noised: Vec<f32>,
}

impl Keep {
    /// For a run of `width`×`height` pictures on a latent grid of `factor` pixels a cell,
    /// whose start was `clean` noised with `noise`; refuses a mask of another size.
    pub(super) fn new(
        mask: &Mask,
        (width, height, factor): (u32, u32, usize),
        clean: Vec<f32>,
        noise: Vec<f32>,
    ) -> Result<Self, DiffusionError> {
        if (mask.width, mask.height) != (width, height) {
            return Err(DiffusionError::Request {
                field: "mask",
                message: format!("is {}×{}; the picture is {width}×{height}", mask.width, mask.height),
            });
        }
        let noised = vec![0f32; clean.len()];
        Ok(Self { clean, noise, cells: mask.cells(factor), noised })
    }

    /// After the step that brought `latents` to step `next` of the schedule (past its end:
    /// the finished latents), puts the part outside the mask back to the picture's own at
    /// that noise level.
    pub(super) fn after_step(&mut self, scheduler: &dyn Scheduler, next: usize, latents: &mut [f32]) {
        let own = if next < scheduler.timesteps().len() {
            scheduler.add_noise(next, &self.clean, &self.noise, &mut self.noised);
            &self.noised
        } else {
            &self.clean
        };
        let plane = self.cells.len().max(1);
        for (i, (l, &o)) in latents.iter_mut().zip(own).enumerate() {
            let m = self.cells[i % plane];
            *l = m * *l + (1.0 - m) * o;
        }
    }
}

/// Puts the picture's own pixels back outside the mask of `picture` (none: nothing to do),
/// with the soft edge of [`Mask::feathered`].
pub(super) fn composite(images: &mut [DecodedImage], picture: &InitImage) {
    let Some(mask) = &picture.mask else { return };
    let soft = mask.feathered(FEATHER_PX);
    let plane = soft.len();
    for image in images.iter_mut().filter(|i| i.data.len() == 3 * plane && picture.pixels.len() == 3 * plane) {
        for (i, (d, &p)) in image.data.iter_mut().zip(&picture.pixels).enumerate() {
            let m = soft[i % plane];
            // The picture's pixels are in [−1, 1], the decoded ones in [0, 1].
            *d = m * *d + (1.0 - m) * (p + 1.0) / 2.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    fn left_half(w: u32, h: u32) -> Mask {
        let redraw = (0..w * h).map(|i| if i % w < w / 2 { 1.0 } else { 0.0 }).collect();
        Mask { width: w, height: h, redraw }
    }

    #[test]
    fn transparent_redraws_in_a_picture_with_alpha() {
        let img = RgbaImage::from_fn(4, 1, |x, _| Rgba([255, 255, 255, [0, 255, 128, 255][x as usize]]));
        let mask = Mask::from_picture(&DynamicImage::ImageRgba8(img), 4, 1);
        assert_eq!(mask.redraw, [1.0, 0.0, 127.0 / 255.0, 0.0], "white but transparent still redraws");
    }

    #[test]
    fn white_redraws_in_a_picture_without_transparency() {
        let grey = RgbImage::from_fn(3, 1, |x, _| Rgb([[255, 0, 51][x as usize]; 3]));
        let mask = Mask::from_picture(&DynamicImage::ImageRgb8(grey), 3, 1);
        assert_eq!(mask.redraw, [1.0, 0.0, 0.2]);
        // An opaque RGBA picture says it by its grey too (an editor's black-and-white export).
        let opaque = RgbaImage::from_fn(2, 1, |x, _| {
            let v = [255, 0][x as usize];
            Rgba([v, v, v, 255])
        });
        let mask = Mask::from_picture(&DynamicImage::ImageRgba8(opaque), 2, 1);
        assert_eq!(mask.redraw, [1.0, 0.0]);
    }

    #[test]
    fn a_mask_of_another_size_is_resized_to_the_picture() {
        let small = GrayImage::from_pixel(2, 2, image::Luma([255]));
        let mask = Mask::from_picture(&DynamicImage::ImageLuma8(small), 8, 4);
        assert_eq!((mask.width, mask.height, mask.redraw.len()), (8, 4, 32));
        assert!(mask.redraw.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn latent_cells_average_their_pixels() {
        let mask = left_half(32, 16);
        assert_eq!(mask.cells(8), [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        // An edge through a cell's middle: half of it redrawn.
        let mask = left_half(12, 8);
        assert_eq!(mask.cells(8), [0.75]);
        let mask =
            Mask { width: 16, height: 8, redraw: (0..128).map(|i| if i % 16 < 4 { 1.0 } else { 0.0 }).collect() };
        assert_eq!(mask.cells(8), [0.5, 0.0]);
    }

    #[test]
    fn a_grown_mask_reaches_past_its_edge_by_as_many_pixels() {
        let grown = left_half(32, 4).grown(3);
        assert!(grown.redraw[..32][..19].iter().all(|&v| v == 1.0), "{:?}", &grown.redraw[..32]);
        assert!(grown.redraw[..32][19..].iter().all(|&v| v == 0.0), "{:?}", &grown.redraw[..32]);
        assert_eq!(left_half(32, 4).grown(0), left_half(32, 4));
    }

    #[test]
    fn the_soft_edge_stays_inside_the_mask() {
        let mask = left_half(32, 4);
        let soft = mask.feathered(FEATHER_PX);
        let row: Vec<f32> = soft[..32].to_vec();
        assert!(row[16..].iter().all(|&v| v == 0.0), "kept pixels stay kept: {row:?}");
        assert!(row[..16 - 2 * FEATHER_PX].iter().all(|&v| v == 1.0), "deep inside redrawn whole: {row:?}");
        assert!(row[16 - 2 * FEATHER_PX..16].windows(2).all(|p| p[0] > p[1]), "then fading out: {row:?}");
        assert!(soft.iter().zip(&mask.redraw).all(|(s, m)| s <= m));
    }

    #[test]
    fn after_each_step_the_kept_cells_are_the_pictures_own_at_the_next_noise_level() {
        use crate::pipelines::diffusion::samplers::{
            self, SampleAs, SchedulerChoice, SchedulerConfigFile, SchedulerKind,
        };
        let file: SchedulerConfigFile = serde_json::from_str(r#"{"beta_schedule": "scaled_linear"}"#).expect("config");
        let choice =
            SchedulerChoice { kind: SchedulerKind::Euler, karras: false, schedule: None, sample_as: SampleAs::Comfyui };
        let scheduler = samplers::build(choice, &file, 4, 1.0).expect("euler");
        // Two channels of a 2×1 latent grid (16×8 pixels), the left cell masked.
        let (clean, noise) = (vec![0.5, -0.5, 0.25, 1.0], vec![1.0, 2.0, -1.0, 0.5]);
        let mut keep = Keep::new(&left_half(16, 8), (16, 8, 8), clean.clone(), noise.clone()).expect("fits");
        let mut latents = vec![9.0; 4];
        keep.after_step(scheduler.as_ref(), 1, &mut latents);
        let mut own = vec![0f32; 4];
        scheduler.add_noise(1, &clean, &noise, &mut own);
        assert_eq!(latents, [9.0, own[1], 9.0, own[3]], "masked cells as sampled, the others the picture's");
        keep.after_step(scheduler.as_ref(), 4, &mut latents);
        assert_eq!(latents, [9.0, -0.5, 9.0, 1.0], "after the last step: the clean latents");
        let err = Keep::new(&left_half(16, 8), (8, 16, 8), clean, noise).err().expect("another size");
        assert!(err.to_string().contains("mask"), "{err}");
    }

    #[test]
    fn the_composite_keeps_the_picture_outside_the_mask() {
        let (w, h) = (16, 2);
        let pixels: Vec<f32> = (0..3 * w * h).map(|i| (i % 7) as f32 / 3.0 - 1.0).collect();
        let picture =
            InitImage { pixels: pixels.clone(), width: w, height: h, strength: 1.0, mask: Some(left_half(w, h)) };
        let mut images = vec![DecodedImage { width: w, height: h, data: vec![0.25; pixels.len()] }];
        composite(&mut images, &picture);
        let plane = (w * h) as usize;
        for (i, (&d, &p)) in images[0].data.iter().zip(&pixels).enumerate() {
            let x = (i % plane) as u32 % w;
            if x >= w / 2 {
                assert_eq!(d, (p + 1.0) / 2.0, "kept at x = {x}");
            } else if x < w / 2 - 2 * FEATHER_PX as u32 {
                assert_eq!(d, 0.25, "redrawn at x = {x}");
            }
        }
    }
}

//! Cheap previews: a fixed linear map from the 4 latent channels to RGB (the
//! approximation A1111 and ComfyUI use), encoded as a small PNG at latent resolution.

use std::io::Cursor;

use image::{Rgb, RgbImage};

use super::model::Family;

/// Latent → RGB factors for SD 1.x/2.x latents (rows: latent channels; columns: R, G, B).
const SD_FACTORS: [[f32; 3]; 4] =
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]];
/// The same for the SDXL VAE's latent space.
const SDXL_FACTORS: [[f32; 3]; 4] =
    [[0.3920, 0.4054, 0.4549], [-0.2634, -0.0196, 0.0653], [0.0568, 0.1687, -0.0755], [-0.3112, -0.2359, -0.2076]];
const SDXL_BIAS: [f32; 3] = [0.1084, -0.0175, -0.0011];

/// Projects one image's latents `[C, h, w]` to an RGB picture of `w`×`h`.
pub fn latent_to_rgb(latents: &[f32], channels: usize, h: usize, w: usize, family: Family) -> RgbImage {
    let (factors, bias) = match family {
        Family::Sd => (&SD_FACTORS, [0.0; 3]),
        Family::Sdxl => (&SDXL_FACTORS, SDXL_BIAS),
    };
    let plane = h * w;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let mut rgb = bias;
        for (c, row) in factors.iter().enumerate().take(channels) {
            let v = latents[c * plane + i];
            for k in 0..3 {
                rgb[k] += v * row[k];
            }
        }
        Rgb(rgb.map(|v| (((v + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8))
    })
}

/// [`latent_to_rgb`] as PNG bytes (empty when encoding fails, which it cannot for RGB8).
pub fn latent_preview_png(latents: &[f32], channels: usize, h: usize, w: usize, family: Family) -> Vec<u8> {
    let img = latent_to_rgb(latents, channels, h, w, family);
    let mut out = Vec::new();
    if let Err(e) = img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png) {
        tracing::warn!("preview PNG encoding failed: {e}");
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_latents_preview_as_mid_grey() {
        let img = latent_to_rgb(&[0.0; 4 * 2 * 3], 4, 2, 3, Family::Sd);
        assert_eq!(img.dimensions(), (3, 2));
        assert!(img.pixels().all(|p| p.0 == [128, 128, 128]));
    }

    #[test]
    fn the_first_channel_brightens_every_colour() {
        let mut l = vec![0.0f32; 4];
        l[0] = 1.0;
        let img = latent_to_rgb(&l, 4, 1, 1, Family::Sd);
        assert!(img.get_pixel(0, 0).0.iter().all(|&c| c > 128), "{:?}", img.get_pixel(0, 0));
    }
}

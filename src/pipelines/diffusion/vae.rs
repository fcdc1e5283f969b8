//! The VAE side of a run: img2img's encoding of the init picture to latents, and the
//! final decoding of latents to pixels.

use std::time::Duration;

use super::DiffusionError;
use super::model::SdModel;
use super::noise::NoiseSource;
use super::onnx::float_input;
use super::pipeline::{DecodedImage, InitImage};
use super::predict::take_output;

/// Clean latents of the init image for every image of the batch, scaled by the VAE factor.
/// `latent_parameters` outputs (mean ++ log-variance) are sampled as diffusers does (one
/// N(0,1) draw per image), or, with `mean`, taken at their mean with no draw (ComfyUI's
/// VAEEncode, its regularizer's `mode()`); `latent_sample` outputs are used as they are.
pub(super) fn encode_init_image(
    model: &SdModel,
    init: &InitImage,
    (n, per): (usize, usize),
    mean: bool,
    noise: &mut dyn NoiseSource,
    onnx: &mut Duration,
) -> Result<Vec<f32>, DiffusionError> {
    let enc = model.vae_encoder.as_ref().ok_or_else(|| DiffusionError::MissingPart {
        model: model.info.name.clone(),
        part: "vae_encoder",
        path: model.info.dir.join("vae_encoder/model.onnx"),
    })?;
    let input = enc
        .input("sample")
        .or_else(|| enc.inputs.first())
        .ok_or(DiffusionError::Interface { part: "vae_encoder", reason: "no input".into() })?;
    let feeds = vec![float_input(input, vec![1, 3, init.height as usize, init.width as usize], &init.pixels)?];
    let mut outs = enc.run(feeds, onnx)?;
    let index = outs.iter().position(|o| o.name == "latent_parameters" || o.name == "latent_sample").unwrap_or(0);
    let out = outs
        .get_mut(index)
        .map(std::mem::take)
        .ok_or(DiffusionError::Run { part: "vae_encoder", reason: "no output".into() })?;
    let sf = model.info.vae_scaling_factor;
    let mut clean = vec![0f32; n * per];
    if out.data.len() == 2 * per && mean {
        for c in clean.chunks_mut(per) {
            for (v, &x) in c.iter_mut().zip(&out.data[..per]) {
                *v = sf * x;
            }
        }
    } else if out.data.len() == 2 * per {
        let (mean, logvar) = out.data.split_at(per);
        let std: Vec<f32> = logvar.iter().map(|&l| (0.5 * l.clamp(-30.0, 20.0)).exp()).collect();
        let mut eps = vec![0f32; n * per];
        noise.fill(&mut eps)?;
        for (j, c) in clean.chunks_mut(per).enumerate() {
            for (k, v) in c.iter_mut().enumerate() {
                *v = sf * (mean[k] + std[k] * eps[j * per + k]);
            }
        }
    } else if out.data.len() == per {
        for c in clean.chunks_mut(per) {
            for (v, &x) in c.iter_mut().zip(&out.data) {
                *v = sf * x;
            }
        }
    } else {
        return Err(DiffusionError::Run {
            part: "vae_encoder",
            reason: format!("output {} has shape {:?}; expected {per} or {} values", out.name, out.shape, 2 * per),
        });
    }
    Ok(clean)
}

pub(super) fn decode(
    model: &SdModel,
    latents: &[f32],
    n: usize,
    per: usize,
    (ch, lh, lw): (usize, usize, usize),
    onnx: &mut Duration,
) -> Result<Vec<DecodedImage>, DiffusionError> {
    let dec = &model.vae_decoder;
    let input = dec
        .input("latent_sample")
        .or_else(|| dec.inputs.first())
        .ok_or(DiffusionError::Interface { part: "vae_decoder", reason: "no input".into() })?;
    let sf = model.info.vae_scaling_factor;
    let out_index = dec.outputs.iter().position(|o| o.name == "sample").unwrap_or(0);
    let (h, w) = (lh * model.info.vae_scale as usize, lw * model.info.vae_scale as usize);
    let mut images = Vec::with_capacity(n);
    let mut scaled = vec![0f32; per];
    for j in 0..n {
        for (s, &l) in scaled.iter_mut().zip(&latents[j * per..(j + 1) * per]) {
            *s = l / sf;
        }
        let feeds = vec![float_input(input, vec![1, ch, lh, lw], &scaled)?];
        let mut outs = dec.run(feeds, onnx)?;
        let mut out = take_output(&mut outs, out_index, "vae_decoder", 3 * h * w)?;
        for v in &mut out.data {
            *v = (*v / 2.0 + 0.5).clamp(0.0, 1.0);
        }
        images.push(DecodedImage { width: w as u32, height: h as u32, data: out.data });
    }
    Ok(images)
}

//! One UNet evaluation of a step's (classifier-free guidance) batch, run in the chunks the
//! export and the device take, and the reading of a part's output with its size checked;
//! LCM's guidance embedding, which the UNet takes beside it.

use std::borrow::Cow;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::DiffusionError;
use super::model::Unet;
use super::onnx::{Output, float_input, timestep_input};
use super::text::Conditioning;
use crate::pipelines::check_cancel;

/// Latent layout of one UNet step: `batch` items of `per = ch·lh·lw` values, run
/// `chunk` at a time.
#[derive(Clone, Copy)]
pub(super) struct LatentShape {
    pub batch: usize,
    pub chunk: usize,
    pub per: usize,
    pub ch: usize,
    pub lh: usize,
    pub lw: usize,
}

/// One UNet evaluation of the whole (CFG) batch, split into runs of `shape.chunk` items
/// (what the export and the device take). A cancel is seen between runs, so a big batch
/// on the CPU stops after the item it is on, not after the whole step.
#[allow(clippy::too_many_arguments)]
pub(super) fn predict(
    unet: &Unet,
    cond: &Conditioning,
    guidance_cond: Option<&(Vec<f32>, usize)>,
    model_in: &[f32],
    t: f64,
    shape: LatentShape,
    cancel: Option<&CancellationToken>,
    onnx: &mut Duration,
) -> Result<Vec<f32>, DiffusionError> {
    let LatentShape { batch, chunk, per, ch, lh, lw } = shape;
    let fixed_batch = unet.sample.fixed(0);
    let mut out_all: Vec<f32> = Vec::with_capacity(batch * per);
    for a in (0..batch).step_by(chunk) {
        if let Some(token) = cancel {
            check_cancel(token)?;
        }
        let b = (a + chunk).min(batch);
        // Exports with a fixed batch larger than what is left get the last item repeated.
        let m = fixed_batch.unwrap_or(b - a);
        let sample = padded_rows(model_in, a, b, m, per);
        let hidden = padded_rows(&cond.hidden, a, b, m, cond.seq * cond.dim);
        let mut feeds = vec![
            float_input(&unet.sample, vec![m, ch, lh, lw], &sample)?,
            timestep_input(&unet.timestep, t, m)?,
            float_input(&unet.hidden, vec![m, cond.seq, cond.dim], &hidden)?,
        ];
        let text_embeds = cond.text_embeds.as_ref().map(|(te, p)| (padded_rows(te, a, b, m, *p), *p));
        if let (Some(info), Some((te, p))) = (&unet.text_embeds, &text_embeds) {
            feeds.push(float_input(info, vec![m, *p], te)?);
        }
        let time_ids = cond.time_ids.as_ref().map(|ids| padded_rows(ids, a, b, m, 6));
        if let (Some(info), Some(ids)) = (&unet.time_ids, &time_ids) {
            feeds.push(float_input(info, vec![m, 6], ids)?);
        }
        let emb = guidance_cond.map(|(e, d)| (padded_rows(e, a, b, m, *d), *d));
        if let (Some(info), Some((e, d))) = (&unet.timestep_cond, &emb) {
            feeds.push(float_input(info, vec![m, *d], e)?);
        }
        let mut outs = unet.part.run(feeds, onnx)?;
        let out = take_output(&mut outs, unet.output, "unet", m * per)?;
        out_all.extend_from_slice(&out.data[..(b - a) * per]);
    }
    Ok(out_all)
}

pub(super) fn take_output(
    outs: &mut [Output],
    index: usize,
    part: &'static str,
    want: usize,
) -> Result<Output, DiffusionError> {
    let out = outs
        .get_mut(index)
        .map(std::mem::take)
        .ok_or_else(|| DiffusionError::Run { part, reason: "no output".into() })?;
    if out.data.len() != want {
        return Err(DiffusionError::Run {
            part,
            reason: format!(
                "output {} has {} values (shape {:?}), expected {want}",
                out.name,
                out.data.len(),
                out.shape
            ),
        });
    }
    Ok(out)
}

/// Rows `a..b` of `data` (rows of `width` values), padded to `m` rows by repeating the
/// last; borrowed when no padding is needed.
fn padded_rows(data: &[f32], a: usize, b: usize, m: usize, width: usize) -> Cow<'_, [f32]> {
    let rows = &data[a * width..b * width];
    if m <= b - a {
        return Cow::Borrowed(rows);
    }
    let mut out = Vec::with_capacity(m * width);
    out.extend_from_slice(rows);
    while out.len() < m * width {
        out.extend_from_slice(&data[(b - 1) * width..b * width]);
    }
    Cow::Owned(out)
}

/// LCM's guidance-scale embedding (`get_guidance_scale_embedding`): sinusoids of 1000·w,
/// repeated for every item of the batch.
pub fn guidance_embedding(w: f32, dim: usize, batch: usize) -> (Vec<f32>, usize) {
    let half = dim / 2;
    let scale = (10000f32).ln() / (half.max(2) - 1) as f32;
    let w = w * 1000.0;
    let mut one: Vec<f32> = (0..half).map(|i| (w * (i as f32 * -scale).exp()).sin()).collect();
    one.extend((0..half).map(|i| (w * (i as f32 * -scale).exp()).cos()));
    one.resize(dim, 0.0);
    (one.repeat(batch), dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_embedding_matches_diffusers_lcm() {
        // LatentConsistencyModelPipeline.get_guidance_scale_embedding(tensor([6.5]), 8)
        let want = [
            -0.044_784_74,
            0.110_189_15,
            0.991_123_26,
            0.605_186_34,
            -0.998_996_7,
            0.993_910_6,
            0.132_946_03,
            0.796_083_9,
        ];
        let (got, dim) = guidance_embedding(6.5, 8, 2);
        assert_eq!(dim, 8);
        for (i, (g, w)) in got[..8].iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-3, "[{i}] {g} != {w}");
        }
        assert_eq!(got[..8], got[8..], "repeated per batch item");
    }

    #[test]
    fn fixed_batch_exports_get_the_last_row_repeated() {
        let data = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(&*padded_rows(&data, 1, 2, 3, 2), &[3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
        assert!(matches!(padded_rows(&data, 0, 2, 2, 2), Cow::Borrowed(rows) if rows == data));
    }
}

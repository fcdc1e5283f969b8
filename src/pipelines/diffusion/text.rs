//! The text side of a run: tokenize prompts, run the text encoder(s), and lay out the
//! UNet conditioning in diffusers' batch order (`[uncond × n, cond × n]`).

use std::time::Duration;

use super::DiffusionError;
use super::model::{Family, SdModel, TextEncoder};
use super::onnx::int_input;
use super::pipeline::GenerateRequest;
use super::samplers::SchedulerChoice;
use super::tokenizer::ClipTokenizer;

/// Prompt conditioning for the UNet, already in batch order.
pub(super) struct Conditioning {
    /// `[B, seq, D]`.
    pub hidden: Vec<f32>,
    pub seq: usize,
    pub dim: usize,
    /// SDXL: `[B, P]` pooled embeds and `[B, 6]` time ids.
    pub text_embeds: Option<(Vec<f32>, usize)>,
    pub time_ids: Option<Vec<f32>>,
}

/// Per-text encoder outputs.
struct Encoded {
    /// `[seq · D]` per text.
    hidden: Vec<Vec<f32>>,
    /// Pooled projection per text (second SDXL encoder only).
    pooled: Vec<Vec<f32>>,
    seq: usize,
    dim: usize,
}

/// Token ids for `texts` through `encoder`, batched as far as the export allows; returns
/// each output of interest per text: (hidden `[seq·D]`, pooled).
fn run_text_encoder(encoder: &TextEncoder, ids: &[Vec<u32>], onnx: &mut Duration) -> Result<Encoded, DiffusionError> {
    let seq = ids.first().map_or(0, Vec::len);
    let mut hidden = Vec::new();
    let mut pooled = Vec::new();
    let mut dim = 0;
    let chunk = encoder.max_batch().max(1);
    for group in ids.chunks(chunk) {
        let flat: Vec<i64> = group.iter().flatten().map(|&v| i64::from(v)).collect();
        let feeds = vec![int_input(&encoder.ids, vec![group.len(), seq], &flat)?];
        let outs = encoder.part.run(feeds, onnx)?;
        let h = outs
            .get(encoder.hidden)
            .ok_or(DiffusionError::Run { part: encoder.part.name, reason: "hidden output missing".into() })?;
        if h.shape.len() != 3 || h.shape[0] != group.len() || h.shape[1] != seq {
            return Err(DiffusionError::Run {
                part: encoder.part.name,
                reason: format!("hidden states have shape {:?}", h.shape),
            });
        }
        dim = h.shape[2];
        let per = seq * dim;
        for j in 0..group.len() {
            hidden.push(h.data[j * per..(j + 1) * per].to_vec());
        }
        if let Some(p) = encoder.pooled {
            let o = outs
                .get(p)
                .ok_or(DiffusionError::Run { part: encoder.part.name, reason: "pooled output missing".into() })?;
            let w = o.data.len() / group.len().max(1);
            for j in 0..group.len() {
                pooled.push(o.data[j * w..(j + 1) * w].to_vec());
            }
        }
    }
    Ok(Encoded { hidden, pooled, seq, dim })
}

fn tokenize(
    tok: &ClipTokenizer,
    text: &str,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<u32>, DiffusionError> {
    let t = tok.encode(text)?;
    if let Some(cut) = t.truncated {
        let w = format!("{what} is longer than {} tokens; this part was dropped: {cut:?}", tok.max_length());
        tracing::warn!("{w}");
        warnings.push(w);
    }
    Ok(t.ids)
}

pub(super) fn encode_prompts(
    model: &SdModel,
    req: &GenerateRequest,
    cfg: bool,
    n: usize,
    warnings: &mut Vec<String>,
    onnx: &mut Duration,
) -> Result<Conditioning, DiffusionError> {
    let negative = req.negative_prompt.as_deref();
    let zero_negative =
        model.info.family == Family::Sdxl && negative.is_none() && model.info.force_zeros_for_empty_prompt;
    let mut texts: Vec<(&str, &str)> = vec![(req.prompt.as_str(), "prompt")];
    if cfg && !zero_negative {
        texts.insert(0, (negative.unwrap_or(""), "negative prompt"));
    }
    let ids: Vec<Vec<u32>> =
        texts.iter().map(|(t, w)| tokenize(&model.tokenizer, t, w, warnings)).collect::<Result<_, _>>()?;
    let Encoded { hidden: mut h1, seq, dim: d1, .. } = run_text_encoder(&model.text_encoder, &ids, onnx)?;
    let (mut pooled, mut dim) = (Vec::new(), d1);
    if let (Some(tok2), Some(enc2)) = (&model.tokenizer_2, &model.text_encoder_2) {
        let mut quiet = Vec::new();
        let ids2: Vec<Vec<u32>> =
            texts.iter().map(|(t, w)| tokenize(tok2, t, w, &mut quiet)).collect::<Result<_, _>>()?;
        let Encoded { hidden: h2, pooled: p2, seq: seq2, dim: d2 } = run_text_encoder(enc2, &ids2, onnx)?;
        if seq2 != seq {
            return Err(DiffusionError::Interface {
                part: "text_encoder_2",
                reason: format!("sequence length {seq2} differs from text_encoder's {seq}"),
            });
        }
        // Hidden states of both encoders are concatenated along the feature axis.
        for (a, b) in h1.iter_mut().zip(&h2) {
            let mut joined = Vec::with_capacity(seq * (d1 + d2));
            for s in 0..seq {
                joined.extend_from_slice(&a[s * d1..(s + 1) * d1]);
                joined.extend_from_slice(&b[s * d2..(s + 1) * d2]);
            }
            *a = joined;
        }
        dim = d1 + d2;
        pooled = p2;
    }
    if cfg && zero_negative {
        h1.insert(0, vec![0.0; seq * dim]);
        if let Some(p) = pooled.first() {
            let len = p.len();
            pooled.insert(0, vec![0.0; len]);
        }
    }
    // Batch order as diffusers: [uncond × n, cond × n].
    let mut hidden = Vec::with_capacity(h1.len() * n * seq * dim);
    for h in &h1 {
        for _ in 0..n {
            hidden.extend_from_slice(h);
        }
    }
    let text_embeds = (!pooled.is_empty()).then(|| {
        let p = pooled[0].len();
        let mut v = Vec::with_capacity(pooled.len() * n * p);
        for e in &pooled {
            for _ in 0..n {
                v.extend_from_slice(e);
            }
        }
        (v, p)
    });
    let time_ids = model.unet.time_ids.as_ref().map(|_| {
        let (h, w) = (req.height as f32, req.width as f32);
        [h, w, 0.0, 0.0, h, w].repeat(h1.len() * n)
    });
    Ok(Conditioning { hidden, seq, dim, text_embeds, time_ids })
}

/// The UNet conditioning of one text (SDXL: both encoders' penultimate states joined),
/// `[seq · D]`; for checking a model's text path on its own.
pub fn prompt_embeddings(model: &SdModel, text: &str) -> Result<Vec<f32>, DiffusionError> {
    let req = GenerateRequest {
        prompt: text.to_string(),
        negative_prompt: None,
        width: model.info.native_size,
        height: model.info.native_size,
        steps: 1,
        steps_mode: super::samplers::StepsMode::Schedule,
        guidance: 1.0,
        scheduler: SchedulerChoice::parse("euler")?,
        scheduler_config: None,
        count: 1,
        init: None,
        max_side: u32::MAX,
        stop_at: None,
    };
    let mut onnx = Duration::ZERO;
    Ok(encode_prompts(model, &req, false, 1, &mut Vec::new(), &mut onnx)?.hidden)
}

//! The text side of a run: read prompts' emphasis (`emphasis.rs`) into token chunks
//! (`chunks.rs`), run the text encoder(s) on every chunk, weigh and join their states by the
//! run's `sample_as` (ComfyUI's or A1111's way), and lay out the UNet conditioning in
//! diffusers' batch order (`[uncond × n, cond × n]`), texts of other lengths repeated to one.

use std::time::Duration;

use super::DiffusionError;
use super::chunks::{self, Chunk, ChunkError, Named};
use super::embedding::Embedding;
use super::emphasis::{self, Part};
use super::fixes::{self, Rows};
use super::model::{Family, SdModel};
use super::onnx::int_input;
use super::pipeline::GenerateRequest;
use super::prompt_schedule::{self, Scheduled, Timeline};
use super::samplers::{SampleAs, SchedulerChoice};
use super::text_encoder::TextEncoder;
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
    /// The embeddings its prompts named, by name, each once in the order named.
    pub embeddings: Vec<String>,
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

/// Token ids for `texts` through `encoder`, with `rows` in place of their tokens' embeddings,
/// batched as far as the export allows; returns each output of interest per text: (hidden
/// `[seq·D]` of output `layer`, pooled).
fn run_text_encoder(
    encoder: &TextEncoder,
    layer: usize,
    (ids, rows): (&[Vec<u32>], &[Rows]),
    onnx: &mut Duration,
) -> Result<Encoded, DiffusionError> {
    let seq = ids.first().map_or(0, Vec::len);
    let mut hidden = Vec::new();
    let mut pooled = Vec::new();
    let mut dim = 0;
    let chunk = encoder.max_batch().max(1);
    // Only the layer read and the pooled output are taken out of the run.
    let wanted: Vec<usize> = std::iter::once(layer).chain(encoder.pooled).collect();
    for (k, group) in ids.chunks(chunk).enumerate() {
        let flat: Vec<i64> = group.iter().flatten().map(|&v| i64::from(v)).collect();
        let mut feeds = vec![int_input(&encoder.ids, vec![group.len(), seq], &flat)?];
        if let Some(inputs) = &encoder.embedding_inputs {
            let group_rows = rows.iter().skip(k * chunk).take(group.len());
            feeds.extend(fixes::feeds(inputs, (group.len(), seq), group_rows)?);
        }
        let outs = encoder.part.run_outputs(feeds, &wanted, onnx)?;
        let h = outs
            .first()
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
        if encoder.pooled.is_some() {
            let o = outs
                .get(1)
                .ok_or(DiffusionError::Run { part: encoder.part.name, reason: "pooled output missing".into() })?;
            let w = o.data.len() / group.len().max(1);
            for j in 0..group.len() {
                pooled.push(o.data[j * w..(j + 1) * w].to_vec());
            }
        }
    }
    Ok(Encoded { hidden, pooled, seq, dim })
}

/// One text's states through one encoder: its chunks' hidden states joined, `[tokens · D]`,
/// and its first chunk's pooled output (SDXL's second encoder), as A1111 and ComfyUI take it.
struct Joined {
    hidden: Vec<f32>,
    tokens: usize,
    pooled: Option<Vec<f32>>,
}

/// `texts`' chunks through `encoder` (one run, batched as the export allows), the states
/// of its layer `clip_skip` picks ([`TextEncoder::hidden_for`]), each chunk's weighed by
/// its tokens' weights as `rule` weighs them ([`weigh`]), each text's chunks joined along
/// the sequence.
fn encode_chunked(
    encoder: &TextEncoder,
    tok: &ClipTokenizer,
    (texts, usable, family): (&[Vec<Chunk>], &[&Embedding], Family),
    (rule, clip_skip): (SampleAs, Option<u32>),
    onnx: &mut Duration,
) -> Result<(Vec<Joined>, usize), DiffusionError> {
    let layer = encoder.hidden_for(clip_skip)?;
    // ComfyUI weighs a token from its state in the empty prompt: encoded once, last.
    let from_empty = rule == SampleAs::Comfyui && texts.iter().flatten().any(Chunk::weighted);
    let mut ids: Vec<Vec<u32>> = texts.iter().flatten().map(|c| c.ids.clone()).collect();
    let width = encoder.embedding_width().unwrap_or(0);
    let rows_of = |c: &Chunk| -> Result<Rows, DiffusionError> {
        let row = |f: &chunks::Fix| {
            let v = usable.get(f.embedding).and_then(|e| e.for_encoder(family, encoder.second, width));
            v.and_then(|v| v.get(f.row * width..(f.row + 1) * width)).map(|v| (f.at, v))
        };
        let missing =
            || DiffusionError::Run { part: encoder.part.name, reason: "an embedding's vectors are missing".into() };
        c.fixes.iter().map(|f| row(f).ok_or_else(missing)).collect()
    };
    let mut rows: Vec<Rows> = texts.iter().flatten().map(rows_of).collect::<Result<_, _>>()?;
    if from_empty {
        ids.push(Chunk::empty(tok).ids);
        rows.push(Vec::new());
    }
    let Encoded { mut hidden, pooled, seq, dim } = run_text_encoder(encoder, layer, (&ids, &rows), onnx)?;
    let empty = if from_empty { hidden.pop() } else { None };
    let mut states = hidden.into_iter().zip(texts.iter().flatten()).enumerate();
    let mut joined = Vec::with_capacity(texts.len());
    for text in texts {
        let mut out = Joined { hidden: Vec::with_capacity(text.len() * seq * dim), tokens: 0, pooled: None };
        for (k, (mut z, chunk)) in states.by_ref().take(text.len()) {
            weigh(&mut z, &chunk.weights, dim, empty.as_deref());
            out.hidden.append(&mut z);
            out.tokens += seq;
            out.pooled = out.pooled.or_else(|| pooled.get(k).cloned());
        }
        joined.push(out);
    }
    Ok((joined, dim))
}

/// Chunk states `z` (`[seq · dim]`) weighed by its tokens' `weights`. From `empty`, the empty
/// prompt's states, ComfyUI's way: a weighed token's state moved from the empty prompt's by
/// its weight, `(z − e)·w + e`. Without, A1111's ("Original" emphasis): every state times its
/// token's weight, then all scaled back to the chunk's mean before. A chunk of weights 1 is
/// as it was.
fn weigh(z: &mut [f32], weights: &[f32], dim: usize, empty: Option<&[f32]>) {
    if weights.iter().all(|&w| w == 1.0) || dim == 0 {
        return;
    }
    match empty {
        Some(e) => {
            let tokens = z.chunks_exact_mut(dim).zip(weights).zip(e.chunks_exact(dim));
            for ((state, &w), e) in tokens.filter(|((_, w), _)| **w != 1.0) {
                state.iter_mut().zip(e).for_each(|(v, e)| *v = (*v - e) * w + e);
            }
        }
        None => {
            let mean = |z: &[f32]| z.iter().map(|&v| f64::from(v)).sum::<f64>() / z.len().max(1) as f64;
            let before = mean(z);
            for (state, &w) in z.chunks_exact_mut(dim).zip(weights) {
                state.iter_mut().for_each(|v| *v *= w);
            }
            let after = mean(z);
            // A mean of 0 after weighing (all weights 0) has nothing to scale back to.
            if after != 0.0 && (before / after).is_finite() {
                let scale = (before / after) as f32;
                z.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }
}

/// A text's `parts` as `tok`'s chunks by `rule`; past the first only where the UNet takes a
/// longer sequence (`one_chunk` false), else cut there with a warning, as before chunks.
fn chunked(
    tok: &ClipTokenizer,
    (parts, named): (&[Part], Named),
    rule: SampleAs,
    (what, one_chunk): (&str, bool),
    warnings: &mut Vec<String>,
) -> Result<Vec<Chunk>, DiffusionError> {
    let mut chunks = chunks::chunks(tok, parts, rule, named).map_err(|e| match e {
        ChunkError::Tokenizer(e) => DiffusionError::Tokenizer(e),
        ChunkError::Embedding(message) => DiffusionError::Request { field: field_of(what), message },
    })?;
    if rule == SampleAs::Comfyui {
        warnings.extend(fixes::named_as_words(parts, named, what));
    }
    if one_chunk && chunks.len() > 1 {
        let w = format!(
            "{what} is longer than {} tokens, and this model's UNet takes that many only: the rest was dropped",
            tok.max_length().saturating_sub(2)
        );
        tracing::warn!("{w}");
        warnings.push(w);
        chunks.truncate(1);
    }
    Ok(chunks)
}

/// The request field a text is: "prompt" or "negative_prompt".
pub(super) fn field_of(what: &str) -> &'static str {
    if what == "prompt" { "prompt" } else { "negative_prompt" }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    if a == 0 || b == 0 { a.max(b) } else { a / gcd(a, b) * b }
}

/// The conditionings of a run by step: one, or under `sample_as: a1111` one for each text
/// its prompt and negative prompt are edited to (A1111's `[from:to:when]` and `[a|b]`,
/// `prompt_schedule.rs`), each encoded once.
pub(super) struct CondSchedule {
    /// The last step (A1111's count) each conditioning in `conds` is for, in order.
    ends: Vec<(u32, usize)>,
    conds: Vec<Conditioning>,
}

impl CondSchedule {
    /// The conditioning of step `step` (A1111's counter: its CFG denoiser's calls from 0):
    /// the first whose last step is not before it, else the first, as A1111 picks.
    pub fn at(&self, step: u32) -> &Conditioning {
        let first = self.ends.iter().find(|(end, _)| step <= *end).or(self.ends.first());
        &self.conds[first.map_or(0, |(_, i)| *i)]
    }

    /// The embeddings any of its prompts named, each once.
    pub fn embeddings(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.conds.iter().flat_map(|c| &c.embeddings) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// The run's conditionings: its prompts as they are, or, read as A1111 reads them, as its
/// prompt editing schedules them over `req.steps` (a hires fix's second pass counting on
/// from its first's, `req.first_pass_steps`).
pub(super) fn encode_schedule(
    model: &SdModel,
    req: &GenerateRequest,
    (cfg, n): (bool, usize),
    warnings: &mut Vec<String>,
    onnx: &mut Duration,
) -> Result<CondSchedule, DiffusionError> {
    let negative = req.negative_prompt.as_deref();
    if req.scheduler.sample_as != SampleAs::A1111 {
        let cond = encode_prompts(model, req, (&req.prompt, negative), (cfg, n), warnings, onnx)?;
        return Ok(CondSchedule { ends: vec![(u32::MAX, 0)], conds: vec![cond] });
    }
    let timeline = Timeline { steps: req.steps, first_pass: req.first_pass_steps };
    let prompts = prompt_schedule::schedule(&req.prompt, timeline);
    let negatives = negative.map(|n| prompt_schedule::schedule(n, timeline));
    let mut ends: Vec<u32> = prompts.iter().chain(negatives.iter().flatten()).map(|s| s.end_at_step).collect();
    ends.sort_unstable();
    ends.dedup();
    let text_at = |schedule: &[Scheduled], step: u32| {
        let entry = schedule.iter().find(|s| step <= s.end_at_step).or(schedule.first());
        entry.map_or("", |s| s.text.as_str()).to_string()
    };
    let mut texts: Vec<(String, Option<String>)> = Vec::new();
    let mut schedule = CondSchedule { ends: Vec::with_capacity(ends.len()), conds: Vec::new() };
    for end in ends {
        let pair = (text_at(&prompts, end), negatives.as_deref().map(|n| text_at(n, end)));
        let index = match texts.iter().position(|t| *t == pair) {
            Some(i) => i,
            None => {
                let (prompt, negative) = (&pair.0, pair.1.as_deref());
                schedule.conds.push(encode_prompts(model, req, (prompt, negative), (cfg, n), warnings, onnx)?);
                texts.push(pair);
                texts.len() - 1
            }
        };
        schedule.ends.push((end, index));
    }
    // Each text that runs past the chunks the UNet takes says so once, however many steps
    // it is drawn at.
    let mut said = std::collections::HashSet::new();
    warnings.retain(|w| said.insert(w.clone()));
    Ok(schedule)
}

/// The conditioning of `prompt` and `negative` for a run of `req`'s size and reading.
pub(super) fn encode_prompts(
    model: &SdModel,
    req: &GenerateRequest,
    (prompt, negative): (&str, Option<&str>),
    (cfg, n): (bool, usize),
    warnings: &mut Vec<String>,
    onnx: &mut Duration,
) -> Result<Conditioning, DiffusionError> {
    let rule = req.scheduler.sample_as;
    let one_chunk = model.unet.hidden.fixed(1).is_some();
    let zero_negative =
        model.info.family == Family::Sdxl && negative.is_none() && model.info.force_zeros_for_empty_prompt;
    let mut texts: Vec<(&str, &str)> = vec![(prompt, "prompt")];
    if cfg && !zero_negative {
        texts.insert(0, (negative.unwrap_or(""), "negative prompt"));
    }
    // Read once; each encoder's tokenizer makes its own chunks of them.
    let parts: Vec<(Vec<Part>, &str)> = texts.iter().map(|(t, w)| (emphasis::parse(t, rule), *w)).collect();
    let (usable, others) = fixes::usable(model, &req.embeddings);
    let named = Named { usable: &usable, others: &others };
    let family = model.info.family;
    let chunks1: Vec<Vec<Chunk>> = parts
        .iter()
        .map(|(p, w)| chunked(&model.tokenizer, (p, named), rule, (w, one_chunk), warnings))
        .collect::<Result<_, _>>()?;
    let labelled: Vec<(Vec<Chunk>, &str)> = chunks1.into_iter().zip(parts.iter().map(|(_, w)| *w)).collect();
    fixes::check_taken(&model.text_encoder, &labelled, &usable)?;
    let chunks1: Vec<Vec<Chunk>> = labelled.into_iter().map(|(c, _)| c).collect();
    let mut embeddings: Vec<String> = Vec::new();
    for e in chunks1.iter().flatten().flat_map(|c| &c.fixes).filter_map(|f| usable.get(f.embedding)) {
        if !embeddings.contains(&e.name) {
            embeddings.push(e.name.clone());
        }
    }
    let (mut joined, d1) = encode_chunked(
        &model.text_encoder,
        &model.tokenizer,
        (&chunks1, &usable, family),
        (rule, req.clip_skip),
        onnx,
    )?;
    let mut dim = d1;
    let mut pooled: Vec<Vec<f32>> = Vec::new();
    if let (Some(tok2), Some(enc2)) = (&model.tokenizer_2, &model.text_encoder_2) {
        let mut quiet = Vec::new();
        let chunks2: Vec<Vec<Chunk>> = parts
            .iter()
            .map(|(p, w)| chunked(tok2, (p, named), rule, (w, one_chunk), &mut quiet))
            .collect::<Result<_, _>>()?;
        let labelled: Vec<(Vec<Chunk>, &str)> = chunks2.into_iter().zip(parts.iter().map(|(_, w)| *w)).collect();
        fixes::check_taken(enc2, &labelled, &usable)?;
        let chunks2: Vec<Vec<Chunk>> = labelled.into_iter().map(|(c, _)| c).collect();
        let (second, d2) = encode_chunked(enc2, tok2, (&chunks2, &usable, family), (rule, req.clip_skip), onnx)?;
        // Both encoders' states joined token by token along the feature axis, as far as both
        // go (ComfyUI cuts to the shorter; the same vocabulary makes the same chunks).
        for (a, b) in joined.iter_mut().zip(&second) {
            let tokens = a.tokens.min(b.tokens);
            let mut both = Vec::with_capacity(tokens * (d1 + d2));
            for s in 0..tokens {
                both.extend_from_slice(&a.hidden[s * d1..(s + 1) * d1]);
                both.extend_from_slice(&b.hidden[s * d2..(s + 1) * d2]);
            }
            (a.hidden, a.tokens) = (both, tokens);
        }
        dim = d1 + d2;
        pooled = second.into_iter().map(|j| j.pooled.unwrap_or_default()).collect();
    }
    if cfg && zero_negative {
        let tokens = model.tokenizer.max_length();
        joined.insert(0, Joined { hidden: vec![0.0; tokens * dim], tokens, pooled: None });
        if let Some(p) = pooled.first() {
            let len = p.len();
            pooled.insert(0, vec![0.0; len]);
        }
    }
    // Texts of other lengths go through the UNet as one batch, each repeated to the least
    // common multiple of their lengths: repeating the keys and values of its cross-attention
    // changes nothing it computes (ComfyUI pads so).
    let seq = joined.iter().fold(0, |l, j| lcm(l, j.tokens));
    // Batch order as diffusers: [uncond × n, cond × n].
    let mut hidden = Vec::with_capacity(joined.len() * n * seq * dim);
    for j in &joined {
        for _ in 0..n * (seq / j.tokens.max(1)) {
            hidden.extend_from_slice(&j.hidden);
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
        [h, w, 0.0, 0.0, h, w].repeat(joined.len() * n)
    });
    Ok(Conditioning { hidden, seq, dim, text_embeds, time_ids, embeddings })
}

/// The UNet conditioning of one text (SDXL: both encoders' penultimate states joined, or
/// those `clip_skip` picks), `[seq · D]`; for checking a model's text path on its own.
pub fn prompt_embeddings(model: &SdModel, text: &str, clip_skip: Option<u32>) -> Result<Vec<f32>, DiffusionError> {
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
        clip_skip,
        first_pass_steps: None,
        embeddings: Vec::new(),
    };
    let mut onnx = Duration::ZERO;
    Ok(encode_prompts(model, &req, (text, None), (false, 1), &mut Vec::new(), &mut onnx)?.hidden)
}

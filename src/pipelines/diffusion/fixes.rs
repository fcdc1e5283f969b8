//! Where a textual-inversion embedding's vectors go in a text encoder run: which installed
//! embeddings a model takes, the refusal where its encoder takes none, the mask and vectors
//! fed beside the token ids, and the words ComfyUI's reading leaves an embedding's name as.

use std::borrow::Cow;

use ort::session::SessionInputValue;

use super::DiffusionError;
use super::chunks::{Chunk, Named};
use super::embedding::Embedding;
use super::emphasis::Part;
use super::model::SdModel;
use super::onnx::{TensorInfo, bool_input, owned_float_input};
use super::text_encoder::TextEncoder;

/// The vectors that go in place of token embeddings: per chunk, its positions and rows.
pub(super) type Rows<'a> = Vec<(usize, &'a [f32])>;

/// The mask and vectors of a batch of `n` chunks of `seq` tokens: each chunk's `rows` at
/// their positions, nothing elsewhere.
pub(super) fn feeds<'a>(
    (mask, vectors): &(TensorInfo, TensorInfo),
    (n, seq): (usize, usize),
    rows: impl Iterator<Item = &'a Rows<'a>>,
) -> Result<Vec<(Cow<'static, str>, SessionInputValue<'static>)>, DiffusionError> {
    let width = vectors.fixed(2).unwrap_or(0);
    let mut on = vec![false; n * seq];
    let mut values = vec![0.0f32; n * seq * width];
    for (j, chunk) in rows.enumerate() {
        for &(at, row) in chunk {
            if at >= seq || row.len() != width {
                return Err(DiffusionError::Run {
                    part: "text_encoder",
                    reason: format!("an embedding vector of {} at token {at} of {seq}, {width} wide", row.len()),
                });
            }
            on[j * seq + at] = true;
            values[(j * seq + at) * width..][..width].copy_from_slice(row);
        }
    }
    Ok(vec![bool_input(mask, vec![n, seq], on)?, owned_float_input(vectors, vec![n, seq, width], values)?])
}

/// The embeddings `model` takes among the installed `all` (its text encoders as wide as
/// their vectors), and the others.
pub(super) fn usable<'a>(
    model: &SdModel,
    all: &'a [std::sync::Arc<Embedding>],
) -> (Vec<&'a Embedding>, Vec<&'a Embedding>) {
    let encoders = std::iter::once(&model.text_encoder).chain(&model.text_encoder_2);
    let widths: Option<Vec<usize>> = encoders.map(TextEncoder::width).collect();
    all.iter().map(|e| &**e).partition(|e| widths.as_ref().is_some_and(|w| e.fits(model.info.family, w)))
}

/// Refuses `texts`' chunks (each with what it is) that name an embedding where `encoder`
/// takes none: an export from the hub, or an import from before embeddings.
pub(super) fn check_taken(
    encoder: &TextEncoder,
    texts: &[(Vec<Chunk>, &str)],
    usable: &[&Embedding],
) -> Result<(), DiffusionError> {
    if encoder.embedding_inputs.is_some() {
        return Ok(());
    }
    for (chunks, what) in texts {
        if let Some(fix) = chunks.iter().flat_map(|c| c.fixes.first()).next() {
            let name = usable.get(fix.embedding).map_or("", |e| e.name.as_str());
            let message = super::embedding::untaken(name, encoder.part.name);
            return Err(DiffusionError::Request { field: super::text::field_of(what), message });
        }
    }
    Ok(())
}

/// The warnings for `parts` (the text `what`) naming embeddings among `named.usable` as words,
/// which ComfyUI's reading leaves words.
pub(super) fn named_as_words(parts: &[Part], named: Named, what: &str) -> Vec<String> {
    let text: String =
        parts.iter().filter_map(|p| if let Part::Text(t, _) = p { Some(t.as_str()) } else { None }).collect();
    let names = super::embedding::named_as_words(&text, named.usable);
    names
        .into_iter()
        .map(|name| {
            format!(
                "{what} names {name}, an installed embedding, as words: ComfyUI's reading takes it as \
                 `embedding:{name}` (A1111's, `sample_as: a1111`, by its name)"
            )
        })
        .collect()
}

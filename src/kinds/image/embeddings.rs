//! The textual-inversion embeddings installed (`reelbox models import` of an embedding
//! file), which an image job's prompts may name: read once per reading of the models dir
//! (`Catalog::worked_out`), as a job, A1111's `/sdapi/v1/embeddings` and ComfyUI's
//! `/embeddings` all list them.

use std::sync::Arc;

use super::refine::sub;
use crate::config::Config;
use crate::kinds::ParamError;
use crate::kinds::image::ImageParams;
use crate::models::convert::fused::Checkpoint;
use crate::models::{Catalog, ModelKind};
use crate::pipelines::diffusion::ModelInfo;
use crate::pipelines::diffusion::embedding::{self, Embedding, Piece, comfy_refusal, comfy_words, untaken};
use crate::pipelines::diffusion::samplers::SampleAs;
use crate::pipelines::diffusion::tokenizer::ClipTokenizer;

/// The installed embeddings, by name; one whose file cannot be read is left out with a
/// warning (`reelbox models verify` names what is wrong with it).
#[derive(Default)]
pub struct Installed(pub Vec<Arc<Embedding>>);

/// The embeddings installed in `config`'s models dir.
pub fn installed(config: &Config) -> Arc<Installed> {
    Catalog::load(config).worked_out(|catalog| {
        let read = catalog.installed(ModelKind::Embedding).filter_map(|m| {
            let file = m.dir()?.join(embedding::FILE);
            Embedding::read(m.name(), &file)
                .inspect_err(|e| tracing::warn!("embedding {} left out: {e}", m.name()))
                .ok()
        });
        Installed(read.map(Arc::new).collect())
    })
}

/// A1111's `TI hashes` of the installed embeddings `names`: each with the first 12 digits of
/// the sha256 of the file it was imported from, as its import recorded it (one without is
/// left out, as A1111 leaves out one it has not hashed).
pub fn hashes_of(config: &Config, names: &[String]) -> Vec<(String, String)> {
    let hash = |name: &String| {
        let dir = Catalog::installed_dir_of(config, ModelKind::Embedding, name)?;
        let sha256 = Checkpoint::read(name, &dir, None).sha256?;
        Some((name.clone(), sha256.get(..12)?.to_string()))
    };
    names.iter().filter_map(hash).collect()
}

/// Refuses at submission a prompt (`texts`: each with its field) naming an installed
/// embedding that model `info` cannot draw with, read by `rule`: ComfyUI's `embedding:NAME`
/// of none installed or of one its text encoders do not take; A1111's name among the words
/// where the model takes no embeddings at all (a hub export), found by its tokenizer only
/// when the name is in the text.
pub fn check_named(
    config: &Config,
    info: &ModelInfo,
    rule: SampleAs,
    texts: &[(&str, &'static str)],
) -> Result<(), ParamError> {
    let all = installed(config);
    for &(text, field) in texts {
        match rule {
            SampleAs::Comfyui => {
                for piece in comfy_words(text) {
                    let Piece::Embedding(name, _) = piece else { continue };
                    let named = all.0.iter().find(|e| e.names_it(name));
                    match named {
                        Some(e) if info.takes(e) => {}
                        Some(e) if !info.takes_embeddings => {
                            return Err(ParamError::new(field, untaken(&e.name, "text_encoder")));
                        }
                        other => {
                            let why = other.map(|e| (&**e, "its text encoder"));
                            return Err(ParamError::new(field, comfy_refusal(name, why)));
                        }
                    }
                }
            }
            SampleAs::A1111 if !info.takes_embeddings => {
                let lower = text.to_lowercase();
                let fitting = all.0.iter().filter(|e| e.fits(info.family, &info.text_widths));
                let mut tokenizer = None;
                for e in fitting.filter(|e| lower.contains(&e.name.to_lowercase())) {
                    // The words hold the name: whether its tokens are among the prompt's (the
                    // tokenizer read once, and only then).
                    let tok = match &tokenizer {
                        Some(tok) => tok,
                        None => match ClipTokenizer::load(&info.dir.join("tokenizer")) {
                            Ok(tok) => tokenizer.insert(tok),
                            // A model only a worker box has: its run refuses as this would.
                            Err(_) => return Ok(()),
                        },
                    };
                    let (Ok(ids), Ok(name)) = (tok.text_ids(text), tok.text_ids(&e.name)) else { continue };
                    if !name.is_empty() && ids.windows(name.len()).any(|w| w == name.as_slice()) {
                        return Err(ParamError::new(field, untaken(&e.name, "text_encoder")));
                    }
                }
            }
            SampleAs::A1111 => {}
        }
    }
    Ok(())
}

/// [`check_named`] for a second pass drawing with `info`'s model (`own`: one it names, not the
/// first pass's) its prompts (`refine.prompt`/`negative_prompt`, else the first pass's):
/// refused at `refine.model` where it names its own, else at the prompt under `refine`.
pub fn check_second_pass(
    config: &Config,
    info: &ModelInfo,
    first: &ImageParams,
    (prompt, negative): (Option<&str>, Option<&str>),
    own: bool,
) -> Result<(), ParamError> {
    if !own && prompt.is_none() && negative.is_none() {
        return Ok(());
    }
    let prompt = prompt.unwrap_or(&first.prompt);
    let negative = negative.or(first.negative_prompt.as_deref()).unwrap_or("");
    let texts = [(prompt, "prompt"), (negative, "negative_prompt")];
    check_named(config, info, first.sample_as, &texts).map_err(|e| match own {
        true => ParamError::new(sub("model"), format!("its {}: {}", e.field, e.message)),
        false => ParamError::new(sub(&e.field), e.message),
    })
}

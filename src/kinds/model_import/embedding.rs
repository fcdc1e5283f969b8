//! Importing a textual-inversion embedding. One in safetensors (what people share today:
//! A1111's `emb_params`, SDXL's `clip_l` + `clip_g`, diffusers' one tensor) is read here and
//! kept as reelbox's `embedding.safetensors`, with no conversion environment (PyTorch,
//! gigabytes) made for a file of a few kilobytes; a pickled one (`.pt`, `.bin`) goes to the
//! converter like any checkpoint, and its self-check reads the file it wrote back against
//! the vectors PyTorch read.

use std::path::Path;

use super::{ImportError, ImportParams, SelfCheck};
use crate::models::convert::{self, Conversion, ConvertError, ConvertRequest, Converted};
use crate::models::{ModelKind, ModelStore};
use crate::pipelines::diffusion::embedding::{self, Embedding, EmbeddingError};

/// The embedding in `p`'s file when it is a safetensors embedding reelbox reads itself
/// (nothing else asked of the import: LoRAs, `fp16` and a prediction type are the
/// converter's to refuse), `None` when the file is for the converter; a file imported as
/// `kind: embedding` that is none is refused.
pub(super) fn safetensors_embedding(p: &ImportParams, name: &str) -> Result<Option<Embedding>, ImportError> {
    let safetensors = p.path.extension().is_some_and(|x| x.eq_ignore_ascii_case("safetensors"));
    let plain = p.loras.is_empty() && !p.fp16 && p.prediction.is_none();
    if !p.path.is_file() || !safetensors || !plain || p.kind.is_some_and(|k| k != ModelKind::Embedding) {
        return Ok(None);
    }
    match Embedding::read(name, &p.path) {
        Ok(e) => Ok(Some(e)),
        Err(e @ EmbeddingError::Not { .. }) if p.kind == Some(ModelKind::Embedding) => {
            Err(ImportError::Refused { input: p.path.clone(), reason: e.to_string() })
        }
        // A checkpoint or a LoRA: the converter says which.
        Err(EmbeddingError::Not { .. }) => Ok(None),
        Err(e @ EmbeddingError::Io { .. }) => {
            Err(ImportError::Refused { input: p.path.clone(), reason: e.to_string() })
        }
    }
}

/// `e`, read from `req.input`, staged as reelbox keeps an embedding.
pub(super) fn stage(store: &ModelStore, req: &ConvertRequest, e: &Embedding) -> Result<Conversion, ConvertError> {
    let result = Converted {
        kind: ModelKind::Embedding.as_str().into(),
        format: "textual-inversion".into(),
        summary: format!("textual inversion embedding, {}", e.describe()),
        details: serde_json::json!({"vectors": e.vectors(), "widths": e.widths()}),
        check: Default::default(),
    };
    convert::staged(store, req, result, |dir| {
        e.write(&dir.join(embedding::FILE)).map_err(|source| match source {
            EmbeddingError::Io { path, source } => ConvertError::Io { path, source },
            other => ConvertError::Refused { message: other.to_string() },
        })
    })
}

/// The converter's embedding read back from its staging directory against the vectors
/// PyTorch read.
pub(super) fn check(conv: &Conversion, tolerance: f32) -> Result<SelfCheck, ImportError> {
    let (expected, _) = conv.tensor("expected")?;
    let written = Embedding::read(&conv.request.name, &conv.staging().join(embedding::FILE))
        .map_err(|e| ImportError::Refused { input: conv.request.input.clone(), reason: e.to_string() })?;
    let got: Vec<f32> = written.tensors.iter().flat_map(|t| t.values.iter().copied()).collect();
    let max_abs_diff = super::max_abs_diff(&expected, &got).ok_or_else(|| ImportError::Refused {
        input: conv.request.input.clone(),
        reason: format!("the embedding written holds {} values where PyTorch read {}", got.len(), expected.len()),
    })?;
    Ok(SelfCheck { compared: format!("its {}", written.describe()), max_abs_diff, tolerance })
}

/// Whether `path` ends like a file an embedding is kept in.
pub(super) fn is_embedding_file(path: &Path) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| ["safetensors", "pt", "bin"].contains(&x.to_ascii_lowercase().as_str()))
}

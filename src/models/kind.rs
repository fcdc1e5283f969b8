//! The kinds of model reelbox runs, as manifests, the CLI and the API name them.

use serde::{Deserialize, Serialize};

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Tts,
    Diffusion,
    Lipsync,
    Upscale,
    Face,
}

impl ModelKind {
    /// The kind as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Tts => "tts",
            ModelKind::Diffusion => "diffusion",
            ModelKind::Lipsync => "lipsync",
            ModelKind::Upscale => "upscale",
            ModelKind::Face => "face",
        }
    }

    /// "a" or "an" before the kind's name in a sentence ("an upscale model").
    pub fn article(self) -> &'static str {
        if self.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tts" => ModelKind::Tts,
            "diffusion" => ModelKind::Diffusion,
            "lipsync" => ModelKind::Lipsync,
            "upscale" => ModelKind::Upscale,
            "face" => ModelKind::Face,
            _ => return None,
        })
    }
}

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
    /// A textual-inversion embedding: vectors a prompt names, not a model that runs.
    Embedding,
}

impl ModelKind {
    /// Every kind, in the order lists name them.
    pub const ALL: [ModelKind; 6] = [
        ModelKind::Tts,
        ModelKind::Diffusion,
        ModelKind::Lipsync,
        ModelKind::Upscale,
        ModelKind::Face,
        ModelKind::Embedding,
    ];

    /// Every kind's name, for a refusal of another: "tts, diffusion, …, embedding".
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// The kind as manifests spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Tts => "tts",
            ModelKind::Diffusion => "diffusion",
            ModelKind::Lipsync => "lipsync",
            ModelKind::Upscale => "upscale",
            ModelKind::Face => "face",
            ModelKind::Embedding => "embedding",
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
            "embedding" => ModelKind::Embedding,
            _ => return None,
        })
    }
}

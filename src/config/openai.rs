//! The `[openai]` section: how OpenAI-style requests name reelbox's models and voices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names OpenAI clients use, mapped onto installed models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// OpenAI voice name (`alloy`, `echo`, `fable`, `onyx`, `nova`, `shimmer`, ...) → installed Piper voice.
    pub voices: BTreeMap<String, String>,
    /// Piper voice for an OpenAI voice missing from `voices`; `None` takes the first installed voice by name.
    pub default_voice: Option<String>,
    /// Diffusion model for requests naming an OpenAI model (`dall-e-3`, `gpt-image-1`) or none;
    /// `None` takes the first installed diffusion model by name.
    pub default_image_model: Option<String>,
}

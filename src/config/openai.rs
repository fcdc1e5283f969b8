//! The `[openai]` section: how OpenAI-style requests name reelbox's models and voices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names OpenAI clients use, mapped onto installed models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// OpenAI voice name (`alloy`, `echo`, `fable`, `onyx`, `nova`, `shimmer`, ...) → installed Piper voice.
    pub voices: BTreeMap<String, String>,
    /// Piper voice for an OpenAI voice missing from `voices`; `None` (or a voice that is not
    /// installed) takes the box's default voice, the one `models list` tags.
    pub default_voice: Option<String>,
    /// Diffusion model for requests naming an OpenAI model (`dall-e-3`, `gpt-image-1`) or none;
    /// `None` (or a model that is not installed) takes the box's default diffusion model.
    pub default_image_model: Option<String>,
}

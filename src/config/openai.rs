//! The `[openai]` section: how OpenAI-style requests name reelbox's models and voices, and
//! how long the picture links it answers with work and a hung-up request's job waits for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Names OpenAI clients use, mapped onto installed models, and how long the links to
/// pictures it answers with work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Seconds a picture's `url` (`response_format: "url"`) opens it without a key, as
    /// OpenAI's links do for about an hour; after that the link is refused (403
    /// `link_expired`) and a key reads the picture as before.
    pub image_url_lifetime_s: u64,
    /// Seconds a job keeps going after the client waiting on it hung up, for the same
    /// request sent again to wait on it (OpenAI's SDKs send it again after their timeout);
    /// canceled if none comes. 0 cancels at once.
    pub hangup_grace_s: u64,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            voices: BTreeMap::new(),
            default_voice: None,
            default_image_model: None,
            image_url_lifetime_s: 3600,
            hangup_grace_s: 60,
        }
    }
}

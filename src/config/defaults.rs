//! The `[defaults]` section: which model a request that names none gets, per kind.

use serde::{Deserialize, Serialize};

/// The Piper voice used when none is named (what `reelbox setup` installs).
pub const DEFAULT_VOICE: &str = "en_US-joe-medium";

/// Default models per kind (`models::Catalog::default_name` reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Diffusion model for `image` requests without `model`; `None` takes the only installed one.
    pub image_model: Option<String>,
    /// Piper voice for `speech` requests and `reelbox say` without a voice.
    pub voice: String,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        Self { image_model: None, voice: DEFAULT_VOICE.to_string() }
    }
}

//! The `[defaults]` section: which model a request that names none gets, per kind.

use serde::{Deserialize, Serialize};

/// The Piper voice used when none is named (what `reelbox setup` installs).
pub const DEFAULT_VOICE: &str = "en_US-joe-medium";

/// Default models per kind (`models::Catalog::default_model` reads them; a model named
/// here that is not installed is passed over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Diffusion model for `image` requests without `model`; `None` takes the only installed one.
    pub image_model: Option<String>,
    /// Piper voice for `speech` requests and `reelbox say` without a voice.
    pub voice: String,
    /// Lip-sync model for `lipsync` jobs and presenters of renders without `model`/`lipsync_model`.
    pub lipsync_model: Option<String>,
    /// Upscaler for `upscale` jobs and renders without `model`/`upscale_model`.
    pub upscale_model: Option<String>,
    /// Face detector for `face_detect` jobs and lip-sync without a `face_box`.
    pub face_model: Option<String>,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        Self {
            image_model: None,
            voice: DEFAULT_VOICE.to_string(),
            lipsync_model: None,
            upscale_model: None,
            face_model: None,
        }
    }
}

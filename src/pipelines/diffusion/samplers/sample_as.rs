//! Whose arithmetic a run over a [`Schedule`](super::Schedule) follows: ComfyUI's KSampler and
//! A1111's k-diffusion samplers run the same update rules over the same schedules, but give
//! the UNet another timestep for a σ and start from another multiple of the noise, so the same
//! seed makes another picture. One sampler ([`super::ksampler::KSampler`]) takes the rule.

use serde::{Deserialize, Serialize};

/// A request's `sample_as`: whose pictures a run over a schedule makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleAs {
    /// ComfyUI's KSampler (`comfy/samplers.py`, `model_sampling.py`): the UNet is given the
    /// whole training timestep nearest the σ; a run from the top of the schedule starts at
    /// √(1 + σ₀²)·noise, on a picture too (`max_denoise`); the training σs worked in float64;
    /// the VAE's mean as a picture's latent (VAEEncode).
    #[default]
    #[serde(rename = "comfyui")]
    Comfyui,
    /// A1111's k-diffusion samplers (`sd_samplers_kdiffusion.py` over k-diffusion's
    /// `CompVisDenoiser`, unquantized): the UNet is given the fractional timestep interpolated
    /// in log σ; a run starts at σ₀·noise, from noise or from a picture; the training σs worked
    /// in float32 from the model's float32 ᾱ; a picture's latent sampled from the VAE.
    #[serde(rename = "a1111")]
    A1111,
}

impl SampleAs {
    /// The names a request gives the rules in.
    pub const NAMES: [&'static str; 2] = ["comfyui", "a1111"];

    /// The rule a request names, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "comfyui" => Some(Self::Comfyui),
            "a1111" => Some(Self::A1111),
            _ => None,
        }
    }

    /// Its name in a request.
    pub fn name(self) -> &'static str {
        match self {
            Self::Comfyui => "comfyui",
            Self::A1111 => "a1111",
        }
    }

    /// Whether this is the default, which stored jobs leave out (and jobs stored before it
    /// read as).
    pub fn is_comfyui(&self) -> bool {
        *self == Self::Comfyui
    }

    /// The multiple of the noise a run starting at `first` (the schedule's first σ; `full`:
    /// the top of the model's schedule) begins from, from noise or over a picture's latent.
    pub(super) fn start_sigma(self, first: f32, full: bool) -> f32 {
        match self {
            // KSampler's `max_denoise`: the model's input scaling, √(1 + σ²), at the top.
            Self::Comfyui if full => (1.0 + first * first).sqrt(),
            // A1111's `sample` (`x * sigmas[0]`, `sgm_noise_multiplier` off by default) and
            // `sample_img2img` (`x + noise * sigma_sched[0]`).
            Self::Comfyui | Self::A1111 => first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_and_the_default_is_comfyuis() {
        for name in SampleAs::NAMES {
            assert_eq!(SampleAs::parse(name).map(SampleAs::name), Some(name));
        }
        assert_eq!(SampleAs::parse("A1111"), None);
        assert!(SampleAs::default().is_comfyui());
        let json = serde_json::to_string(&SampleAs::A1111).expect("json");
        assert_eq!(json, "\"a1111\"");
    }

    #[test]
    fn only_comfyui_starts_the_top_of_a_schedule_at_the_models_input_scaling() {
        assert_eq!(SampleAs::Comfyui.start_sigma(14.0, true), 197f32.sqrt());
        assert_eq!(SampleAs::Comfyui.start_sigma(14.0, false), 14.0);
        assert_eq!(SampleAs::A1111.start_sigma(14.0, true), 14.0);
    }
}

//! What a request names: a scheduler family, its Karras flag, or the ComfyUI schedule it
//! samples over, and the names and labels they go by.

use serde::{Deserialize, Serialize};

use super::{SampleAs, Schedule, SchedulerConfigFile, SchedulerError};

/// Scheduler names a request may use.
pub const SCHEDULER_NAMES: [&str; 8] =
    ["euler", "euler_karras", "euler_a", "ddim", "dpmpp_2m", "dpmpp_2m_karras", "lcm", "pndm"];

/// The scheduler families reelbox implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerKind {
    Euler,
    EulerAncestral,
    Ddim,
    DpmSolverMultistep,
    Lcm,
    Pndm,
}

/// A scheduler choice: family plus the Karras-σ flag, or the ComfyUI schedule it samples
/// by as ComfyUI's KSampler does (`ksampler.rs`), by whose arithmetic (`sample_as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerChoice {
    pub kind: SchedulerKind,
    pub karras: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Whose arithmetic a run over `schedule` follows (none: ComfyUI's, as before it).
    #[serde(default, skip_serializing_if = "SampleAs::is_comfyui")]
    pub sample_as: SampleAs,
}

impl SchedulerChoice {
    /// Parses a request's scheduler name (`euler`, `dpmpp_2m_karras`, ...).
    pub fn parse(name: &str) -> Result<Self, SchedulerError> {
        let n = name.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        let (base, karras) = match n.strip_suffix("_karras") {
            Some(b) => (b.to_string(), true),
            None => (n.clone(), false),
        };
        let kind = match base.as_str() {
            "euler" => SchedulerKind::Euler,
            "euler_a" | "euler_ancestral" => SchedulerKind::EulerAncestral,
            "ddim" => SchedulerKind::Ddim,
            "dpmpp_2m" | "dpm++_2m" | "dpmsolver++" | "dpm_solver_multistep" => SchedulerKind::DpmSolverMultistep,
            "lcm" => SchedulerKind::Lcm,
            "pndm" | "plms" => SchedulerKind::Pndm,
            _ => return Err(SchedulerError::UnknownName(name.to_string())),
        };
        if karras && !matches!(kind, SchedulerKind::Euler | SchedulerKind::DpmSolverMultistep) {
            return Err(SchedulerError::UnknownName(name.to_string()));
        }
        Ok(Self { kind, karras, schedule: None, sample_as: SampleAs::Comfyui })
    }

    /// Every choice a request may name, in [`SCHEDULER_NAMES`]' order: what a client offers
    /// (`GET /api/v1/samplers`), so no list is typed twice.
    pub fn all() -> impl Iterator<Item = Self> {
        SCHEDULER_NAMES.into_iter().filter_map(|n| Self::parse(n).ok())
    }

    /// This choice on its family's own σs (`dpmpp_2m_karras` → `dpmpp_2m`).
    pub fn without_karras(self) -> Self {
        Self { karras: false, ..self }
    }

    /// This choice sampling by ComfyUI's `schedule` (none: diffusers' own schedule), refused
    /// for a `_karras` name (its σs are a schedule already) and the samplers k-diffusion's
    /// KSampler path lacks.
    pub fn with_schedule(self, schedule: Option<Schedule>) -> Result<Self, SchedulerError> {
        let Some(s) = schedule else { return Ok(Self { schedule: None, ..self }) };
        if self.karras {
            return Err(SchedulerError::Unsupported(format!(
                "{} and schedule {}: name the sampler alone (karras is a schedule)",
                self.name(),
                s.name()
            )));
        }
        if matches!(self.kind, SchedulerKind::Lcm | SchedulerKind::Pndm) {
            return Err(SchedulerError::Unsupported(format!(
                "{} takes no schedule: only euler, euler_a, ddim and dpmpp_2m do",
                self.name()
            )));
        }
        Ok(Self { schedule: Some(s), ..self })
    }

    /// This choice running its schedule by `rule`'s arithmetic (no schedule: nothing changes).
    pub fn sampled_as(self, rule: SampleAs) -> Self {
        Self { sample_as: rule, ..self }
    }

    /// Whether a picture to start from is encoded to its VAE latent's mean (ComfyUI's
    /// VAEEncode) rather than a sample of it (diffusers' and A1111's image to image).
    pub fn encodes_to_mean(&self) -> bool {
        self.schedule.is_some() && self.sample_as == SampleAs::Comfyui
    }

    /// The choice a model's own `scheduler_config.json` class names, when reelbox has it.
    pub fn from_class_name(class: &str, file: &SchedulerConfigFile) -> Option<Self> {
        let karras = file.use_karras_sigmas.unwrap_or(false);
        let kind = match class {
            "EulerDiscreteScheduler" => SchedulerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SchedulerKind::EulerAncestral,
            "DDIMScheduler" => SchedulerKind::Ddim,
            "DPMSolverMultistepScheduler" => SchedulerKind::DpmSolverMultistep,
            "LCMScheduler" => SchedulerKind::Lcm,
            // Only the PLMS form is implemented; a Runge-Kutta warm-up config falls back.
            "PNDMScheduler" if file.skip_prk_steps == Some(true) => SchedulerKind::Pndm,
            _ => return None,
        };
        let karras = karras && matches!(kind, SchedulerKind::Euler | SchedulerKind::DpmSolverMultistep);
        Some(Self { kind, karras, schedule: None, sample_as: SampleAs::Comfyui })
    }

    /// The canonical request name of this choice.
    pub fn name(&self) -> &'static str {
        match (self.kind, self.karras) {
            (SchedulerKind::Euler, false) => "euler",
            (SchedulerKind::Euler, true) => "euler_karras",
            (SchedulerKind::EulerAncestral, _) => "euler_a",
            (SchedulerKind::Ddim, _) => "ddim",
            (SchedulerKind::DpmSolverMultistep, false) => "dpmpp_2m",
            (SchedulerKind::DpmSolverMultistep, true) => "dpmpp_2m_karras",
            (SchedulerKind::Lcm, _) => "lcm",
            (SchedulerKind::Pndm, _) => "pndm",
        }
    }

    /// The A1111-style sampler label written into PNG parameters.
    pub fn label(&self) -> &'static str {
        match (self.kind, self.karras) {
            (SchedulerKind::Euler, false) => "Euler",
            (SchedulerKind::Euler, true) => "Euler Karras",
            (SchedulerKind::EulerAncestral, _) => "Euler a",
            (SchedulerKind::Ddim, _) => "DDIM",
            (SchedulerKind::DpmSolverMultistep, false) => "DPM++ 2M",
            (SchedulerKind::DpmSolverMultistep, true) => "DPM++ 2M Karras",
            (SchedulerKind::Lcm, _) => "LCM",
            (SchedulerKind::Pndm, _) => "PLMS",
        }
    }
}

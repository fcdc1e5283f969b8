//! Samplers (diffusers' noise schedulers) in pure Rust, one module each, following diffusers' implementations
//! (and their defaults) so that a model's `scheduler_config.json` means the same here.
//!
//! A scheduler is built for a fixed number of steps; the pipeline walks step indices from
//! a begin index (0, or later for img2img) to the end, calling `scale_model_input` before
//! the UNet and `step` after it.

use serde::{Deserialize, Deserializer, Serialize};

use super::noise::{NoiseError, NoiseSource};

mod choice;
pub mod comfy_sigmas;
mod ddim;
mod dpmpp;
mod euler;
mod euler_a;
mod img2img;
mod ksampler;
mod lcm;
mod pndm;
mod resume;
mod sample_as;
pub mod schedule;

pub use choice::{SCHEDULER_NAMES, SchedulerChoice, SchedulerKind};
pub use comfy_sigmas::Schedule;
pub use img2img::{Span, StepsMode, a1111_switch_step, build_span, count_rule, img2img_start, steps_run};
pub use resume::SamplerState;
pub use sample_as::SampleAs;

/// Why a scheduler cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    #[error("unknown scheduler {0:?}; known: {known}", known = SCHEDULER_NAMES.join(", "))]
    UnknownName(String),
    #[error("scheduler setting not supported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Steps(String),
}

/// `scheduler_config.json` as written by diffusers; every field optional, unknown ones ignored.
/// Written back (a worker box's heartbeat carries its models' configs) under the same names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfigFile {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: Option<usize>,
    #[serde(deserialize_with = "lenient_f64")]
    pub beta_start: Option<f64>,
    #[serde(deserialize_with = "lenient_f64")]
    pub beta_end: Option<f64>,
    pub beta_schedule: Option<String>,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: Option<String>,
    pub timestep_spacing: Option<String>,
    pub steps_offset: Option<usize>,
    pub rescale_betas_zero_snr: Option<bool>,
    pub clip_sample: Option<bool>,
    #[serde(deserialize_with = "lenient_f64")]
    pub clip_sample_range: Option<f64>,
    pub set_alpha_to_one: Option<bool>,
    pub skip_prk_steps: Option<bool>,
    pub thresholding: Option<bool>,
    pub use_karras_sigmas: Option<bool>,
    pub use_exponential_sigmas: Option<bool>,
    pub use_beta_sigmas: Option<bool>,
    pub use_lu_lambdas: Option<bool>,
    pub interpolation_type: Option<String>,
    #[serde(deserialize_with = "lenient_f64")]
    pub sigma_min: Option<f64>,
    #[serde(deserialize_with = "lenient_f64")]
    pub sigma_max: Option<f64>,
    pub final_sigmas_type: Option<String>,
    pub timestep_type: Option<String>,
    pub solver_order: Option<usize>,
    pub solver_type: Option<String>,
    pub algorithm_type: Option<String>,
    pub lower_order_final: Option<bool>,
    pub euler_at_final: Option<bool>,
    #[serde(deserialize_with = "lenient_f64")]
    pub lambda_min_clipped: Option<f64>,
    pub original_inference_steps: Option<usize>,
    #[serde(deserialize_with = "lenient_f64")]
    pub timestep_scaling: Option<f64>,
}

/// A float that configs may also spell as a string (`"-inf"`, `"Infinity"`) or `null`.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Number(f64),
        Text(String),
    }
    match Option::<Num>::deserialize(d)? {
        None => Ok(None),
        Some(Num::Number(v)) => Ok(Some(v)),
        Some(Num::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "inf" | "+inf" | "infinity" | "+infinity" => Ok(Some(f64::INFINITY)),
            "-inf" | "-infinity" => Ok(Some(f64::NEG_INFINITY)),
            "nan" => Ok(None),
            other => other.parse().map(Some).map_err(serde::de::Error::custom),
        },
    }
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

/// A scheduler's effective settings: the file's values over the family's own defaults,
/// which is what diffusers' `from_config` does.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction: Prediction,
    pub timestep_spacing: String,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub skip_prk_steps: bool,
    pub use_karras_sigmas: bool,
    pub interpolation_type: String,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub final_sigmas_type: String,
    pub solver_order: usize,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    pub lambda_min_clipped: f64,
    pub original_inference_steps: usize,
    pub timestep_scaling: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            prediction: Prediction::Epsilon,
            timestep_spacing: "linspace".into(),
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            skip_prk_steps: false,
            use_karras_sigmas: false,
            interpolation_type: "linear".into(),
            sigma_min: None,
            sigma_max: None,
            final_sigmas_type: "zero".into(),
            solver_order: 2,
            solver_type: "midpoint".into(),
            lower_order_final: true,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
        }
    }
}

impl SchedulerConfig {
    /// Applies `file` over the defaults of `choice`'s family, rejecting settings reelbox
    /// does not implement rather than silently sampling differently.
    pub fn resolve(file: &SchedulerConfigFile, choice: SchedulerChoice) -> Result<Self, SchedulerError> {
        let mut c = Self::default();
        match choice.kind {
            SchedulerKind::Ddim => c.timestep_spacing = "leading".into(),
            SchedulerKind::Pndm => {
                c.timestep_spacing = "leading".into();
                c.set_alpha_to_one = false;
                // A request naming `pndm` means the PLMS form whatever the model's file says.
                c.skip_prk_steps = true;
            }
            SchedulerKind::Lcm => {
                c.beta_start = 0.00085;
                c.beta_end = 0.012;
                c.beta_schedule = "scaled_linear".into();
                c.clip_sample = false;
                c.timestep_spacing = "leading".into();
            }
            _ => {}
        }
        let f = file;
        c.num_train_timesteps = f.num_train_timesteps.unwrap_or(c.num_train_timesteps);
        c.beta_start = f.beta_start.unwrap_or(c.beta_start);
        c.beta_end = f.beta_end.unwrap_or(c.beta_end);
        c.beta_schedule = f.beta_schedule.clone().unwrap_or(c.beta_schedule);
        c.trained_betas = f.trained_betas.clone();
        c.prediction = match f.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            other => {
                return Err(SchedulerError::Unsupported(format!("prediction_type {other:?}")));
            }
        };
        c.timestep_spacing = f.timestep_spacing.clone().unwrap_or(c.timestep_spacing);
        c.steps_offset = f.steps_offset.unwrap_or(c.steps_offset);
        c.rescale_betas_zero_snr = f.rescale_betas_zero_snr.unwrap_or(false);
        c.clip_sample = f.clip_sample.unwrap_or(c.clip_sample);
        c.clip_sample_range = f.clip_sample_range.unwrap_or(c.clip_sample_range);
        c.set_alpha_to_one = f.set_alpha_to_one.unwrap_or(c.set_alpha_to_one);
        c.skip_prk_steps = c.skip_prk_steps || f.skip_prk_steps.unwrap_or(false);
        c.use_karras_sigmas = choice.karras;
        c.interpolation_type = f.interpolation_type.clone().unwrap_or(c.interpolation_type);
        c.sigma_min = f.sigma_min;
        c.sigma_max = f.sigma_max;
        c.final_sigmas_type = f.final_sigmas_type.clone().unwrap_or(c.final_sigmas_type);
        c.solver_order = f.solver_order.unwrap_or(c.solver_order);
        c.solver_type = f.solver_type.clone().unwrap_or(c.solver_type);
        c.lower_order_final = f.lower_order_final.unwrap_or(c.lower_order_final);
        c.euler_at_final = f.euler_at_final.unwrap_or(c.euler_at_final);
        c.lambda_min_clipped = f.lambda_min_clipped.unwrap_or(c.lambda_min_clipped);
        c.original_inference_steps = f.original_inference_steps.unwrap_or(c.original_inference_steps);
        c.timestep_scaling = f.timestep_scaling.unwrap_or(c.timestep_scaling);

        let flag = |v: Option<bool>, what: &str| {
            if v.unwrap_or(false) { Err(SchedulerError::Unsupported(format!("{what} = true"))) } else { Ok(()) }
        };
        flag(f.thresholding, "thresholding")?;
        if matches!(choice.kind, SchedulerKind::Euler | SchedulerKind::DpmSolverMultistep) {
            flag(f.use_exponential_sigmas, "use_exponential_sigmas")?;
            flag(f.use_beta_sigmas, "use_beta_sigmas")?;
        }
        if choice.kind == SchedulerKind::DpmSolverMultistep {
            flag(f.use_lu_lambdas, "use_lu_lambdas")?;
            if let Some(a) = f.algorithm_type.as_deref()
                && a != "dpmsolver++"
                && a != "deis"
            {
                return Err(SchedulerError::Unsupported(format!("algorithm_type {a:?}")));
            }
            if !(1..=3).contains(&c.solver_order) {
                return Err(SchedulerError::Unsupported(format!("solver_order {}", c.solver_order)));
            }
            if !matches!(c.solver_type.as_str(), "midpoint" | "heun") {
                // diffusers maps the UniPC/DEIS names onto midpoint.
                c.solver_type = "midpoint".into();
            }
        }
        if choice.kind == SchedulerKind::Euler && f.timestep_type.as_deref().is_some_and(|t| t != "discrete") {
            return Err(SchedulerError::Unsupported("timestep_type continuous".into()));
        }
        if !matches!(c.final_sigmas_type.as_str(), "zero" | "sigma_min") {
            return Err(SchedulerError::Unsupported(format!("final_sigmas_type {:?}", c.final_sigmas_type)));
        }
        if !matches!(c.interpolation_type.as_str(), "linear" | "log_linear") {
            return Err(SchedulerError::Unsupported(format!("interpolation_type {:?}", c.interpolation_type)));
        }
        if c.num_train_timesteps < 2 {
            return Err(SchedulerError::Unsupported(format!("num_train_timesteps {}", c.num_train_timesteps)));
        }
        Ok(c)
    }

    /// ᾱ for every training timestep.
    pub fn alphas_cumprod(&self) -> Result<Vec<f32>, SchedulerError> {
        let mut ac = schedule::alphas_cumprod(&schedule::betas(self)?);
        if self.rescale_betas_zero_snr
            && let Some(last) = ac.last_mut()
        {
            // diffusers pins the last value so σ stays finite.
            *last = 2f32.powi(-24);
        }
        Ok(ac)
    }
}

/// A scheduler set up for one run of `steps` steps.
pub trait Scheduler: Send {
    /// Every timestep of the schedule, as passed to the UNet.
    fn timesteps(&self) -> &[f64];
    /// The number of steps asked for (PLMS runs one UNet call more than that).
    fn inference_steps(&self) -> usize {
        self.timesteps().len()
    }
    /// σ per step plus the final one, for σ-based schedulers.
    fn sigmas(&self) -> Option<&[f32]> {
        None
    }
    /// Standard deviation of the initial noise (txt2img latents are scaled by it).
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// Writes the UNet input for step `index` (the latents scaled as the family needs).
    fn scale_model_input(&self, _index: usize, sample: &[f32], out: &mut [f32]) {
        out.copy_from_slice(sample);
    }
    /// Advances `sample` past step `index` given the (guided) model output; writes the
    /// predicted clean latents to `denoised` when asked (for previews).
    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
        denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError>;
    /// Noises clean latents to the level of step `index` (img2img's starting point).
    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]);
    /// What it carries into its next step beside the latents (none for a sampler with no
    /// history), so another run of its schedule can go on from here ([`SamplerState`]).
    fn state(&self) -> SamplerState {
        SamplerState::default()
    }
    /// Takes up `state`, which a run of the same sampler and schedule stopped with before the
    /// step this one starts at; one it cannot have made is refused.
    fn resume(&mut self, state: SamplerState) -> Result<(), SchedulerError> {
        state.expect("history-free", 0, 0)
    }
}

/// Builds a scheduler for `steps` steps. `strength` only matters to LCM, whose schedule
/// itself shrinks with it (as in diffusers' LCM img2img pipeline).
pub fn build(
    choice: SchedulerChoice,
    file: &SchedulerConfigFile,
    steps: usize,
    strength: f64,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let cfg = SchedulerConfig::resolve(file, choice)?;
    if steps == 0 || steps > cfg.num_train_timesteps {
        return Err(SchedulerError::Steps(format!("steps must be 1..={}, got {steps}", cfg.num_train_timesteps)));
    }
    if let Some(schedule) = choice.schedule {
        return Ok(Box::new(ksampler::KSampler::new(&cfg, choice.kind, schedule, steps, choice.sample_as)?));
    }
    Ok(match choice.kind {
        SchedulerKind::Euler => Box::new(euler::Euler::new(&cfg, steps)?),
        SchedulerKind::EulerAncestral => Box::new(euler_a::EulerAncestral::new(&cfg, steps)?),
        SchedulerKind::Ddim => Box::new(ddim::Ddim::new(&cfg, steps)?),
        SchedulerKind::DpmSolverMultistep => Box::new(dpmpp::DpmSolverMultistep::new(&cfg, steps)?),
        SchedulerKind::Lcm => Box::new(lcm::Lcm::new(&cfg, steps, strength)?),
        SchedulerKind::Pndm => Box::new(pndm::Pndm::new(&cfg, steps)?),
    })
}

/// `sample`, a scheduler's latents before its step `index`, as k-diffusion holds a latent at
/// that step, x₀ + σ·ε (what ComfyUI hands from one sampler to the next): the Euler family's
/// already are; the DDPM family's, √ᾱ·x₀ + √(1−ᾱ)·ε, are divided by √ᾱ, the scale its
/// `add_noise` gives latents with no noise, which is also how a run takes them back.
pub fn to_sigma_space(scheduler: &dyn Scheduler, index: usize, sample: &mut [f32]) {
    let mut scale = [1f32];
    scheduler.add_noise(index, &[1.0], &[0.0], &mut scale);
    if scale[0] != 1.0 && scale[0] > 0.0 {
        sample.iter_mut().for_each(|v| *v /= scale[0]);
    }
}

/// (x₀, ε) of one element from an ε- or v-prediction at ᾱ (DDPM family), given
/// `sa` = √ᾱ and `sb` = √(1−ᾱ).
fn alpha_x0_eps(prediction: Prediction, sa: f32, sb: f32, sample: f32, output: f32) -> (f32, f32) {
    match prediction {
        Prediction::Epsilon => ((sample - sb * output) / sa, output),
        Prediction::VPrediction => (sa * sample - sb * output, sa * output + sb * sample),
    }
}

/// x₀ from an ε- or v-prediction at σ (Euler family), elementwise in f32 as torch does.
fn sigma_x0(prediction: Prediction, sigma: f32, model_output: &[f32], sample: &[f32], out: &mut [f32]) {
    match prediction {
        Prediction::Epsilon => {
            for ((o, &s), &e) in out.iter_mut().zip(sample).zip(model_output) {
                *o = s - sigma * e;
            }
        }
        Prediction::VPrediction => {
            let s2 = sigma * sigma + 1.0;
            let c_out = -sigma / s2.sqrt();
            for ((o, &s), &e) in out.iter_mut().zip(sample).zip(model_output) {
                *o = e * c_out + s / s2;
            }
        }
    }
}

/// An Euler step from σ to `to` (k-diffusion's and diffusers' alike): x + (x − x₀)/σ · (to − σ).
fn euler_step(sample: &mut [f32], x0: &[f32], sigma: f32, to: f32) {
    let dt = to - sigma;
    for (s, &x0) in sample.iter_mut().zip(x0) {
        let derivative = (*s - x0) / sigma;
        *s += derivative * dt;
    }
}

/// Scales latents by 1/√(σ²+1), the Euler-family model input.
fn scale_by_sigma(sigma: f32, sample: &[f32], out: &mut [f32]) {
    let d = (sigma * sigma + 1.0).sqrt();
    for (o, &s) in out.iter_mut().zip(sample) {
        *o = s / d;
    }
}

/// x + σ·noise, the Euler-family `add_noise`.
fn add_sigma_noise(sigma: f32, original: &[f32], noise: &[f32], out: &mut [f32]) {
    for ((o, &x), &n) in out.iter_mut().zip(original).zip(noise) {
        *o = x + n * sigma;
    }
}

/// √ᾱ·x + √(1−ᾱ)·noise with ᾱ of schedule timestep `t`, the DDPM-family `add_noise`.
fn add_alpha_noise(alphas_cumprod: &[f32], t: f64, original: &[f32], noise: &[f32], out: &mut [f32]) {
    let alpha_prod = alphas_cumprod[table_index(t, alphas_cumprod.len())];
    let (a, b) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    for ((o, &x), &n) in out.iter_mut().zip(original).zip(noise) {
        *o = a * x + b * n;
    }
}

/// Converts a float timestep from the schedule to a training-table index.
fn table_index(t: f64, len: usize) -> usize {
    (t.max(0.0) as usize).min(len - 1)
}

#[cfg(test)]
mod tests;

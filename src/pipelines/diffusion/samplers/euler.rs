//! Euler (Karras et al. 2022, algorithm 2 without churn), as diffusers'
//! `EulerDiscreteScheduler`.

use super::schedule::{euler_timesteps, interp_unit, karras_sigmas, sigma_to_t, train_sigmas};
use super::{
    Prediction, Scheduler, SchedulerConfig, SchedulerError, add_sigma_noise, euler_step, scale_by_sigma, sigma_x0,
};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// Euler sampler state: the schedule and a scratch buffer for x₀.
pub struct Euler {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_sigma: f32,
    prediction: Prediction,
    x0: Vec<f32>,
}

impl Euler {
    /// Sets up `steps` steps from the resolved config.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let (timesteps, sigmas) = sigma_schedule(cfg, steps, true)?;
        let init_sigma = init_noise_sigma(&cfg.timestep_spacing, &sigmas);
        Ok(Self { timesteps, sigmas, init_sigma, prediction: cfg.prediction, x0: Vec::new() })
    }
}

/// Timesteps and σs (final σ appended) of the Euler family. `allow_karras` is false for
/// Euler ancestral, which has no such option in diffusers.
pub(super) fn sigma_schedule(
    cfg: &SchedulerConfig,
    steps: usize,
    allow_karras: bool,
) -> Result<(Vec<f64>, Vec<f32>), SchedulerError> {
    let ac = cfg.alphas_cumprod()?;
    let train = train_sigmas(&ac);
    let mut timesteps = euler_timesteps(cfg, steps)?;
    let mut sigmas: Vec<f64> = if cfg.interpolation_type == "log_linear" && allow_karras {
        let (lo, hi) = (train[train.len() - 1].ln(), train[0].ln());
        super::schedule::torch_linspace_f32(lo, hi, steps + 1).into_iter().map(|l| f64::from(l.exp())).collect()
    } else {
        timesteps.iter().map(|&t| interp_unit(t, &train)).collect()
    };
    if allow_karras && cfg.use_karras_sigmas {
        let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
        let smin = cfg.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
        let smax = cfg.sigma_max.unwrap_or(sigmas[0]);
        sigmas = karras_sigmas(smin, smax, steps);
        timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
    }
    let last = if cfg.final_sigmas_type == "sigma_min" { f64::from(((1.0 - ac[0]) / ac[0]).sqrt()) } else { 0.0 };
    sigmas.push(last);
    let sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
    let timesteps = timesteps.into_iter().map(|t| f64::from(t as f32)).collect();
    Ok((timesteps, sigmas))
}

/// σ_max for linspace/trailing spacing, √(σ_max²+1) for leading.
pub(super) fn init_noise_sigma(spacing: &str, sigmas: &[f32]) -> f32 {
    let max = sigmas.iter().copied().fold(f32::MIN, f32::max);
    if matches!(spacing, "linspace" | "trailing") { max } else { (max * max + 1.0).sqrt() }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f32 {
        self.init_sigma
    }

    fn scale_model_input(&self, index: usize, sample: &[f32], out: &mut [f32]) {
        scale_by_sigma(self.sigmas[index], sample, out);
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
        denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let sigma = self.sigmas[index];
        self.x0.resize(sample.len(), 0.0);
        sigma_x0(self.prediction, sigma, model_output, sample, &mut self.x0);
        euler_step(sample, &self.x0, sigma, self.sigmas[index + 1]);
        if let Some(d) = denoised {
            d.copy_from_slice(&self.x0);
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        add_sigma_noise(self.sigmas[index], original, noise, out);
    }
}

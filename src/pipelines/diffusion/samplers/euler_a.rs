//! Euler ancestral, as diffusers' `EulerAncestralDiscreteScheduler`: an Euler step down to
//! σ_down, then fresh noise of σ_up (drawn every step, the last one included).

use super::euler::{init_noise_sigma, sigma_schedule};
use super::{Prediction, Scheduler, SchedulerConfig, SchedulerError, add_sigma_noise, scale_by_sigma, sigma_x0};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// Euler ancestral sampler state.
pub struct EulerAncestral {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    init_sigma: f32,
    prediction: Prediction,
    x0: Vec<f32>,
    noise: Vec<f32>,
}

impl EulerAncestral {
    /// Sets up `steps` steps from the resolved config.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let mut cfg = cfg.clone();
        // diffusers' Euler ancestral has neither option; its σs always end at zero.
        cfg.use_karras_sigmas = false;
        cfg.final_sigmas_type = "zero".into();
        cfg.interpolation_type = "linear".into();
        let (timesteps, sigmas) = sigma_schedule(&cfg, steps, false)?;
        let init_sigma = init_noise_sigma(&cfg.timestep_spacing, &sigmas);
        Ok(Self { timesteps, sigmas, init_sigma, prediction: cfg.prediction, x0: Vec::new(), noise: Vec::new() })
    }
}

impl Scheduler for EulerAncestral {
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
        noise: &mut dyn NoiseSource,
        denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let (sigma_from, sigma_to) = (self.sigmas[index], self.sigmas[index + 1]);
        let (from2, to2) = (sigma_from * sigma_from, sigma_to * sigma_to);
        let sigma_up = (to2 * (from2 - to2) / from2).sqrt();
        let sigma_down = (to2 - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma_from;
        self.x0.resize(sample.len(), 0.0);
        sigma_x0(self.prediction, sigma_from, model_output, sample, &mut self.x0);
        self.noise.resize(sample.len(), 0.0);
        noise.fill(&mut self.noise)?;
        for ((s, &x0), &n) in sample.iter_mut().zip(&self.x0).zip(&self.noise) {
            let derivative = (*s - x0) / sigma_from;
            let prev = *s + derivative * dt;
            *s = prev + n * sigma_up;
        }
        if let Some(d) = denoised {
            d.copy_from_slice(&self.x0);
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        add_sigma_noise(self.sigmas[index], original, noise, out);
    }
}

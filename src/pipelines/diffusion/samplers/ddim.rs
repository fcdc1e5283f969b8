//! DDIM (Song et al. 2020) with η = 0, as diffusers' `DDIMScheduler`.

use super::schedule::{leading, np_linspace, trailing};
use super::{Prediction, Scheduler, SchedulerConfig, SchedulerError, add_alpha_noise, alpha_x0_eps, table_index};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// DDIM sampler state.
pub struct Ddim {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: usize,
    prediction: Prediction,
    clip: Option<f32>,
}

impl Ddim {
    /// Sets up `steps` steps from the resolved config.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let ac = cfg.alphas_cumprod()?;
        let t = cfg.num_train_timesteps;
        let timesteps = match cfg.timestep_spacing.as_str() {
            "linspace" => np_linspace(0.0, (t - 1) as f64, steps).into_iter().rev().map(f64::round_ties_even).collect(),
            "leading" => leading(steps, t, cfg.steps_offset),
            "trailing" => trailing(steps, t as f64, t),
            other => {
                return Err(SchedulerError::Unsupported(format!("timestep_spacing {other:?}")));
            }
        };
        let final_alpha_cumprod = if cfg.set_alpha_to_one { 1.0 } else { ac[0] };
        Ok(Self {
            timesteps,
            final_alpha_cumprod,
            alphas_cumprod: ac,
            step_ratio: t / steps,
            prediction: cfg.prediction,
            clip: cfg.clip_sample.then_some(cfg.clip_sample_range as f32),
        })
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
        mut denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let t = self.timesteps[index] as i64;
        // diffusers steps back by T // n whatever the spacing.
        let prev_t = t - self.step_ratio as i64;
        let a_t = self.alphas_cumprod[table_index(t as f64, self.alphas_cumprod.len())];
        let a_prev = if prev_t >= 0 {
            self.alphas_cumprod[table_index(prev_t as f64, self.alphas_cumprod.len())]
        } else {
            self.final_alpha_cumprod
        };
        let b_t = 1.0 - a_t;
        let (sa, sb) = (a_t.sqrt(), b_t.sqrt());
        let (sa_prev, dir) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        for (i, (s, &e)) in sample.iter_mut().zip(model_output).enumerate() {
            let (mut x0, eps) = alpha_x0_eps(self.prediction, sa, sb, *s, e);
            if let Some(r) = self.clip {
                x0 = x0.clamp(-r, r);
            }
            if let Some(d) = denoised.as_deref_mut() {
                d[i] = x0;
            }
            *s = sa_prev * x0 + dir * eps;
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        add_alpha_noise(&self.alphas_cumprod, self.timesteps[index], original, noise, out);
    }
}

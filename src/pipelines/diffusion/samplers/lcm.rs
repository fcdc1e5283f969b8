//! Latent consistency models' multistep sampler, as diffusers' `LCMScheduler`: each step
//! predicts the clean latents with the consistency boundary condition, then re-noises them
//! to the next timestep (except after the last).

use super::{Prediction, Scheduler, SchedulerConfig, SchedulerError, add_alpha_noise, alpha_x0_eps, table_index};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// LCM sampler state.
pub struct Lcm {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f32>,
    prediction: Prediction,
    clip: Option<f32>,
    timestep_scaling: f64,
    steps: usize,
    noise: Vec<f32>,
}

impl Lcm {
    /// Sets up `steps` steps; `strength` < 1 shortens the origin schedule as diffusers'
    /// LCM img2img pipeline does.
    pub fn new(cfg: &SchedulerConfig, steps: usize, strength: f64) -> Result<Self, SchedulerError> {
        let ac = cfg.alphas_cumprod()?;
        let original = cfg.original_inference_steps;
        if original == 0 || original > cfg.num_train_timesteps {
            return Err(SchedulerError::Unsupported(format!("original_inference_steps {original}")));
        }
        let k = cfg.num_train_timesteps / original;
        let count = (original as f64 * strength).floor() as usize;
        let mut origin: Vec<i64> = (1..=count as i64).map(|i| i * k as i64 - 1).collect();
        if steps > original || origin.len() / steps == 0 {
            return Err(SchedulerError::Steps(format!(
                "LCM takes at most {} steps at strength {strength} (original_inference_steps {original})",
                count.min(original)
            )));
        }
        origin.reverse();
        let len = origin.len() as f64;
        let timesteps = (0..steps)
            .map(|i| {
                let idx = (i as f64 * (len / steps as f64)).floor() as usize;
                origin[idx.min(origin.len() - 1)] as f64
            })
            .collect();
        Ok(Self {
            timesteps,
            alphas_cumprod: ac,
            prediction: cfg.prediction,
            clip: cfg.clip_sample.then_some(cfg.clip_sample_range as f32),
            timestep_scaling: cfg.timestep_scaling,
            steps,
            noise: Vec::new(),
        })
    }
}

/// The consistency boundary condition's (c_skip, c_out) at timestep `t` (σ_data = 0.5).
pub fn boundary_scalings(t: f64, timestep_scaling: f64) -> (f64, f64) {
    let scaled = t * timestep_scaling;
    let d = scaled * scaled + 0.25;
    (0.25 / d, scaled / d.sqrt())
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        noise: &mut dyn NoiseSource,
        mut denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let t = self.timesteps[index];
        let prev_t = self.timesteps.get(index + 1).copied().unwrap_or(t);
        let n = self.alphas_cumprod.len();
        let a_t = self.alphas_cumprod[table_index(t, n)];
        let a_prev = self.alphas_cumprod[table_index(prev_t, n)];
        let (sa, sb) = (a_t.sqrt(), (1.0 - a_t).sqrt());
        let (c_skip, c_out) = boundary_scalings(t, self.timestep_scaling);
        let (c_skip, c_out) = (c_skip as f32, c_out as f32);
        let last = index == self.steps - 1;
        if !last {
            self.noise.resize(sample.len(), 0.0);
            noise.fill(&mut self.noise)?;
        }
        let (sa_prev, sb_prev) = (a_prev.sqrt(), (1.0 - a_prev).sqrt());
        for (i, (s, &e)) in sample.iter_mut().zip(model_output).enumerate() {
            let (mut x0, _) = alpha_x0_eps(self.prediction, sa, sb, *s, e);
            if let Some(r) = self.clip {
                x0 = x0.clamp(-r, r);
            }
            let den = c_out * x0 + c_skip * *s;
            if let Some(d) = denoised.as_deref_mut() {
                d[i] = den;
            }
            *s = if last { den } else { sa_prev * den + sb_prev * self.noise[i] };
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        add_alpha_noise(&self.alphas_cumprod, self.timesteps[index], original, noise, out);
    }
}

//! PNDM in its PLMS form (`skip_prk_steps`), as diffusers' `PNDMScheduler`: the default of
//! Stable Diffusion 1.x exports. A linear multistep method over up to four past model
//! outputs; the first step is taken twice (an improved Euler step), so a run of n steps
//! calls the UNet n + 1 times.

use super::schedule::np_linspace;
use super::{
    Prediction, SamplerState, Scheduler, SchedulerConfig, SchedulerError, add_alpha_noise, alpha_x0_eps, table_index,
};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// PNDM (PLMS) sampler state.
pub struct Pndm {
    timesteps: Vec<f64>,
    steps: usize,
    alphas_cumprod: Vec<f32>,
    final_alpha_cumprod: f32,
    step_ratio: i64,
    prediction: Prediction,
    /// Past model outputs, newest last (at most four kept).
    ets: Vec<Vec<f32>>,
    /// The sample before the first step, which the repeated first step starts from again.
    first_sample: Option<Vec<f32>>,
    counter: usize,
}

impl Pndm {
    /// Sets up `steps` steps from the resolved config.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        if !cfg.skip_prk_steps {
            return Err(SchedulerError::Unsupported("PNDM with skip_prk_steps = false (Runge-Kutta warm-up)".into()));
        }
        let t = cfg.num_train_timesteps;
        // Ascending, as diffusers builds them before reversing.
        let ascending: Vec<i64> = match cfg.timestep_spacing.as_str() {
            "linspace" => {
                np_linspace(0.0, (t - 1) as f64, steps).into_iter().map(|v| v.round_ties_even() as i64).collect()
            }
            "leading" => (0..steps).map(|i| (i * (t / steps) + cfg.steps_offset) as i64).collect(),
            "trailing" => {
                let ratio = t as f64 / steps as f64;
                let mut v: Vec<i64> =
                    (0..steps).map(|i| (t as f64 - i as f64 * ratio).round_ties_even() as i64 - 1).collect();
                v.reverse();
                v
            }
            other => return Err(SchedulerError::Unsupported(format!("timestep_spacing {other:?}"))),
        };
        // PLMS runs the second-to-last ascending timestep twice: [.., t₂, t₁, t₁, t₀] reversed.
        let mut plms = ascending[..steps - 1].to_vec();
        plms.extend_from_slice(&ascending[steps.saturating_sub(2)..steps - 1]);
        plms.push(ascending[steps - 1]);
        plms.reverse();
        let ac = cfg.alphas_cumprod()?;
        Ok(Self {
            timesteps: plms.into_iter().map(|v| v as f64).collect(),
            steps,
            final_alpha_cumprod: if cfg.set_alpha_to_one { 1.0 } else { ac[0] },
            alphas_cumprod: ac,
            step_ratio: (t / steps) as i64,
            prediction: cfg.prediction,
            ets: Vec::with_capacity(5),
            first_sample: None,
            counter: 0,
        })
    }

    fn alpha(&self, t: i64) -> f32 {
        if t >= 0 {
            self.alphas_cumprod[table_index(t as f64, self.alphas_cumprod.len())]
        } else {
            self.final_alpha_cumprod
        }
    }
}

impl Scheduler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn inference_steps(&self) -> usize {
        self.steps
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
        denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let mut t = self.timesteps[index] as i64;
        let mut prev_t = t - self.step_ratio;
        if self.counter == 1 {
            // The repeated first step: from the first timestep again, with the mean of
            // both model outputs.
            prev_t = t;
            t += self.step_ratio;
        } else {
            if self.ets.len() > 3 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.to_vec());
        }
        let n = self.ets.len();
        let e = |k: usize, i: usize| self.ets[n - k][i];
        let eps: Vec<f32> = match (n, self.counter) {
            (1, 0) => {
                self.first_sample = Some(sample.to_vec());
                model_output.to_vec()
            }
            (1, _) => {
                if let Some(first) = self.first_sample.take() {
                    sample.copy_from_slice(&first);
                }
                model_output.iter().zip(&self.ets[0]).map(|(a, b)| (a + b) / 2.0).collect()
            }
            (2, _) => (0..sample.len()).map(|i| (3.0 * e(1, i) - e(2, i)) / 2.0).collect(),
            (3, _) => (0..sample.len()).map(|i| (23.0 * e(1, i) - 16.0 * e(2, i) + 5.0 * e(3, i)) / 12.0).collect(),
            _ => (0..sample.len())
                .map(|i| (1.0 / 24.0) * (55.0 * e(1, i) - 59.0 * e(2, i) + 37.0 * e(3, i) - 9.0 * e(4, i)))
                .collect(),
        };
        let (a_t, a_prev) = (self.alpha(t), self.alpha(prev_t));
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        let mut x0 = denoised;
        let (sa, sb) = (a_t.sqrt(), b_t.sqrt());
        for (i, (s, &m)) in sample.iter_mut().zip(&eps).enumerate() {
            let (x0_i, m) = alpha_x0_eps(self.prediction, sa, sb, *s, m);
            if let Some(d) = x0.as_deref_mut() {
                d[i] = x0_i;
            }
            *s = sample_coeff * *s - (a_prev - a_t) * m / denom;
        }
        self.counter += 1;
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        add_alpha_noise(&self.alphas_cumprod, self.timesteps[index], original, noise, out);
    }

    /// The sample before the first step (while its repeat is still to come), then the past
    /// model outputs, oldest first; the counter.
    fn state(&self) -> SamplerState {
        let ets = self.ets.iter().cloned().map(Some);
        SamplerState { latents: std::iter::once(self.first_sample.clone()).chain(ets).collect(), count: self.counter }
    }

    fn resume(&mut self, state: SamplerState) -> Result<(), SchedulerError> {
        let len = state.latents.iter().flatten().next().map_or(0, Vec::len);
        let slots = state.latents.len().clamp(1, 5);
        state.expect("PLMS", slots, len)?;
        let mut latents = state.latents.into_iter();
        self.first_sample = latents.next().flatten();
        self.ets = latents.flatten().collect();
        self.counter = state.count;
        Ok(())
    }
}

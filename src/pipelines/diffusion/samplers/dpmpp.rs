//! DPM-Solver++ multistep (Lu et al. 2022), as diffusers' `DPMSolverMultistepScheduler`
//! with `algorithm_type = "dpmsolver++"`: first order at the start (and, by diffusers'
//! rules, at the end), then second (or third) order from the stored x₀ predictions.

use super::schedule::{interp_unit, karras_sigmas, np_arange, np_linspace, sigma_to_t, train_sigmas};
use super::{Prediction, SamplerState, Scheduler, SchedulerConfig, SchedulerError};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// DPM-Solver++ sampler state, including the x₀ history of the multistep method.
pub struct DpmSolverMultistep {
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    prediction: Prediction,
    order: usize,
    heun: bool,
    lower_order_final: bool,
    euler_at_final: bool,
    final_zero: bool,
    /// Latest x₀ predictions, oldest first; `None` until filled.
    history: Vec<Option<Vec<f32>>>,
    lower_order_nums: usize,
}

impl DpmSolverMultistep {
    /// Sets up `steps` steps from the resolved config.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let ac = cfg.alphas_cumprod()?;
        let t_train = cfg.num_train_timesteps;
        // λ(t) grows towards t = 0; clipping drops the noisiest end where λ < lambda_min_clipped.
        let mut lambdas: Vec<f32> = ac.iter().map(|&a| a.sqrt().ln() - (1.0 - a).sqrt().ln()).collect();
        lambdas.reverse();
        let clipped = lambdas.iter().take_while(|&&l| f64::from(l) < cfg.lambda_min_clipped).count();
        let last_timestep = t_train - clipped;
        let mut timesteps: Vec<f64> = match cfg.timestep_spacing.as_str() {
            "linspace" => {
                let mut v: Vec<f64> = np_linspace(0.0, (last_timestep - 1) as f64, steps + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .collect();
                v.reverse();
                v.pop();
                v
            }
            "leading" => {
                let ratio = last_timestep / (steps + 1);
                let mut v: Vec<f64> = (0..=steps).rev().map(|i| (i * ratio) as f64).collect();
                v.pop();
                v.into_iter().map(|t| t + cfg.steps_offset as f64).collect()
            }
            "trailing" => {
                let ratio = t_train as f64 / steps as f64;
                np_arange(last_timestep as f64, 0.0, -ratio).into_iter().map(|t| t.round_ties_even() - 1.0).collect()
            }
            other => {
                return Err(SchedulerError::Unsupported(format!("timestep_spacing {other:?}")));
            }
        };
        let train = train_sigmas(&ac);
        let mut sigmas: Vec<f64> = if cfg.use_karras_sigmas {
            let log_sigmas: Vec<f32> = train.iter().map(|s| s.ln()).collect();
            let k = karras_sigmas(f64::from(train[0]), f64::from(train[train.len() - 1]), steps);
            timesteps = k.iter().map(|&s| sigma_to_t(s, &log_sigmas).round_ties_even()).collect();
            k
        } else {
            timesteps.iter().map(|&t| interp_unit(t, &train)).collect()
        };
        let final_zero = cfg.final_sigmas_type == "zero";
        sigmas.push(if final_zero { 0.0 } else { f64::from(((1.0 - ac[0]) / ac[0]).sqrt()) });
        Ok(Self {
            timesteps,
            sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
            prediction: cfg.prediction,
            order: cfg.solver_order,
            heun: cfg.solver_type == "heun",
            lower_order_final: cfg.lower_order_final,
            euler_at_final: cfg.euler_at_final,
            final_zero,
            history: vec![None; cfg.solver_order],
            lower_order_nums: 0,
        })
    }
}

/// (α_t, σ_t, λ_t) of a σ: α = 1/√(σ²+1), σ_t = σ·α, λ = ln α − ln σ_t (f32, as torch).
fn alpha_sigma_lambda(sigma: f32) -> (f32, f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl Scheduler for DpmSolverMultistep {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f32]> {
        Some(&self.sigmas)
    }

    fn step(
        &mut self,
        index: usize,
        model_output: &[f32],
        sample: &mut [f32],
        _noise: &mut dyn NoiseSource,
        denoised: Option<&mut [f32]>,
    ) -> Result<(), NoiseError> {
        let n = self.timesteps.len();
        let lower_order_final =
            index == n - 1 && (self.euler_at_final || (self.lower_order_final && n < 15) || self.final_zero);
        let lower_order_second = index + 2 == n && self.lower_order_final && n < 15;

        // The model output becomes an x₀ prediction; the multistep method works on those.
        let (alpha_s0, sigma_s0, lambda_s0) = alpha_sigma_lambda(self.sigmas[index]);
        let mut x0 = self.history.remove(0).unwrap_or_default();
        x0.resize(sample.len(), 0.0);
        for ((x, &s), &m) in x0.iter_mut().zip(sample.iter()).zip(model_output) {
            *x = match self.prediction {
                Prediction::Epsilon => (s - sigma_s0 * m) / alpha_s0,
                Prediction::VPrediction => alpha_s0 * s - sigma_s0 * m,
            };
        }
        self.history.push(Some(x0));

        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[index + 1]);
        let h = lambda_t - lambda_s0;
        let em1 = (-h).exp() - 1.0;
        let c_sample = sigma_t / sigma_s0;
        let c0 = alpha_t * em1;
        let order = if self.order == 1 || self.lower_order_nums < 1 || lower_order_final {
            1
        } else if self.order == 2 || self.lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let k = self.history.len();
        let m0 = self.history[k - 1].as_deref().unwrap_or(&[]);
        match order {
            1 => {
                for (s, &d0) in sample.iter_mut().zip(m0) {
                    *s = c_sample * *s - c0 * d0;
                }
            }
            2 => {
                let m1 = self.history[k - 2].as_deref().unwrap_or(&[]);
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[index - 1]);
                let r0 = (lambda_s0 - lambda_s1) / h;
                let inv_r0 = 1.0 / r0;
                let c1 = if self.heun { alpha_t * (em1 / h + 1.0) } else { 0.5 * c0 };
                for ((s, &d0), &p1) in sample.iter_mut().zip(m0).zip(m1) {
                    let d1 = inv_r0 * (d0 - p1);
                    *s = if self.heun { c_sample * *s - c0 * d0 + c1 * d1 } else { c_sample * *s - c0 * d0 - c1 * d1 };
                }
            }
            _ => {
                let m1 = self.history[k - 2].as_deref().unwrap_or(&[]);
                let m2 = self.history[k - 3].as_deref().unwrap_or(&[]);
                let (_, _, lambda_s1) = alpha_sigma_lambda(self.sigmas[index - 1]);
                let (_, _, lambda_s2) = alpha_sigma_lambda(self.sigmas[index - 2]);
                let (h0, h1) = (lambda_s0 - lambda_s1, lambda_s1 - lambda_s2);
                let (r0, r1) = (h0 / h, h1 / h);
                let c1 = alpha_t * (em1 / h + 1.0);
                let c2 = alpha_t * ((em1 + h) / (h * h) - 0.5);
                for (((s, &a), &b), &c) in sample.iter_mut().zip(m0).zip(m1).zip(m2) {
                    let d1_0 = (1.0 / r0) * (a - b);
                    let d1_1 = (1.0 / r1) * (b - c);
                    let d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1);
                    let d2 = (1.0 / (r0 + r1)) * (d1_0 - d1_1);
                    *s = c_sample * *s - c0 * a + c1 * d1 - c2 * d2;
                }
            }
        }
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        if let Some(d) = denoised {
            d.copy_from_slice(m0);
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        let (alpha, sigma_t, _) = alpha_sigma_lambda(self.sigmas[index]);
        for ((o, &x), &n) in out.iter_mut().zip(original).zip(noise) {
            *o = alpha * x + sigma_t * n;
        }
    }

    /// The x₀ history and how many lower-order steps were taken.
    fn state(&self) -> SamplerState {
        SamplerState { latents: self.history.clone(), count: self.lower_order_nums }
    }

    fn resume(&mut self, state: SamplerState) -> Result<(), SchedulerError> {
        let len = state.latents.iter().flatten().next().map_or(0, Vec::len);
        state.expect("DPM-Solver++", self.order, len)?;
        (self.history, self.lower_order_nums) = (state.latents, state.count.min(self.order));
        Ok(())
    }
}

//! Sampling as ComfyUI's KSampler does it (k-diffusion's samplers over the σs of one of its
//! schedulers, [`Schedule`]), for a request that names a `schedule`: the UNet is given the
//! training timestep nearest each σ, a run from full noise (or over a picture's latent at full
//! denoise) starts at √(1 + σ₀²)·noise, and each step is k-diffusion's `sample_euler`,
//! `sample_euler_ancestral` or `sample_dpmpp_2m` in f32. ComfyUI's "ddim" sampler is its Euler
//! (as `comfy.samplers` defines it). The same samplers follow A1111's arithmetic where the
//! request says so ([`SampleAs`]).

use super::comfy_sigmas::{Discrete, Schedule};
use super::sample_as::SampleAs;
use super::{
    Prediction, SamplerState, Scheduler, SchedulerConfig, SchedulerError, SchedulerKind, add_sigma_noise, euler_step,
    scale_by_sigma, sigma_x0,
};
use crate::pipelines::diffusion::noise::{NoiseError, NoiseSource};

/// k-diffusion's update rules reelbox has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Euler,
    EulerAncestral,
    DpmPp2m,
}

/// A KSampler run's state.
pub struct KSampler {
    method: Method,
    sigmas: Vec<f32>,
    timesteps: Vec<f64>,
    init_sigma: f32,
    prediction: Prediction,
    x0: Vec<f32>,
    /// DPM++ 2M's denoised latents of the step before.
    old_x0: Option<Vec<f32>>,
    noise: Vec<f32>,
}

impl KSampler {
    /// A run of `steps` σs of `schedule` with the sampler of `kind`, by `rule`'s arithmetic.
    pub fn new(
        cfg: &SchedulerConfig,
        kind: SchedulerKind,
        schedule: Schedule,
        steps: usize,
        rule: SampleAs,
    ) -> Result<Self, SchedulerError> {
        let method = match kind {
            SchedulerKind::Euler | SchedulerKind::Ddim => Method::Euler,
            SchedulerKind::EulerAncestral => Method::EulerAncestral,
            SchedulerKind::DpmSolverMultistep => Method::DpmPp2m,
            SchedulerKind::Lcm | SchedulerKind::Pndm => {
                return Err(SchedulerError::Unsupported(format!(
                    "a schedule with {kind:?}: only euler, euler_a, ddim and dpmpp_2m sample by one"
                )));
            }
        };
        let discrete = Discrete::new(cfg, rule)?;
        let sigmas = discrete.schedule(schedule, steps);
        let timesteps = sigmas[..steps].iter().map(|&s| discrete.unet_timestep(s)).collect();
        // KSampler's `max_denoise`: whether the run starts at the top of the schedule.
        let (first, max) = (sigmas[0], discrete.sigma_max());
        let full = (first - max).abs() <= 1e-5 * first.abs().max(max.abs()) || first > max;
        let init_sigma = rule.start_sigma(first, full);
        Ok(Self {
            method,
            sigmas,
            timesteps,
            init_sigma,
            prediction: cfg.prediction,
            x0: Vec::new(),
            old_x0: None,
            noise: Vec::new(),
        })
    }

    /// DPM++ 2M (k-diffusion's `sample_dpmpp_2m`): a second-order step from this step's and
    /// the last step's denoised latents, in half-log-SNR time t = −ln σ.
    fn dpmpp_2m(&mut self, index: usize, sample: &mut [f32]) {
        let (sigma, next) = (self.sigmas[index], self.sigmas[index + 1]);
        let (t, t_next) = (-sigma.ln(), -next.ln());
        let h = t_next - t;
        let ratio = (-t_next).exp() / (-t).exp();
        let keep = -(-h).exp_m1();
        match self.old_x0.as_ref().filter(|_| next != 0.0 && index > 0) {
            None => {
                for (s, &x0) in sample.iter_mut().zip(&self.x0) {
                    *s = ratio * *s + keep * x0;
                }
            }
            Some(old) => {
                let h_last = t - (-self.sigmas[index - 1].ln());
                let r = h_last / h;
                let (a, b) = (1.0 + 1.0 / (2.0 * r), 1.0 / (2.0 * r));
                for ((s, &x0), &o) in sample.iter_mut().zip(&self.x0).zip(old) {
                    *s = ratio * *s + keep * (a * x0 - b * o);
                }
            }
        }
    }
}

impl Scheduler for KSampler {
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
        let (sigma, next) = (self.sigmas[index], self.sigmas[index + 1]);
        self.x0.resize(sample.len(), 0.0);
        sigma_x0(self.prediction, sigma, model_output, sample, &mut self.x0);
        match self.method {
            Method::Euler => euler_step(sample, &self.x0, sigma, next),
            Method::EulerAncestral => {
                // `get_ancestral_step` with η = 1.
                let up = next.min((next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt());
                let down = (next * next - up * up).sqrt();
                if down == 0.0 {
                    sample.copy_from_slice(&self.x0);
                } else {
                    euler_step(sample, &self.x0, sigma, down);
                    self.noise.resize(sample.len(), 0.0);
                    noise.fill(&mut self.noise)?;
                    for (s, &n) in sample.iter_mut().zip(&self.noise) {
                        *s += n * up;
                    }
                }
            }
            Method::DpmPp2m => self.dpmpp_2m(index, sample),
        }
        if let Some(d) = denoised {
            d.copy_from_slice(&self.x0);
        }
        if self.method == Method::DpmPp2m {
            // The next step reads this one's x₀: kept by swapping buffers, not copying the
            // latents each step; the spare is overwritten whole by the next step's x₀.
            let spare = self.old_x0.take().unwrap_or_default();
            self.old_x0 = Some(std::mem::replace(&mut self.x0, spare));
        }
        Ok(())
    }

    fn add_noise(&self, index: usize, original: &[f32], noise: &[f32], out: &mut [f32]) {
        // From the first step a picture's latent takes the noise a run from noise starts
        // with (ComfyUI's `noise_scaling` with `max_denoise` over the latent).
        let sigma = if index == 0 { self.init_sigma } else { self.sigmas[index] };
        add_sigma_noise(sigma, original, noise, out);
    }

    /// DPM++ 2M's last denoised latents, k-diffusion's `old_denoised` (none for the others).
    fn state(&self) -> SamplerState {
        SamplerState { latents: vec![self.old_x0.clone()], count: 0 }
    }

    fn resume(&mut self, state: SamplerState) -> Result<(), SchedulerError> {
        let len = state.latents.iter().flatten().next().map_or(0, Vec::len);
        state.expect("KSampler", 1, len)?;
        self.old_x0 = state.latents.into_iter().next().flatten();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::diffusion::samplers::{SchedulerChoice, SchedulerConfigFile};
    use crate::pipelines::diffusion::torch_noise::TorchNoise;

    /// Six Karras steps of each sampler on Stable Diffusion 1.5's schedule with a made-up
    /// model (ε = 0.3·x_in + 0.1), from torch.manual_seed(5)'s noise; the figures are
    /// k-diffusion's `sample_euler`, `sample_euler_ancestral` (its noise from a generator
    /// seeded 6, as ComfyUI seeds it on the CPU) and `sample_dpmpp_2m` under torch 2.15.
    #[test]
    #[rustfmt::skip]
    fn each_sampler_steps_as_k_diffusion_does() {
        let file = SchedulerConfigFile {
            beta_schedule: Some("scaled_linear".into()),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            ..SchedulerConfigFile::default()
        };
        let cases: [(SchedulerKind, [f32; 16]); 3] = [
            (SchedulerKind::Euler, [11.231_255, 2.503_947, -12.206_888, -12.137_37, 12.399_053, -2.689_151, -1.779_804,
                -10.396_676, 1.659_08, -1.042_882, -9.837_958, -5.737_103, 5.596_95, -3.683_543, -4.774_836, -6.076_829]),
            (SchedulerKind::EulerAncestral, [4.178_738, 1.470_308, -11.837_437, -11.826_293, 7.217_406, -3.224_989,
                -3.261_963, -4.861_633, -2.198_936, 2.410_677, -0.546_917, -5.225_559, 3.207_292, -5.359_494,
                -0.482_827, -8.906_337]),
            (SchedulerKind::DpmSolverMultistep, [8.240_913, 1.850_905, -8.920_161, -8.869_259, 9.095_962, -1.951_407,
                -1.285_596, -7.594_746, 1.232_305, -0.746_032, -7.185_66, -4.183_075, 4.115_558, -2.679_487, -3.478_515,
                -4.431_816]),
        ];
        for (kind, want) in cases {
            let choice = SchedulerChoice { kind, karras: false, schedule: Some(Schedule::Karras), sample_as: SampleAs::Comfyui };
            let mut s = super::super::build(choice, &file, 6, 1.0).expect("builds");
            let mut noise = TorchNoise::batch(5);
            let mut x = vec![0f32; 16];
            noise.fill(&mut x).expect("noise");
            let init = s.init_noise_sigma();
            x.iter_mut().for_each(|v| *v *= init);
            let (mut input, mut eps) = (vec![0f32; 16], vec![0f32; 16]);
            for i in 0..s.timesteps().len() {
                s.scale_model_input(i, &x, &mut input);
                eps.iter_mut().zip(&input).for_each(|(e, v)| *e = 0.3 * v + 0.1);
                s.step(i, &eps, &mut x, &mut noise, None).expect("step");
            }
            for (i, (g, w)) in x.iter().zip(want).enumerate() {
                assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{kind:?} value {i}: {g} vs k-diffusion's {w}");
            }
        }
    }
}

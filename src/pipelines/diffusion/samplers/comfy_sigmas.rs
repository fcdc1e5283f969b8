//! ComfyUI's noise levels: its `ModelSamplingDiscrete` (σ of each training timestep, and the
//! two ways between σ and timestep) and its KSampler's schedulers, which pick a run's σs from
//! them. Each function works in the float widths ComfyUI's torch code does, so the σs are
//! ComfyUI's to the last bit or two: the training σs in f64 then kept as f32, the schedulers'
//! `torch.linspace` in f32.

use serde::{Deserialize, Serialize};

use super::schedule::torch_linspace_f32;
use super::{SchedulerConfig, SchedulerError};

/// A ComfyUI scheduler (A1111's "schedule type"): how a run's σs are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Evenly in timesteps from the first to the last (KSampler's default).
    Normal,
    /// Karras et al. (2022), ρ = 7: more steps at low noise.
    Karras,
    /// Evenly in log σ.
    Exponential,
    /// Evenly in timesteps, the last left out (SDXL's and SD-Turbo's training).
    SgmUniform,
    /// Every (1000 ÷ steps)-th training σ from the top.
    Simple,
}

impl Schedule {
    /// The names a request gives the schedules in (ComfyUI's).
    pub const NAMES: [&'static str; 5] = ["normal", "karras", "exponential", "sgm_uniform", "simple"];

    /// Every schedule, in [`Schedule::NAMES`]' order.
    pub fn all() -> impl Iterator<Item = Self> {
        Self::NAMES.into_iter().filter_map(Self::parse)
    }

    /// The schedule a request names, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "normal" => Self::Normal,
            "karras" => Self::Karras,
            "exponential" => Self::Exponential,
            "sgm_uniform" => Self::SgmUniform,
            "simple" => Self::Simple,
            _ => return None,
        })
    }

    /// Its name in A1111's "Schedule type", which a picture's parameters text carries.
    pub fn label(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Karras => "Karras",
            Self::Exponential => "Exponential",
            Self::SgmUniform => "SGM Uniform",
            Self::Simple => "Simple",
        }
    }

    /// Its name in a request.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Karras => "karras",
            Self::Exponential => "exponential",
            Self::SgmUniform => "sgm_uniform",
            Self::Simple => "simple",
        }
    }
}

/// ComfyUI's `ModelSamplingDiscrete`: σ per training timestep and its log.
pub struct Discrete {
    sigmas: Vec<f32>,
    log_sigmas: Vec<f32>,
}

impl Discrete {
    /// The training σs of a model's schedule, as ComfyUI's `_register_schedule` makes them:
    /// betas, ᾱ and σ in f64 (`make_beta_schedule` works in float64), kept as f32.
    pub fn new(cfg: &SchedulerConfig) -> Result<Self, SchedulerError> {
        let n = cfg.num_train_timesteps;
        let betas: Vec<f64> = match (&cfg.trained_betas, cfg.beta_schedule.as_str()) {
            (Some(trained), _) => trained.clone(),
            // diffusers' scaled_linear is ComfyUI's "linear": a square of a linspace of roots.
            (None, "scaled_linear") => {
                torch_linspace_f64(cfg.beta_start.sqrt(), cfg.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
            }
            // diffusers' linear is ComfyUI's "sqrt_linear": a linspace of the betas themselves.
            (None, "linear") => torch_linspace_f64(cfg.beta_start, cfg.beta_end, n),
            (None, other) => {
                return Err(SchedulerError::Unsupported(format!("beta_schedule {other:?} with a ComfyUI schedule")));
            }
        };
        if betas.len() != n || n < 2 {
            return Err(SchedulerError::Unsupported(format!("{} betas for {n} training timesteps", betas.len())));
        }
        if cfg.rescale_betas_zero_snr {
            return Err(SchedulerError::Unsupported("rescale_betas_zero_snr with a ComfyUI schedule".into()));
        }
        let mut acc = 1.0f64;
        let sigmas64: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                ((1.0 - acc) / acc).sqrt()
            })
            .collect();
        Ok(Self {
            sigmas: sigmas64.iter().map(|&s| s as f32).collect(),
            log_sigmas: sigmas64.iter().map(|s| s.ln() as f32).collect(),
        })
    }

    pub fn sigma_min(&self) -> f32 {
        self.sigmas[0]
    }

    pub fn sigma_max(&self) -> f32 {
        self.sigmas[self.sigmas.len() - 1]
    }

    /// `timestep(σ)`: the training timestep whose log σ is nearest (the first of equals),
    /// which is what the UNet is given.
    pub fn timestep(&self, sigma: f32) -> usize {
        let log = sigma.ln();
        let mut best = (0, f32::INFINITY);
        for (i, &l) in self.log_sigmas.iter().enumerate() {
            let d = (log - l).abs();
            if d < best.1 {
                best = (i, d);
            }
        }
        best.0
    }

    /// `sigma(t)`: σ at a fractional timestep, interpolated in log σ, in f32.
    pub fn sigma(&self, t: f32) -> f32 {
        let t = t.clamp(0.0, (self.sigmas.len() - 1) as f32);
        let (low, high) = (t.floor() as usize, t.ceil() as usize);
        let w = t.fract();
        ((1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()
    }

    /// A run's `steps` σs and the final 0, as `calculate_sigmas` picks them.
    pub fn schedule(&self, schedule: Schedule, steps: usize) -> Vec<f32> {
        let (max, min) = (self.sigma_max(), self.sigma_min());
        let mut sigmas: Vec<f32> = match schedule {
            Schedule::Normal | Schedule::SgmUniform => {
                let (start, end) = (self.timestep(max) as f32, self.timestep(min) as f32);
                let mut ts =
                    torch_linspace_f32(start, end, if schedule == Schedule::Normal { steps } else { steps + 1 });
                if schedule == Schedule::SgmUniform {
                    ts.pop();
                }
                ts.into_iter().map(|t| self.sigma(t)).collect()
            }
            Schedule::Karras => {
                // Python floats (f64) for the ρ-th roots, the ramp and its arithmetic in f32.
                const RHO: f64 = 7.0;
                let (min_inv, max_inv) = (f64::from(min).powf(1.0 / RHO), f64::from(max).powf(1.0 / RHO));
                let span = (min_inv - max_inv) as f32;
                torch_linspace_f32(0.0, 1.0, steps)
                    .into_iter()
                    .map(|r| (max_inv as f32 + r * span).powf(RHO as f32))
                    .collect()
            }
            Schedule::Exponential => {
                let (hi, lo) = (f64::from(max).ln() as f32, f64::from(min).ln() as f32);
                torch_linspace_f32(hi, lo, steps).into_iter().map(f32::exp).collect()
            }
            Schedule::Simple => {
                let stride = self.sigmas.len() as f64 / steps as f64;
                (0..steps).map(|x| self.sigmas[self.sigmas.len() - 1 - (x as f64 * stride) as usize]).collect()
            }
        };
        sigmas.push(0.0);
        sigmas
    }
}

/// `torch.linspace(start, end, n, dtype=float64)`: filled from both ends towards the middle.
fn torch_linspace_f64(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n < 2 {
        return vec![start; n];
    }
    let step = (end - start) / (n - 1) as f64;
    let halfway = n / 2;
    (0..n).map(|i| if i < halfway { start + step * i as f64 } else { end - step * (n - i - 1) as f64 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::diffusion::samplers::{SchedulerChoice, SchedulerConfigFile};

    /// Stable Diffusion 1.5's schedule (scaled_linear 0.00085–0.012), as its config says it.
    fn sd15() -> Discrete {
        let file = SchedulerConfigFile {
            beta_schedule: Some("scaled_linear".into()),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            ..SchedulerConfigFile::default()
        };
        let choice = SchedulerChoice::parse("euler").expect("euler");
        Discrete::new(&SchedulerConfig::resolve(&file, choice).expect("config")).expect("discrete")
    }

    /// ComfyUI's `calculate_sigmas(model_sampling, NAME, 10)` and each σ's `timestep`, from
    /// its model_sampling.py, samplers.py and k_diffusion code run under torch 2.15.
    #[test]
    #[rustfmt::skip]
    fn ten_steps_of_each_schedule_are_comfyuis() {
        let d = sd15();
        assert_eq!((d.sigma_min(), d.sigma_max()), (0.029_167_159, 14.614_641));
        let cases: [(Schedule, [f32; 10], [usize; 10]); 5] = [
            (Schedule::Normal, [14.614_64, 7.839_883, 4.609_174_3, 2.918_307, 1.950_161_5, 1.344_927_8, 0.932_357_97,
                0.624_976_9, 0.368_657_74, 0.029_167_16], [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
            (Schedule::SgmUniform, [14.614_64, 8.307_171, 5.092_408, 3.325_069, 2.279_730_6, 1.615_580_3, 1.162_864_5,
                0.831_883_7, 0.571_188_8, 0.343_704_8], [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]),
            (Schedule::Karras, [14.614_643, 9.102_929, 5.478_392, 3.168_604_9, 1.749_418, 0.914_072_7, 0.446_918_37,
                0.201_398_36, 0.081_910_3, 0.029_167_177], [999, 916, 815, 687, 523, 327, 146, 41, 7, 0]),
            (Schedule::Exponential, [14.614_64, 7.324_869, 3.671_230_3, 1.840_023_6, 0.922_221_3, 0.462_218_28,
                0.231_664_18, 0.116_110_27, 0.058_194_563, 0.029_167_16], [999, 875, 724, 538, 330, 153, 52, 14, 3, 0]),
            (Schedule::Simple, [14.614_641, 8.302_803, 5.087_763, 3.321_083, 2.276_463, 1.612_886_2, 1.160_578_4,
                0.829_859_55, 0.569_284_9, 0.341_673_82], [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        ];
        for (schedule, want, steps) in cases {
            let got = d.schedule(schedule, 10);
            assert_eq!((got.len(), got[10]), (11, 0.0), "{schedule:?}: ten σs and the final 0");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() <= 2e-6 * w, "{schedule:?} σ {i}: {g} vs ComfyUI's {w}");
            }
            let ts: Vec<usize> = got[..10].iter().map(|&s| d.timestep(s)).collect();
            assert_eq!(ts, steps, "{schedule:?}: the UNet's timesteps");
        }
    }
}

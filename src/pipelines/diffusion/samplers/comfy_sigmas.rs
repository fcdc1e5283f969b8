//! ComfyUI's noise levels: its `ModelSamplingDiscrete` (σ of each training timestep, and the
//! two ways between σ and timestep) and its KSampler's schedulers, which pick a run's σs from
//! them. Each function works in the float widths ComfyUI's torch code does, so the σs are
//! ComfyUI's to the last bit or two: the training σs in f64 then kept as f32, the schedulers'
//! `torch.linspace` in f32. A1111's k-diffusion (`CompVisDenoiser`) has the same schedules
//! over its own table (σ worked in f32 from the model's f32 ᾱ) and gives the UNet the
//! fractional timestep of a σ ([`SampleAs`]).

use serde::{Deserialize, Serialize};

use super::sample_as::SampleAs;
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

/// ComfyUI's `ModelSamplingDiscrete` (A1111's `CompVisDenoiser`): σ per training timestep
/// and its log.
pub struct Discrete {
    sigmas: Vec<f32>,
    log_sigmas: Vec<f32>,
    rule: SampleAs,
}

impl Discrete {
    /// The training σs of a model's schedule as `rule` makes them: ComfyUI's
    /// `_register_schedule` works betas, ᾱ and σ in f64 (`make_beta_schedule` works in
    /// float64) and keeps them as f32; A1111's model keeps ᾱ (cumulated in f64 by numpy) as
    /// f32, from which k-diffusion works σ and its log in f32.
    pub fn new(cfg: &SchedulerConfig, rule: SampleAs) -> Result<Self, SchedulerError> {
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
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect();
        let (sigmas, log_sigmas) = match rule {
            SampleAs::Comfyui => {
                let sigmas64: Vec<f64> = alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
                (sigmas64.iter().map(|&s| s as f32).collect(), sigmas64.iter().map(|s| s.ln() as f32).collect())
            }
            SampleAs::A1111 => {
                let sigmas: Vec<f32> = alphas_cumprod.iter().map(|&a| ((1.0 - a as f32) / a as f32).sqrt()).collect();
                let logs = sigmas.iter().map(|s| s.ln()).collect();
                (sigmas, logs)
            }
        };
        Ok(Self { sigmas, log_sigmas, rule })
    }

    /// The timestep the UNet is given at `sigma`: ComfyUI's nearest whole one
    /// ([`Discrete::timestep`]), A1111's fractional one ([`Discrete::fractional_timestep`]).
    pub fn unet_timestep(&self, sigma: f32) -> f64 {
        match self.rule {
            SampleAs::Comfyui => self.timestep(sigma) as f64,
            SampleAs::A1111 => f64::from(self.fractional_timestep(sigma)),
        }
    }

    /// k-diffusion's `DiscreteSchedule.sigma_to_t` unquantized, in f32: between the last
    /// training timestep whose log σ is at most `sigma`'s (the first when none is; at most
    /// the last but one) and the next, interpolated in log σ.
    pub fn fractional_timestep(&self, sigma: f32) -> f32 {
        let log = sigma.ln();
        let last = self.log_sigmas.len() - 2;
        let low = self.log_sigmas.iter().rposition(|&l| log - l >= 0.0).unwrap_or(0).min(last);
        let (l, h) = (self.log_sigmas[low], self.log_sigmas[low + 1]);
        let w = ((l - log) / (l - h)).clamp(0.0, 1.0);
        (1.0 - w) * low as f32 + w * (low + 1) as f32
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
    fn sd15(rule: SampleAs) -> Discrete {
        let file = SchedulerConfigFile {
            beta_schedule: Some("scaled_linear".into()),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            ..SchedulerConfigFile::default()
        };
        let choice = SchedulerChoice::parse("euler").expect("euler");
        Discrete::new(&SchedulerConfig::resolve(&file, choice).expect("config"), rule).expect("discrete")
    }

    /// ComfyUI's `calculate_sigmas(model_sampling, NAME, 10)` and each σ's `timestep`, from
    /// its model_sampling.py, samplers.py and k_diffusion code run under torch 2.15.
    #[test]
    #[rustfmt::skip]
    fn ten_steps_of_each_schedule_are_comfyuis() {
        let d = sd15(SampleAs::Comfyui);
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

    /// A1111's `CompVisDenoiser` on the same schedule: its σs of float32 ᾱ (σ_min
    /// 1.3·10⁻⁵ above ComfyUI's), Karras over them, and the fractional timesteps its
    /// `sigma_to_t` gives the UNet, as k-diffusion (ab527a9, A1111's) computes them under
    /// torch 2.15 (tests/fixtures/make_a1111_reference.py's `CompVisDenoiser`).
    #[test]
    #[rustfmt::skip]
    fn a1111s_table_and_fractional_timesteps_are_k_diffusions() {
        let d = sd15(SampleAs::A1111);
        assert_eq!((d.sigma_min(), d.sigma_max()), (0.029_167_533, 14.614_642));
        let want = [14.614_643, 9.102_934, 5.478_399, 3.168_609_4, 1.749_423_4, 0.914_076_57, 0.446_920_87,
            0.201_399_83, 0.081_911_08, 0.029_167_539];
        let ts = [999.0, 916.284, 815.045_04, 687.153_2, 523.199_16, 327.147_4, 145.939_24, 40.856_98, 6.732_458_6,
            0.0];
        let got = d.schedule(Schedule::Karras, 10);
        for (i, ((g, w), t)) in got.iter().zip(want).zip(ts).enumerate() {
            assert!((g - w).abs() <= 2e-6 * w, "Karras σ {i}: {g} vs A1111's {w}");
            let ft = d.fractional_timestep(*g);
            assert!((ft - t).abs() <= 2e-3, "σ {i}: t {ft} vs A1111's {t}");
            assert_eq!(d.unet_timestep(*g), f64::from(ft));
        }
        // Past either end of the table: its ends.
        assert_eq!((d.fractional_timestep(0.01), d.fractional_timestep(100.0)), (0.0, 999.0));
        // Uniform (k-diffusion's `get_sigmas`) is the normal schedule: whole timesteps.
        let uniform = d.schedule(Schedule::Normal, 10);
        let whole: Vec<f32> = uniform[..10].iter().map(|&s| d.fractional_timestep(s).round()).collect();
        assert_eq!(whole, [999.0, 888.0, 777.0, 666.0, 555.0, 444.0, 333.0, 222.0, 111.0, 0.0]);
    }
}

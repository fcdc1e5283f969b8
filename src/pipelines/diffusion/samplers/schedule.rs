//! The training noise schedule and the ways diffusers picks inference timesteps from it.
//!
//! Every function here reproduces one numpy/torch expression in diffusers, including its
//! float width: torch keeps betas, ᾱ and σ in f32; numpy interpolates in f64. Matching the
//! widths is what keeps the schedules equal to the reference to the last bit or two.

use super::{SchedulerConfig, SchedulerError};

/// `torch.linspace(start, end, n, dtype=float32)`, which fills from both ends towards the
/// middle in f32 with fused multiply-adds (this reproduces torch's CPU kernel bit for bit).
pub fn torch_linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let halfway = n / 2;
    (0..n)
        .map(|i| if i < halfway { step.mul_add(i as f32, start) } else { (-step).mul_add((n - i - 1) as f32, end) })
        .collect()
}

/// `np.linspace(start, stop, n)` in f64 (endpoint included).
pub fn np_linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let div = n.saturating_sub(1);
    if div == 0 {
        return vec![start];
    }
    let step = (stop - start) / div as f64;
    let mut y: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    y[n - 1] = stop;
    y
}

/// `np.arange(start, stop, step)` for floats: numpy fills `start + i·(x1 − x0)`.
pub fn np_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let len = ((stop - start) / step).ceil();
    if !len.is_finite() || len <= 0.0 {
        return Vec::new();
    }
    let len = len as usize;
    let delta = (start + step) - start;
    (0..len).map(|i| if i == 0 { start } else { start + i as f64 * delta }).collect()
}

/// Betas of the training schedule, in f32 as torch keeps them.
pub fn betas(cfg: &SchedulerConfig) -> Result<Vec<f32>, SchedulerError> {
    let n = cfg.num_train_timesteps;
    let mut betas = if let Some(trained) = &cfg.trained_betas {
        trained.iter().map(|&b| b as f32).collect()
    } else {
        match cfg.beta_schedule.as_str() {
            "linear" => torch_linspace_f32(cfg.beta_start as f32, cfg.beta_end as f32, n),
            "scaled_linear" => torch_linspace_f32(cfg.beta_start.sqrt() as f32, cfg.beta_end.sqrt() as f32, n)
                .into_iter()
                .map(|b| b * b)
                .collect(),
            "squaredcos_cap_v2" => betas_for_alpha_bar_cosine(n),
            other => {
                return Err(SchedulerError::Unsupported(format!("beta_schedule {other:?}")));
            }
        }
    };
    if betas.len() != n {
        return Err(SchedulerError::Unsupported(format!(
            "trained_betas has {} entries, num_train_timesteps is {n}",
            betas.len()
        )));
    }
    if cfg.rescale_betas_zero_snr {
        betas = rescale_zero_terminal_snr(&betas);
    }
    Ok(betas)
}

/// Glide's cosine schedule (`betas_for_alpha_bar` with the cosine transform), f64 then f32.
fn betas_for_alpha_bar_cosine(n: usize) -> Vec<f32> {
    let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
    (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
        })
        .collect()
}

/// Rescales betas to zero terminal SNR (arXiv 2305.08891, algorithm 1), in f32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let cumprod = alphas_cumprod(betas);
    let mut sqrt_bar: Vec<f32> = cumprod.iter().map(|a| a.sqrt()).collect();
    let (first, last) = (sqrt_bar[0], sqrt_bar[sqrt_bar.len() - 1]);
    for s in &mut sqrt_bar {
        *s -= last;
        *s *= first / (first - last);
    }
    let bar: Vec<f32> = sqrt_bar.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(bar.len());
    out.push(1.0 - bar[0]);
    for i in 1..bar.len() {
        out.push(1.0 - bar[i] / bar[i - 1]);
    }
    out
}

/// `torch.cumprod(1 − β)`: torch accumulates in f64 on the CPU and stores f32.
pub fn alphas_cumprod(betas: &[f32]) -> Vec<f32> {
    let mut acc = 1.0f64;
    betas
        .iter()
        .map(|&b| {
            acc *= f64::from(1.0 - b);
            acc as f32
        })
        .collect()
}

/// σ(t) = √((1 − ᾱ)/ᾱ) for every training timestep, in f32.
pub fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
}

/// `np.interp(x, arange(len(fp)), fp)` on integer-spaced sample points.
pub fn interp_unit(x: f64, fp: &[f32]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return f64::from(fp[0]);
    }
    if x >= last as f64 {
        return f64::from(fp[last]);
    }
    let j = x.floor() as usize;
    let (a, b) = (f64::from(fp[j]), f64::from(fp[j + 1]));
    (b - a) * (x - j as f64) + a
}

/// diffusers' `_sigma_to_t`: the (fractional) timestep whose log-σ is `sigma`'s, by linear
/// interpolation in the f32 log-σ table.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let low_idx = log_sigmas.iter().rposition(|&l| log_sigma - f64::from(l) >= 0.0).unwrap_or(0).min(n - 2);
    let high_idx = low_idx + 1;
    let (low, high) = (log_sigmas[low_idx], log_sigmas[high_idx]);
    let w = ((f64::from(low) - log_sigma) / f64::from(low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * high_idx as f64
}

/// Karras et al. (2022) σ schedule with ρ = 7, from `sigma_max` down to `sigma_min`.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    np_linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(RHO)).collect()
}

/// Timestep spacing `leading`: `arange(n)·(T // n)` reversed, plus `steps_offset`.
pub fn leading(n: usize, num_train: usize, steps_offset: usize) -> Vec<f64> {
    let ratio = num_train / n.max(1);
    (0..n).rev().map(|i| (i * ratio + steps_offset) as f64).collect()
}

/// Timestep spacing `trailing`: `round(arange(T, 0, −T/n)) − 1` (round half to even).
pub fn trailing(n: usize, start: f64, num_train: usize) -> Vec<f64> {
    let ratio = num_train as f64 / n.max(1) as f64;
    np_arange(start, 0.0, -ratio).into_iter().map(|t| t.round_ties_even() - 1.0).collect()
}

/// Timesteps by the config's spacing for the sigma-based schedulers (Euler family), as
/// f32-rounded floats (linspace keeps fractions).
pub fn euler_timesteps(cfg: &SchedulerConfig, n: usize) -> Result<Vec<f64>, SchedulerError> {
    let t = cfg.num_train_timesteps;
    let ts = match cfg.timestep_spacing.as_str() {
        "linspace" => {
            let mut v: Vec<f64> = np_linspace(0.0, (t - 1) as f64, n).into_iter().map(|x| x as f32 as f64).collect();
            v.reverse();
            v
        }
        "leading" => leading(n, t, cfg.steps_offset),
        "trailing" => trailing(n, t as f64, t),
        other => {
            return Err(SchedulerError::Unsupported(format!("timestep_spacing {other:?}")));
        }
    };
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_three_steps_match_numpy() {
        // np.round(np.arange(1000, 0, -1000/3)) - 1 == [999, 666, 332]
        assert_eq!(trailing(3, 1000.0, 1000), vec![999.0, 666.0, 332.0]);
    }

    #[test]
    fn trailing_sixteen_steps_round_half_to_even() {
        let ts = trailing(16, 1000.0, 1000);
        assert_eq!(ts.len(), 16);
        // 937.5 rounds to 938 and 812.5 to 812 under numpy's round-half-even.
        assert_eq!(ts[1], 937.0);
        assert_eq!(ts[3], 811.0);
    }

    #[test]
    fn leading_adds_the_offset() {
        assert_eq!(leading(4, 1000, 1), vec![751.0, 501.0, 251.0, 1.0]);
    }

    #[test]
    fn linspace_of_one_is_its_start() {
        assert_eq!(np_linspace(0.0, 999.0, 1), vec![0.0]);
    }

    #[test]
    fn sigma_to_t_inverts_the_table_at_integer_steps() {
        let cfg = SchedulerConfig::default();
        let sig = train_sigmas(&alphas_cumprod(&betas(&cfg).expect("betas")));
        let logs: Vec<f32> = sig.iter().map(|s| s.ln()).collect();
        let t = sigma_to_t(f64::from(sig[500]), &logs);
        assert!((t - 500.0).abs() < 1e-3, "{t}");
    }
}

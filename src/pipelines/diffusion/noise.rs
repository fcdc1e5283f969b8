//! Where the random numbers of a run come from. Production runs draw from a seeded
//! ChaCha stream per image, so an image depends only on its own seed; reference tests
//! replay the exact draws another implementation made.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A replayed draw did not match what the run asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    #[error("noise replay exhausted after {0} draws")]
    Exhausted(usize),
    #[error("noise replay draw {index} has {have} values, the run needs {want}")]
    Size { index: usize, have: usize, want: usize },
}

/// A source of standard-normal noise for a batch of images.
pub trait NoiseSource: Send {
    /// Fills `out`, a whole batch laid out image after image, with N(0, 1) draws.
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError>;
}

/// Seeded noise: one ChaCha8 stream per image, normal draws by Box–Muller.
pub struct SeededNoise {
    rngs: Vec<ChaCha8Rng>,
}

impl SeededNoise {
    /// One stream per seed; image `i` of the batch draws from `seeds[i]`.
    pub fn new(seeds: &[u64]) -> Self {
        Self { rngs: seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect() }
    }
}

impl NoiseSource for SeededNoise {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError> {
        let per = out.len() / self.rngs.len().max(1);
        for (chunk, rng) in out.chunks_mut(per.max(1)).zip(self.rngs.iter_mut()) {
            box_muller(rng, chunk);
        }
        Ok(())
    }
}

/// Fills `out` with standard normals from uniform pairs (u₁ ∈ (0, 1], u₂ ∈ [0, 1)).
pub fn box_muller(rng: &mut impl Rng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        pair[0] = (r * theta.cos()) as f32;
        if let Some(second) = pair.get_mut(1) {
            *second = (r * theta.sin()) as f32;
        }
    }
}

/// Where a picture's noise comes from: an image request's `noise`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// reelbox's own: a ChaCha8 stream per picture ([`SeededNoise`]).
    #[default]
    Reelbox,
    /// torch's CPU generator per picture, each from its own seed, as A1111's CPU source
    /// draws it ([`super::torch_noise::TorchNoise`]): a seed starts from the latents it
    /// gives there.
    TorchCpu,
    /// torch's CPU generator for the whole batch from the first seed, as ComfyUI's KSampler
    /// draws it: picture `i` of a batch is the one ComfyUI makes at `batch_index` `i`.
    Comfyui,
}

impl NoiseKind {
    /// The names a request gives the kinds in.
    pub const NAMES: [&'static str; 3] = ["reelbox", "torch_cpu", "comfyui"];

    /// The kind a request names, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "reelbox" => Some(Self::Reelbox),
            "torch_cpu" => Some(Self::TorchCpu),
            "comfyui" => Some(Self::Comfyui),
            _ => None,
        }
    }

    /// Whether this is the default, which stored jobs leave out.
    pub fn is_reelbox(&self) -> bool {
        *self == Self::Reelbox
    }

    /// Its name in A1111's "RNG" (a picture's parameters text), when not reelbox's own.
    pub fn label(self) -> Option<&'static str> {
        (self != Self::Reelbox).then_some("CPU")
    }

    /// The noise of a batch whose picture `i` takes `seeds[i]`.
    pub fn source(self, seeds: &[u64]) -> Box<dyn NoiseSource> {
        match self {
            Self::Reelbox => Box::new(SeededNoise::new(seeds)),
            Self::TorchCpu => Box::new(super::torch_noise::TorchNoise::new(seeds)),
            Self::Comfyui => Box::new(super::torch_noise::TorchNoise::batch(seeds.first().copied().unwrap_or(0))),
        }
    }
}

/// Replays recorded draws in order, each the size of the batch it was drawn for.
pub struct ReplayNoise {
    draws: std::collections::VecDeque<Vec<f32>>,
    used: usize,
}

impl ReplayNoise {
    /// Replays `draws` front to back.
    pub fn new(draws: Vec<Vec<f32>>) -> Self {
        Self { draws: draws.into(), used: 0 }
    }

    /// Draws not yet consumed.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError> {
        let draw = self.draws.pop_front().ok_or(NoiseError::Exhausted(self.used))?;
        if draw.len() != out.len() {
            return Err(NoiseError::Size { index: self.used, have: draw.len(), want: out.len() });
        }
        out.copy_from_slice(&draw);
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_standard_normal() {
        let mut n = SeededNoise::new(&[7]);
        let mut v = vec![0f32; 200_000];
        n.fill(&mut v).expect("fill");
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
    }

    #[test]
    fn each_image_of_a_batch_follows_its_own_seed() {
        let mut batch = vec![0f32; 32];
        SeededNoise::new(&[1, 2]).fill(&mut batch).expect("fill");
        let mut second = vec![0f32; 16];
        SeededNoise::new(&[2]).fill(&mut second).expect("fill");
        assert_eq!(&batch[16..], &second[..]);
        assert_ne!(&batch[..16], &second[..]);
    }

    #[test]
    fn replay_rejects_a_draw_of_the_wrong_size() {
        let mut r = ReplayNoise::new(vec![vec![0.0; 3]]);
        let err = r.fill(&mut [0.0; 4]).expect_err("size mismatch");
        assert_eq!(err, NoiseError::Size { index: 0, have: 3, want: 4 });
        assert_eq!(r.fill(&mut [0.0; 3]), Err(NoiseError::Exhausted(0)));
    }
}

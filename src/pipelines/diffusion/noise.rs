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

/// The sizes of the draws a run made from its noise, in order, each with how many times in a
/// row it came (`[size, times]`): where its noise stream stands, so a run going on from it
/// draws on from there ([`NoiseKind::continued`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Draws(pub Vec<[usize; 2]>);

impl Draws {
    fn note(&mut self, size: usize) {
        match self.0.last_mut() {
            Some([last, times]) if *last == size => *times += 1,
            _ => self.0.push([size, 1]),
        }
    }
}

/// A run's noise with each draw's size noted ([`Draws`]).
pub struct Counted<'a> {
    inner: &'a mut dyn NoiseSource,
    pub draws: Draws,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a mut dyn NoiseSource) -> Self {
        Self { inner, draws: Draws::default() }
    }
}

impl NoiseSource for Counted<'_> {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError> {
        self.draws.note(out.len());
        self.inner.fill(out)
    }
}

/// Picture `index`'s part of a batch's noise, the batch drawn whole each time: one picture of
/// a batch going on alone draws what it drew among the others, whatever the kind.
struct PictureOf {
    batch: Box<dyn NoiseSource>,
    pictures: usize,
    index: usize,
    buf: Vec<f32>,
}

impl NoiseSource for PictureOf {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError> {
        let len = out.len();
        self.buf.resize(len * self.pictures, 0.0);
        self.batch.fill(&mut self.buf)?;
        out.copy_from_slice(&self.buf[self.index * len..(self.index + 1) * len]);
        Ok(())
    }
}

impl NoiseKind {
    /// The noise picture `index` of a batch whose picture `i` took `seeds[i]` draws on with,
    /// after the batch's `draws`: the batch's own noise drawn past them again, of which each
    /// later draw hands out the picture's part (so the run goes on as if it never stopped).
    pub fn continued(self, seeds: &[u64], index: usize, draws: &Draws) -> Result<Box<dyn NoiseSource>, NoiseError> {
        let mut batch = self.source(seeds);
        let mut buf = Vec::new();
        for &[size, times] in &draws.0 {
            buf.resize(size, 0.0);
            for _ in 0..times {
                batch.fill(&mut buf)?;
            }
        }
        let pictures = seeds.len().max(1);
        Ok(Box::new(PictureOf { batch, pictures, index: index.min(pictures - 1), buf }))
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
    fn a_picture_of_a_batch_draws_on_from_where_its_batch_stopped() {
        for kind in [NoiseKind::Reelbox, NoiseKind::TorchCpu, NoiseKind::Comfyui] {
            let mut whole = kind.source(&[11, 12]);
            let mut counted = Counted::new(whole.as_mut());
            let mut first = vec![0f32; 2 * 40];
            counted.fill(&mut first).expect("fill");
            counted.fill(&mut first).expect("fill");
            assert_eq!(counted.draws, Draws(vec![[80, 2]]));
            let draws = counted.draws.clone();
            let mut next = vec![0f32; 80];
            whole.fill(&mut next).expect("fill");
            for picture in 0..2 {
                let mut alone = kind.continued(&[11, 12], picture, &draws).expect("replays");
                let mut own = vec![0f32; 40];
                alone.fill(&mut own).expect("fill");
                assert_eq!(own, next[picture * 40..(picture + 1) * 40], "{kind:?} picture {picture}");
            }
        }
    }

    #[test]
    fn replay_rejects_a_draw_of_the_wrong_size() {
        let mut r = ReplayNoise::new(vec![vec![0.0; 3]]);
        let err = r.fill(&mut [0.0; 4]).expect_err("size mismatch");
        assert_eq!(err, NoiseError::Size { index: 0, have: 3, want: 4 });
        assert_eq!(r.fill(&mut [0.0; 3]), Err(NoiseError::Exhausted(0)));
    }
}

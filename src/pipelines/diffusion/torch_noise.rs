//! Noise drawn as `torch.randn(..., generator=torch.manual_seed(seed))` draws it on the CPU:
//! ComfyUI's KSampler makes its starting noise so on every machine (`prepare_noise`), and
//! A1111's "Random number generator source: CPU" so for each picture's seed. With it, a seed
//! typed into reelbox starts from the very latents that seed gives there.
//!
//! torch's CPU generator is MT19937 seeded with the seed's low 32 bits. A float tensor of 16
//! or more values is filled with uniforms `(u32 & 0xFFFFFF) · 2⁻²⁴` first, then turned into
//! normals 16 at a time by Box–Muller (the first 8 of each 16 give the radius, the last 8
//! the angle); when the length is not a multiple of 16, the last 16 values are drawn again
//! and transformed once more (`normal_fill` in ATen's `cpu/DistributionTemplates.h`).
//! Shorter tensors take doubles per value (`normal_distribution<double>`), two 32-bit
//! draws each, with the second normal of a pair kept for the next value. torch's vectorised
//! path computes log, sin and cos with SLEEF to 1 ULP, so values agree to about 1e-6.

use rand_mt::Mt;

use super::noise::{NoiseError, NoiseSource};

/// Values filled per Box–Muller block.
const BLOCK: usize = 16;

/// One picture's torch CPU generator, seeded as `torch.manual_seed(seed)`.
pub struct TorchGenerator {
    mt: Mt,
    /// The second normal of the last pair drawn one value at a time (torch caches it).
    cached: Option<f64>,
}

impl TorchGenerator {
    pub fn new(seed: u64) -> Self {
        // `manual_seed` keeps the low 32 bits for the CPU generator's state.
        Self { mt: Mt::new(seed as u32), cached: None }
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (f64::from(self.mt.next_u32() & 0xFF_FFFF) / f64::from(1u32 << 24)) as f32
    }

    /// `uniform_real_distribution<double>(0, 1)`: 53 bits of a 64-bit draw (first draw high).
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.mt.next_u32());
        let lo = u64::from(self.mt.next_u32());
        (((hi << 32) | lo) & ((1u64 << 53) - 1)) as f64 / (1u64 << 53) as f64
    }

    /// `torch.randn(out.len())` as a float tensor.
    pub fn randn(&mut self, out: &mut [f32]) {
        if out.len() < BLOCK {
            for v in out.iter_mut() {
                *v = self.normal_f64() as f32;
            }
            return;
        }
        for v in out.iter_mut() {
            *v = self.uniform_f32();
        }
        let len = out.len();
        for block in out.chunks_exact_mut(BLOCK) {
            box_muller_16(block);
        }
        if len % BLOCK != 0 {
            let tail = &mut out[len - BLOCK..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
    }

    /// `normal_distribution<double>(0, 1)` with its cached second value.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.cached.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (1.0 - u2).ln()).sqrt();
        let theta = std::f64::consts::TAU * u1;
        self.cached = Some(r * theta.sin());
        r * theta.cos()
    }
}

/// ATen's `normal_fill_16` in float: 16 uniforms in, 16 normals out.
fn box_muller_16(data: &mut [f32]) {
    for j in 0..BLOCK / 2 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + BLOCK / 2];
        let radius = (-2.0 * u1.ln()).sqrt();
        // `2.0f * c10::pi<double> * u2` is worked in double, then kept as a float.
        let theta = (2.0 * std::f64::consts::PI * f64::from(u2)) as f32;
        data[j] = radius * theta.cos();
        data[j + BLOCK / 2] = radius * theta.sin();
    }
}

/// Noise for a batch drawn with torch's CPU generator: one generator per picture seeded with
/// its own seed (A1111's CPU source), or one for the whole batch (ComfyUI's `prepare_noise`,
/// a `[batch, C, h, w]` tensor drawn at once from the KSampler's seed).
pub struct TorchNoise {
    generators: Vec<TorchGenerator>,
    /// After the first draw, a generator of its own for the rest seeded with this.
    then: Option<u64>,
}

impl TorchNoise {
    /// Picture `i` of the batch draws from `seeds[i]`.
    pub fn new(seeds: &[u64]) -> Self {
        Self { generators: seeds.iter().map(|&s| TorchGenerator::new(s)).collect(), then: None }
    }

    /// The whole batch draws its starting noise from one generator seeded with `seed`, as
    /// ComfyUI's `prepare_noise` draws it; the noise an ancestral sampler adds at each step
    /// comes from another, seeded `seed + 1`, as k-diffusion's `default_noise_sampler` seeds
    /// it on the CPU.
    pub fn batch(seed: u64) -> Self {
        Self { generators: vec![TorchGenerator::new(seed)], then: Some(seed.wrapping_add(1)) }
    }
}

impl NoiseSource for TorchNoise {
    fn fill(&mut self, out: &mut [f32]) -> Result<(), NoiseError> {
        let per = out.len() / self.generators.len().max(1);
        for (chunk, g) in out.chunks_mut(per.max(1)).zip(self.generators.iter_mut()) {
            g.randn(chunk);
        }
        if let Some(seed) = self.then.take() {
            self.generators = vec![TorchGenerator::new(seed)];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `torch.randn(len(want), generator=torch.manual_seed(seed))` from torch 2.15 (CPU).
    fn assert_torch(seed: u64, want: &[f32]) {
        let mut got = vec![0f32; want.len()];
        TorchGenerator::new(seed).randn(&mut got);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-6, "seed {seed} value {i}: {g} vs torch's {w}\n{got:?}");
        }
    }

    #[test]
    fn draws_what_torch_draws_for_a_whole_block() {
        #[rustfmt::skip]
        assert_torch(42, &[1.926_915_3, 1.487_284_1, 0.900_717_2, -2.105_521, 0.678_418_46, -1.234_544_9,
            -0.043_067_478, -1.604_667, -0.752_135_3, 1.648_723, -0.392_478_64, -1.403_607_1, -0.727_881_3,
            -0.559_430_2, -0.768_838_9, 0.762_445_4]);
    }

    #[test]
    fn draws_what_torch_draws_past_a_block_and_for_a_seed_past_32_bits() {
        #[rustfmt::skip]
        assert_torch(0, &[-1.125_839_8, -1.152_360_2, -0.250_578_58, -0.433_878_8, 0.598_839_46, -1.555_095,
            -0.341_360_4, 1.853_006_1, 0.468_096_4, -0.157_712_44, 1.443_660_1, 0.266_049_4, 1.389_366_1,
            1.586_334_2, 0.946_298_36, -0.843_676_76, 0.931_826_6, 1.259_009_2, 2.004_980_6, 0.053_736_903]);
        // torch.manual_seed(2**32 + 7): the generator keeps the low 32 bits.
        let mut low = vec![0f32; 37];
        TorchGenerator::new(7).randn(&mut low);
        #[rustfmt::skip]
        assert_torch((1 << 32) + 7, &[-0.820_134_5, 0.395_631_16, 0.898_908_5, -1.388_403_9, -0.166_996_02,
            0.285_149_96, -0.641_091_5, -0.893_655_4, 0.926_543, -0.535_512_3, -1.159_720_3, -0.460_157_16,
            0.708_539_06, 1.012_755_4, 0.230_396_87, 1.090_165_1, -1.582_664_6, -0.324_566_63, 1.926_368_1,
            -0.330_011_73, 0.198_445_05, -0.661_867_56, -0.828_452_06, -0.605_680_3, -0.135_436_89, 0.747_118_2,
            0.611_815_75, 1.867_783_5, 2.511_602_9, -0.250_132_62, 0.501_121_46, 0.260_036_2, -1.637_021_3,
            0.157_711_91, 0.395_740_93, -1.367_739_7, -0.100_734_316]);
        let mut high = vec![0f32; 37];
        TorchGenerator::new((1 << 32) + 7).randn(&mut high);
        assert_eq!(low, high);
    }

    #[test]
    fn a_second_draw_goes_on_where_the_first_ended_and_short_ones_take_doubles() {
        let mut g = TorchGenerator::new(1);
        g.randn(&mut [0f32; 16]);
        let mut second = vec![0f32; 18];
        g.randn(&mut second);
        #[rustfmt::skip]
        let want = [-0.696_972_4, -1.160_761_5, 0.157_770_6, -0.773_454_9, 0.199_056_5, 0.045_702_778,
            0.152_956_92, -0.475_678_8, -1.882_142_5, -0.776_545_05, -0.157_845_15, -0.028_787_14, 2.357_111,
            -1.037_338_7, 1.574_798_1, -0.629_847_2, 2.406_978_1, 0.278_566_24];
        for (i, (g, w)) in second.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 2e-6, "value {i}: {g} vs torch's {w}");
        }
        assert_torch(123_456_789, &[0.110_278_37, 2.200_769_7, -0.896_996_9, -0.385_614_8, -0.606_252_2]);
    }

    #[test]
    fn a_batch_draws_from_one_generator_or_one_per_picture() {
        let mut whole = vec![0f32; 32];
        TorchGenerator::new(9).randn(&mut whole);
        let mut comfy = TorchNoise::batch(9);
        let mut batch = vec![0f32; 32];
        comfy.fill(&mut batch).expect("fill");
        assert_eq!(batch, whole, "ComfyUI's: one tensor for the batch");
        // A step's noise comes from the sampler's own generator, seeded one more.
        comfy.fill(&mut batch).expect("fill");
        let mut step = vec![0f32; 32];
        TorchGenerator::new(10).randn(&mut step);
        assert_eq!(batch, step);
        let mut each = vec![0f32; 32];
        TorchNoise::new(&[9, 10]).fill(&mut each).expect("fill");
        let mut second = vec![0f32; 16];
        TorchGenerator::new(10).randn(&mut second);
        assert_eq!((&each[..16], &each[16..]), (&whole[..16], &second[..]), "A1111's: a seed a picture");
    }
}

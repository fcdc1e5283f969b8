//! How much of a picture job's time each stage takes: what its overall fraction weighs the
//! stages by. Alike, a 30-step picture's `generate` counted as much as the upscale after
//! it, so a job at its upscale read 50 % done with most of its time behind it (or the other
//! way round for a 2-step Turbo picture).
//!
//! Costs are in guided UNet steps over the picture's pixels, from the models' arithmetic
//! (multiply-adds per pixel; the runtime's speed per multiply-add is about alike for their
//! convolutions): Stable Diffusion 1.5's UNet takes about 0.34 T of them at 512², twice that
//! a step with guidance, so about 2.6 M per picture pixel a step.

use super::ImageParams;
use crate::kinds::StageName;

/// The VAE decode (and the text encoders before the steps), in steps: SD's decoder is about
/// 1.2 T multiply-adds at 512², two guided steps.
const DECODE_STEPS: f64 = 2.0;
/// One Real-ESRGAN x4 upscale of a picture, in steps of a picture that size: RRDBNet takes
/// about 17.6 M multiply-adds per input pixel (its 23 blocks at the input's size, the last
/// convolutions at 4× and 16× its pixels), 6.8 steps' worth; on a GPU, where it moves more
/// memory per multiply-add than the UNet, it is timed nearer 11 (a 3090: 0.8 s for a 512²
/// picture against 0.07 s a step), so 8.
const UPSCALE_STEPS: f64 = 8.0;
/// A resize: a few filter taps a pixel on the CPU and a PNG written; next to nothing.
const RESIZE_STEPS: f64 = 0.05;

/// A second pass's VAE encode of its starting picture, in steps: SD's encoder is about half
/// its decoder, one guided step.
const ENCODE_STEPS: f64 = 1.0;

/// Each of `stages`' expected share of an image job's time, in their order, summing to 1:
/// the generate's steps (those it runs: from an init image, as its `steps_mode` counts them)
/// over its pixels against a second pass's (the steps it runs, encode and decode, over its
/// pixels), an
/// upscale of the last pictures before it and a resize; a stage the job lacks weighs nothing.
pub(super) fn stage_weights(p: &ImageParams, stages: &[StageName]) -> Vec<f64> {
    let steps = f64::from(p.steps_run());
    // Costs are in steps of a first-pass picture: later stages scale by their pictures' pixels.
    let ratio = p.refine.as_ref().map_or(1.0, |r| r.pixel_ratio(p));
    shares(stages, |stage| match (stage, &p.refine) {
        // A split's first pass hands its latents on undecoded.
        (StageName::Generate, Some(r)) if r.switch.is_some() => steps,
        (StageName::Generate, _) => steps + DECODE_STEPS,
        (StageName::Refine, Some(r)) => {
            // From the latent, no picture is encoded.
            let encode = if r.from == super::RefineFrom::Picture { ENCODE_STEPS } else { 0.0 };
            (f64::from(r.steps_run(p)) + encode + DECODE_STEPS) * ratio
        }
        (StageName::Upscale, _) if p.upscale_model.is_some() => UPSCALE_STEPS * ratio,
        (StageName::Resize, _) if p.resize.is_some() => RESIZE_STEPS,
        _ => 0.0,
    })
}

/// The `upscale` kind's stages: its model's upscale against a resize of the same picture.
pub(crate) fn upscale_kind_weights(stages: &[StageName]) -> Vec<f64> {
    shares(stages, |stage| match stage {
        StageName::Upscale => UPSCALE_STEPS,
        StageName::Resize => RESIZE_STEPS,
        _ => 0.0,
    })
}

/// Each stage's cost over their sum (alike when nothing costs anything).
fn shares(stages: &[StageName], cost: impl Fn(StageName) -> f64) -> Vec<f64> {
    let costs: Vec<f64> = stages.iter().map(|s| cost(*s)).collect();
    let total: f64 = costs.iter().sum();
    if total <= 0.0 {
        return crate::kinds::even_weights(stages);
    }
    costs.iter().map(|c| c / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::image::{PassSize, Refine};
    use crate::kinds::resize::{Resize, ResizeTo};
    use crate::media::resize::Method;
    use crate::pipelines::diffusion::StepsMode;

    fn params(steps: u32, upscale: bool, resize: bool) -> ImageParams {
        ImageParams {
            prompt: "a cat".into(),
            negative_prompt: None,
            model: "tiny-sd".into(),
            width: 512,
            height: 512,
            steps,
            guidance: 7.0,
            scheduler: "euler".into(),
            schedule: None,
            sample_as: Default::default(),
            clip_skip: None,
            seed: 1,
            n: 1,
            init_image: None,
            strength: None,
            mask: None,
            mask_grow: 0,
            steps_mode: StepsMode::Schedule,
            noise: Default::default(),
            preset: None,
            preview_every: 0,
            upscale_model: upscale.then(|| "realesrgan-x4".into()),
            resize: resize.then_some(Resize { method: Method::Area, to: ResizeTo::By { scale_by: 0.5 } }),
            refine: None,
        }
    }

    const ALL: [StageName; 3] = [StageName::Generate, StageName::Upscale, StageName::Resize];

    #[test]
    fn a_long_generate_outweighs_its_upscale_and_a_short_one_does_not() {
        let long = stage_weights(&params(30, true, false), &ALL[..2]);
        let short = stage_weights(&params(2, true, false), &ALL[..2]);
        assert!(long[0] > 0.75 && short[0] < 0.35, "{long:?} {short:?}");
        for w in [&long, &short] {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{w:?}");
        }
        let mut img2img = params(30, true, false);
        img2img.strength = Some(0.2);
        assert!(stage_weights(&img2img, &ALL[..2])[0] < long[0], "img2img runs a fifth of the steps");
        // Counted as ComfyUI counts them, all 30 run, whatever the strength.
        img2img.steps_mode = StepsMode::Run;
        assert_eq!(stage_weights(&img2img, &ALL[..2]), long, "all 30 steps run");
    }

    #[test]
    fn a_resize_weighs_next_to_nothing() {
        let w = stage_weights(&params(20, true, true), &ALL);
        assert!(w[2] < 0.01 && w[2] > 0.0, "{w:?}");
        let w = upscale_kind_weights(&[StageName::Resize, StageName::Upscale]);
        assert!(w[0] < 0.01 && w[1] > 0.99, "{w:?}");
        assert_eq!(upscale_kind_weights(&[StageName::Resize]), [1.0]);
        // A stage the job does not have (a record from another build) weighs nothing.
        assert_eq!(stage_weights(&params(20, false, false), &ALL[..2])[1], 0.0);
    }

    #[test]
    fn a_second_pass_weighs_its_steps_times_strength_over_its_pixels() {
        let mut p = params(20, true, false);
        let refine = |strength: f64, side: u32| Refine {
            model: None,
            upscale_model: None,
            resize: None,
            from: super::super::RefineFrom::Picture,
            switch: None,
            size: Some(PassSize { width: side, height: side }),
            strength,
            steps: 20,
            steps_mode: StepsMode::Schedule,
            seed: 1,
            guidance: 7.0,
            scheduler: "euler".into(),
            schedule: None,
            prompt: "a cat".into(),
            negative_prompt: None,
        };
        let stages = [StageName::Generate, StageName::Refine, StageName::Upscale];
        p.refine = Some(refine(0.5, 512));
        let same = stage_weights(&p, &stages);
        // 10 steps + encode + decode against 20 steps + decode.
        assert!((same[1] / same[0] - 13.0 / 22.0).abs() < 1e-9, "{same:?}");
        p.refine = Some(Refine { steps_mode: StepsMode::Run, ..refine(0.5, 512) });
        let run = stage_weights(&p, &stages);
        // All 20 steps run, as ComfyUI's second KSampler runs them: 20 + encode + decode.
        assert!((run[1] / run[0] - 23.0 / 22.0).abs() < 1e-9, "{run:?}");
        p.refine = Some(refine(0.5, 1024));
        let big = stage_weights(&p, &stages);
        assert!((big[1] / big[0] - 4.0 * 13.0 / 22.0).abs() < 1e-9, "four times the pixels: {big:?}");
        assert!((big[2] / big[0] - 4.0 * UPSCALE_STEPS / 22.0).abs() < 1e-9, "the upscale takes the big ones");
        assert!((big.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{big:?}");
        // A split at step 5 of 20: 5 steps undecoded, then 15 and the decode.
        let switch = Some(super::super::Switch { step: 5, at: None, continues: super::super::Continue::Leftover });
        p.refine = Some(Refine { switch, from: super::super::RefineFrom::Latent, ..refine(1.0, 512) });
        let split = stage_weights(&p, &stages);
        assert!((split[1] / split[0] - 17.0 / 5.0).abs() < 1e-9, "{split:?}");
        p.refine = None;
        assert_eq!(stage_weights(&p, &stages)[1], 0.0, "no second pass, no weight");
    }
}

//! The parameters text of a second pass's pictures, as A1111 writes a hires-fixed picture's:
//! the first pass's settings, the second's strength as `Denoising strength`, and the second
//! pass's own as the hires keys (its own model `Hires checkpoint`) (`pipelines::diffusion::output::Hires`), so A1111's PNG Info
//! (and `/sdapi/v1/png-info`) sends the hires fix back to txt2img as it ran.

use super::ImageParams;
use super::refine::{PassSize, Refine, RefineFrom};
use crate::kinds::resize::{Crop, ResizeTo};
use crate::pipelines::diffusion::output::{Hires, HiresScale, ImageParameters, hires_upscaler_name};
use crate::pipelines::diffusion::samplers::SchedulerChoice;

/// The most decimals a `Hires upscale` is written with before a `Hires resize` says the size.
const MAX_DECIMALS: i32 = 6;

/// A scheduler's A1111 sampler label (its own name where reelbox reads none from it).
fn sampler_label(name: &str) -> &str {
    SchedulerChoice::parse(name).map_or(name, |c| c.label())
}

/// The shortest decimal by which each side of `first`, cut down to whole pixels as A1111 works
/// its hires size out (`int(width * hr_scale)`), is `to`'s; a `Hires resize` where none is.
fn scale_between((fw, fh): (u32, u32), (w, h): (u32, u32)) -> HiresScale {
    let makes = |s: f64| (f64::from(fw) * s) as u32 == w && (f64::from(fh) * s) as u32 == h;
    let low = (f64::from(w) / f64::from(fw.max(1))).max(f64::from(h) / f64::from(fh.max(1)));
    (0..=MAX_DECIMALS)
        .map(|d| {
            let unit = 10f64.powi(d);
            (low * unit).ceil() / unit
        })
        .find(|&s| makes(s))
        .map_or(HiresScale::To(w, h), HiresScale::By)
}

impl Refine {
    /// How much larger it made `first`'s pictures, sampled at `size`: a factor where the
    /// request gave one or one makes the size, else the size (A1111's `hr_resize_x`, `_y`).
    fn hires_scale(&self, first: &ImageParams, size: PassSize) -> HiresScale {
        let from = (first.width, first.height);
        match self.resize.map(|r| r.to) {
            Some(ResizeTo::By { scale_by }) if self.upscale_model.is_none() => HiresScale::By(scale_by),
            Some(ResizeTo::Size { width, height, crop: Crop::Center }) => HiresScale::To(width, height),
            Some(ResizeTo::Size { width, height, crop: Crop::Disabled }) if width > 0 && height > 0 => {
                scale_between(from, (width, height))
            }
            _ => scale_between(from, (size.width, size.height)),
        }
    }

    /// A1111's name for how it scaled the first pass's pictures: its upscale model's, else its
    /// resize method's (a latent's without one: nearest-exact; a picture's: A1111's "None").
    fn hires_upscaler(&self) -> &str {
        let latent = self.from == RefineFrom::Latent;
        match (&self.upscale_model, self.resize) {
            (Some(model), _) => model,
            (None, Some(r)) => hires_upscaler_name(latent, r.method.as_str()),
            (None, None) if latent => hires_upscaler_name(true, "nearest-exact"),
            (None, None) => "None",
        }
    }

    /// Picture `i`'s parameters text after this second pass at `size`: `first`'s settings, with
    /// this pass's strength and hires keys, each written where it is not the first pass's.
    pub(super) fn described<'a>(&'a self, first: &'a ImageParams, size: PassSize, i: usize) -> ImageParameters<'a> {
        if let Some(switch) = self.switch {
            return self.described_split(first, switch, i);
        }
        let sampler = sampler_label(&first.scheduler);
        let pass_sampler = sampler_label(&self.scheduler);
        let schedule = first.schedule.map(|s| s.label());
        let pass_schedule = self.schedule_of(first).map(|s| s.label());
        let negative = self.negative_prompt.as_deref();
        let hires = Hires {
            checkpoint: self.model.as_deref(),
            scale: self.hires_scale(first, size),
            upscaler: self.hires_upscaler(),
            steps: (self.steps != first.steps).then_some(self.steps),
            sampler: (pass_sampler != sampler).then_some(pass_sampler),
            schedule: pass_schedule.filter(|s| Some(*s) != schedule),
            guidance: (self.guidance != first.guidance).then_some(self.guidance),
            prompt: (self.prompt != first.prompt).then_some(self.prompt.as_str()),
            negative_prompt: negative.filter(|n| Some(*n) != first.negative_prompt.as_deref()),
        };
        ImageParameters { strength: Some(self.strength), hires: Some(hires), ..first.text_of(i) }
    }
}

impl ImageParams {
    /// Picture `i`'s parameters text as this pass's own settings say them, A1111's keys; the
    /// hires keys, a refiner and the model's hashes (which the render that writes the text
    /// knows) are left to whoever knows them.
    pub(super) fn text_of(&self, i: usize) -> ImageParameters<'_> {
        ImageParameters {
            prompt: &self.prompt,
            negative_prompt: self.negative_prompt.as_deref(),
            steps: self.steps,
            sampler: sampler_label(&self.scheduler),
            schedule: self.schedule.map(|s| s.label()),
            guidance: self.guidance,
            seed: self.seed.wrapping_add(i as u64),
            width: self.width,
            height: self.height,
            model: &self.model,
            strength: self.strength,
            rng: self.noise.label(),
            clip_skip: self.clip_skip,
            hires: None,
            hashes: None,
            refiner: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_reads_as_the_shortest_scale_that_makes_it_as_a1111_cuts_it() {
        assert_eq!(scale_between((64, 64), (96, 96)), HiresScale::By(1.5));
        assert_eq!(scale_between((64, 64), (128, 128)), HiresScale::By(2.0));
        // int(64 × 1.3) is 83: 1.3, not 83/64.
        assert_eq!(scale_between((64, 64), (83, 83)), HiresScale::By(1.3));
        assert_eq!(scale_between((100, 64), (130, 83)), HiresScale::By(1.3));
        // No one factor makes both sides: the size itself.
        assert_eq!(scale_between((64, 64), (128, 96)), HiresScale::To(128, 96));
    }
}

//! `--refine SPEC` (with `--refine-strength`, `--refine-steps`, `--refine-schedule`,
//! `--refine-method`, `--refine-from`, `--refine-model`): the
//! command line's words for the `image` kind's second sampling pass
//! (`reelbox::kinds::image::RefineRequest`, A1111's "hires fix"): SPEC is how each picture
//! is scaled first, in `--resize`'s words (`1.5x`, `1024x768`, `1mp`, `resize_arg.rs`); or
//! `--refine-switch-at-step K`, a base → refiner split, the second pass going on from the
//! first's leftover noise at step K (with `--refine-model`, `--refine-steps`,
//! `--refine-schedule`, and `--refine-continue run` for A1111's one run). Only the shape is read here; the ranges are the daemon's to check,
//! as for any client.

use clap::{ArgGroup, Args};
use reelbox::kinds::image::RefineRequest;
use reelbox::kinds::resize::ResizeRequest;
use reelbox::pipelines::diffusion::samplers::Schedule;

use super::resize_arg::parse_spec;

/// The second-pass flags, flattened into `reelbox image`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("second_pass").args(["refine", "refine_switch_at_step"])))]
pub struct RefineArgs {
    /// Sample each picture a second time, scaled first (the hires fix): `1.5x` (a factor),
    /// `1024x768` (a size; 0 keeps the shape) or `1mp` (about that many megapixels); `1x`
    /// keeps the size.
    #[arg(long, value_name = "SPEC", value_parser = parse_spec, requires = "refine_strength")]
    pub refine: Option<ResizeRequest>,
    /// How much of each scaled picture the second pass repaints: more than 0, at most 1.
    #[arg(long, value_name = "STRENGTH", requires = "refine")]
    pub refine_strength: Option<f64>,
    /// A base → refiner split instead: the first pass stops before step K of its schedule
    /// and the second (on --refine-model, else the first pass's model) goes on from its
    /// leftover noise, adding none (ComfyUI's KSamplerAdvanced pair, A1111's refiner).
    #[arg(long, value_name = "K", conflicts_with_all = ["refine", "refine_strength", "refine_method", "refine_from"])]
    pub refine_switch_at_step: Option<u32>,
    /// How the split's second pass goes on: `leftover` (the default: a sampler run of its own
    /// from the leftover noise, as ComfyUI's second KSamplerAdvanced) or `run` (the first
    /// pass's run goes on, its sampler's history and step noise carried, as A1111's refiner).
    #[arg(long, value_name = "HOW", value_parser = ["leftover", "run"], requires = "refine_switch_at_step")]
    pub refine_continue: Option<String>,
    /// Steps of the second pass's schedule (default: the first pass's).
    #[arg(long, value_name = "N", requires = "second_pass")]
    pub refine_steps: Option<u32>,
    /// The schedule the second pass samples over, as --schedule names one (default: the
    /// first pass's): normal, karras, exponential, sgm_uniform or simple, or none (the second
    /// pass's sampler's own timesteps, as A1111's hires DDIM samples).
    #[arg(long, value_name = "SCHEDULE", value_parser = refine_schedules(), requires = "second_pass")]
    pub refine_schedule: Option<String>,
    /// How `--refine` scales: nearest-exact, bilinear, area, bicubic or lanczos (the default
    /// for a picture; nearest-exact for a latent, which also takes bislerp).
    #[arg(long, value_name = "METHOD", requires = "refine")]
    pub refine_method: Option<String>,
    /// What the second pass starts from: `picture` (the default: the first pass's picture,
    /// scaled and encoded again) or `latent` (its final latent, scaled: ComfyUI's latent
    /// hires fix, A1111's "Latent" upscaler).
    #[arg(long, value_name = "FROM", requires = "refine")]
    pub refine_from: Option<String>,
    /// The installed diffusion model the second pass samples with (A1111's hires checkpoint;
    /// default: the first pass's). From the latent, only a model of the first's latent space.
    #[arg(long, value_name = "NAME", requires = "second_pass")]
    pub refine_model: Option<String>,
}

impl RefineArgs {
    /// The `refine` parameter these flags ask for, if any.
    pub fn request(&self) -> Option<RefineRequest> {
        if let Some(step) = self.refine_switch_at_step {
            return Some(RefineRequest {
                switch_at_step: Some(i64::from(step)),
                steps: self.refine_steps.map(i64::from),
                schedule: self.refine_schedule.clone(),
                model: self.refine_model.clone(),
                continues: self.refine_continue.clone(),
                ..RefineRequest::default()
            });
        }
        let spec = self.refine.as_ref()?;
        Some(RefineRequest {
            resize: Some(ResizeRequest { method: self.refine_method.clone(), ..spec.clone() }),
            strength: self.refine_strength,
            steps: self.refine_steps.map(i64::from),
            schedule: self.refine_schedule.clone(),
            from: self.refine_from.clone(),
            model: self.refine_model.clone(),
            ..RefineRequest::default()
        })
    }
}

/// What `--refine-schedule` takes: a schedule, or none.
fn refine_schedules() -> Vec<&'static str> {
    Schedule::NAMES.iter().copied().chain([reelbox::kinds::image::NO_SCHEDULE]).collect()
}

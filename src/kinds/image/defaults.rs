//! How an installed diffusion model draws when a request names no size, steps, guidance,
//! sampler or clip skip: its own (LCM and Turbo models take few steps and little or no
//! guidance), its manifest's `[tuning]` over them; what [`super::ImageRequest::resolve`] fills
//! in and `GET /api/v1/models` lists.

use crate::models::Tuning;
use crate::pipelines::diffusion::ModelInfo;
use crate::pipelines::diffusion::samplers::{SampleAs, SchedulerChoice, SchedulerKind};

/// How a request naming no size, steps, guidance, sampler or clip skip draws an installed diffusion model, as
/// [`super::ImageRequest::resolve`] fills them in: `GET /api/v1/models` lists it, so a client (the
/// web studio) offers a model the size it was trained at (1024 for SDXL).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawingDefaults {
    /// The square side the model was trained at.
    pub side: u32,
    pub steps: u32,
    pub guidance: f32,
    /// The sampler's request name (`dpmpp_2m_karras`).
    pub scheduler: &'static str,
    /// The clip skip it reads prompts at, and the deepest it reads them at (its own where its
    /// text encoder gives that layer only; none where its depth is not known).
    pub clip_skip: u32,
    pub max_clip_skip: Option<u32>,
    /// Its text encoders take textual-inversion embeddings (`ModelInfo::takes_embeddings`).
    pub takes_embeddings: bool,
}

/// [`DrawingDefaults`] of an installed diffusion model whose configs read as `info`, with
/// its manifest's `tuning` ([`crate::models::Catalog::tuning_of`]).
pub fn drawing_defaults(info: &ModelInfo, tuning: Option<Tuning>) -> Option<DrawingDefaults> {
    let (steps, guidance, scheduler) = model_defaults(info, tuning);
    let steps = u32::try_from(steps).ok()?;
    Some(DrawingDefaults {
        side: info.native_size,
        steps,
        guidance: guidance as f32,
        scheduler: scheduler.name(),
        clip_skip: info.family.own_clip_skip(),
        max_clip_skip: info.max_clip_skip(),
        takes_embeddings: info.takes_embeddings,
    })
}

/// The steps, guidance and scheduler a request naming none uses: the model's own (LCM and
/// Turbo models take few steps), its manifest's `[tuning]` steps and guidance over them.
pub(super) fn model_defaults(info: &ModelInfo, tuning: Option<Tuning>) -> (i64, f64, SchedulerChoice) {
    let (steps, guidance, scheduler) = own_defaults(info);
    match tuning {
        Some(t) => (i64::from(t.steps), f64::from(t.guidance), scheduler),
        None => (steps, guidance, scheduler),
    }
}

fn own_defaults(info: &ModelInfo) -> (i64, f64, SchedulerChoice) {
    let fallback = SchedulerChoice {
        kind: SchedulerKind::DpmSolverMultistep,
        karras: true,
        schedule: None,
        sample_as: SampleAs::Comfyui,
    };
    let own = info.default_scheduler;
    if own.is_some_and(|c| c.kind == SchedulerKind::Lcm) {
        let guidance = if info.time_cond_proj_dim.is_some() { 8.5 } else { 1.0 };
        return (4, guidance, own.unwrap_or(fallback));
    }
    if info.name.to_ascii_lowercase().contains("turbo") {
        return (
            1,
            0.0,
            own.unwrap_or(SchedulerChoice {
                kind: SchedulerKind::Euler,
                karras: false,
                schedule: None,
                sample_as: SampleAs::Comfyui,
            }),
        );
    }
    (25, 7.0, own.unwrap_or(fallback))
}

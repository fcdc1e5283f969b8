//! A base → refiner split (ComfyUI's pair of KSamplerAdvanced with leftover noise, A1111's
//! refiner): one schedule shared by two passes. The first pass runs the schedule's steps
//! before the switch and hands its latents on with their leftover noise (the `generate` stage
//! keeps them as `leftover.npy`, and no picture); the `refine` stage goes on from that step of
//! the same schedule with no noise added (`latent`), on its own model or the first's, with its
//! own prompts and sampler where it names them. [`Switch`] is where, as a job stores it;
//! [`asked`] reads the request's `refine.switch_at_step` (or A1111's share, `refine.switch_at`)
//! and refuses beside it what a split has no room for. How the second pass goes on is
//! [`Continue`]'s: a run of its own from the leftover noise (ComfyUI's), or the first pass's
//! one sampler run going on (A1111's, `carry`), which [`continues`] checks.

use serde::{Deserialize, Serialize};

use super::ImageParams;
use super::refine::{Refine, RefineRequest};
use crate::kinds::ParamError;
use crate::pipelines::diffusion::ModelInfo;
use crate::pipelines::diffusion::output::{ImageParameters, Refiner};
use crate::pipelines::diffusion::samplers::{self, SchedulerChoice, SchedulerKind, Span, StepsMode};

/// Where a split's first pass hands on, as a job stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// The step of the schedule the first pass stops before and the second starts at.
    pub step: u32,
    /// The A1111 `refiner_switch_at` it was worked out from, which the pictures' text writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<f64>,
    /// How the second pass goes on (stored jobs from before it: a run of its own).
    #[serde(default, rename = "continue", skip_serializing_if = "Continue::is_leftover")]
    pub continues: Continue,
}

/// How a split's second pass goes on from the first: a request's `refine.continue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Continue {
    /// A sampler run of its own from the leftover noise, as ComfyUI's second KSamplerAdvanced
    /// goes on: no history of the first's steps, its step noise from its own seed's stream.
    #[default]
    Leftover,
    /// The first pass's sampler run goes on on the second model, as A1111's refiner swaps the
    /// model inside one run: its history and where its noise stood carried over (`carry`).
    Run,
}

impl Continue {
    /// The names a request gives them in.
    pub const NAMES: [&'static str; 2] = ["leftover", "run"];

    fn is_leftover(&self) -> bool {
        *self == Continue::Leftover
    }
}

/// How a request asks for the switch: at a step, or at A1111's share of the noise.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asked {
    Step(i64),
    Share(f64),
}

/// The switch `req` asks for, if any; what a split cannot take beside it (a picture to start
/// from, a scale, an upscale model, a strength, a steps mode: it goes on from the first pass's
/// latent as it is, on the same schedule) refused naming its field.
pub(super) fn asked(req: &RefineRequest) -> Result<Option<Asked>, ParamError> {
    let asked = match (req.switch_at_step, req.switch_at) {
        (None, None) if req.continues.is_some() => {
            return Err(ParamError::new("refine.continue", "goes with a split only: give switch_at_step or switch_at"));
        }
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ParamError::new("refine.switch_at", "give switch_at_step or switch_at, not both"));
        }
        (Some(step), None) => Asked::Step(step),
        (None, Some(share)) if share.is_finite() && (0.0..=1.0).contains(&share) => Asked::Share(share),
        (None, Some(share)) => return Err(ParamError::new("refine.switch_at", format!("must be 0 to 1, got {share}"))),
    };
    let given = [
        ("from", req.from.as_deref().is_some_and(|f| f != "latent")),
        ("resize", req.resize.is_some()),
        ("upscale_model", req.upscale_model.is_some()),
        ("strength", req.strength.is_some()),
        ("steps_mode", req.steps_mode.is_some()),
    ];

    if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
        return Err(ParamError::new(
            format!("refine.{field}"),
            "a split goes on from the first pass's latent as it stopped, its leftover noise at its size, on the \
             same schedule: leave it out, or leave out switch_at_step for a second pass over the first's result",
        ));
    }
    Ok(Some(asked))
}

/// The schedule `first`'s pass (of model `info`) runs over, as its sampler builds it; one a
/// split `asked` cannot go on over refused naming the switch.
pub(super) fn first_span(asked: Asked, first: &ImageParams, info: &ModelInfo) -> Result<Span, ParamError> {
    let choice = first_choice(first)?;
    let strength = if first.init_image.is_some() { first.strength.unwrap_or(1.0) } else { 1.0 };
    // LCM's img2img samples a schedule of its own, shortened by the strength (the schedule
    // mode's, diffusers' LCM img2img), while the second pass goes on over a whole one: its
    // steps would be another LCM schedule's than the first's.
    if choice.kind == SchedulerKind::Lcm && strength < 1.0 && first.steps_mode == StepsMode::Schedule {
        return Err(ParamError::new(
            asked.field(),
            "an LCM first pass from init_image samples LCM's img2img schedule, shortened by its strength, which a \
             split's second pass cannot go on over: split an LCM run from noise (leave out init_image), or leave \
             out the switch for a second pass over the first's result",
        ));
    }
    samplers::build_span(choice, &info.scheduler_config, first.steps as usize, strength, first.steps_mode)
        .map(|(_, span)| span)
        .map_err(|e| ParamError::new(asked.field(), e.to_string()))
}

fn first_choice(first: &ImageParams) -> Result<SchedulerChoice, ParamError> {
    super::sampling::sampler_choice(first).map_err(|e| ParamError::new("scheduler", e.to_string()))
}

impl Asked {
    /// The request's field it was asked by.
    fn field(self) -> &'static str {
        match self {
            Asked::Step(_) => "refine.switch_at_step",
            Asked::Share(_) => "refine.switch_at",
        }
    }

    /// The step it switches at on `first`'s schedule `span` (its model's `info`), the second
    /// pass's schedule being `steps` long: after the first pass's first step and before the
    /// end of either schedule, so each model runs a step at least.
    pub(super) fn resolve(
        self,
        first: &ImageParams,
        info: &ModelInfo,
        span: Span,
        steps: u32,
    ) -> Result<Switch, ParamError> {
        let last = span.schedule.min(steps as usize);
        let (step, at, field) = match self {
            Asked::Step(step) => (usize::try_from(step).ok(), None, "refine.switch_at_step"),
            Asked::Share(share) => {
                let choice = first_choice(first)?;
                let step = samplers::a1111_switch_step(choice, &info.scheduler_config, span.schedule, share)
                    .map_err(|e| ParamError::new("refine.switch_at", e.to_string()))?;
                (step.or(Some(span.schedule)), Some(share), "refine.switch_at")
            }
        };
        match step {
            Some(step) if step > span.start && step < last => {
                Ok(Switch { step: step as u32, at, continues: Continue::Leftover })
            }
            step => Err(ParamError::new(
                field,
                format!(
                    "{}: the first pass runs steps {} to {} of its {}-step schedule and the second pass the rest of \
                     its {steps}, so a switch must fall from step {} to {}",
                    step.map_or("not a step".to_string(), |s| format!("switches at step {s}")),
                    span.start,
                    span.schedule.saturating_sub(1),
                    span.schedule,
                    span.start + 1,
                    last.saturating_sub(1)
                ),
            )),
        }
    }
}

/// How a split asked to go on (`refine.continue`, beside `refine.seed`) goes on ([`Continue`]); one going on with the first pass's run takes its
/// sampler as it is (the `choice` it resolved to, over the first pass's schedule of `span`
/// and its seeds' noise): a `refine.scheduler`, `schedule`, `steps` or `seed` of its own
/// refused naming it. A1111's refiner keeps the one sampler.
pub(super) fn continues(
    (asked, seed): (Option<&str>, Option<i64>),
    first: &ImageParams,
    choice: SchedulerChoice,
    steps: u32,
    span: Span,
) -> Result<Continue, ParamError> {
    let continues = match asked {
        None | Some("leftover") => return Ok(Continue::Leftover),
        Some("run") => Continue::Run,
        Some(other) => {
            let names = Continue::NAMES.join(" or ");
            return Err(ParamError::new("refine.continue", format!("{other:?} is not one of {names}")));
        }
    };
    let own = first_choice(first)?;
    let why = if choice.name() != own.name() {
        Some(("scheduler", format!("the first pass samples with {}", own.name())))
    } else if choice.schedule != own.schedule {
        let name = own.schedule.map_or("none", |s| s.name());
        Some(("schedule", format!("the first pass samples over schedule {name}")))
    } else if steps as usize != span.schedule {
        Some(("steps", format!("the first pass's schedule is {} steps long", span.schedule)))
    } else if seed.is_some() {
        Some(("seed", "its step noise draws on from the first pass's seeds".to_string()))
    } else {
        None
    };
    match why {
        Some((field, why)) => Err(ParamError::new(
            format!("refine.{field}"),
            format!(
                "a split with \"continue\": \"run\" goes on with the first pass's one sampler run, and {why}: leave \
                 it out, or go on from the leftover noise with a run of its own (\"continue\": \"leftover\")"
            ),
        )),
        None => Ok(continues),
    }
}

impl Switch {
    /// The share of the schedule's steps before it, as A1111's `Refiner switch at` writes it
    /// (its own `refiner_switch_at` where it came from one).
    fn share(&self, steps: u32) -> f64 {
        self.at.unwrap_or(f64::from(self.step) / f64::from(steps.max(1)))
    }

    /// The steps run, strength and steps mode of the second pass, of a `steps`-step schedule:
    /// the whole schedule from the switch (`Span::run_request`, ComfyUI's `start_at_step`).
    pub(super) fn second_pass(&self, steps: u32) -> (u32, f64, StepsMode) {
        let (run, strength) = Span { schedule: steps as usize, start: self.step as usize }.run_request();
        (u32::try_from(run).unwrap_or(steps), strength, StepsMode::Run)
    }
}

impl Refine {
    /// Picture `i`'s parameters text after a split: `first`'s settings, and its refiner as
    /// A1111 writes one (`Refiner`, `Refiner switch at`) rather than a hires fix's keys.
    pub(super) fn described_split<'a>(
        &'a self,
        first: &'a ImageParams,
        switch: Switch,
        i: usize,
    ) -> ImageParameters<'a> {
        ImageParameters {
            strength: first.init_image.as_ref().and(first.strength),
            refiner: Some(Refiner { model: self.model_of(first), hash: None, switch_at: switch.share(self.steps) }),
            ..first.text_of(i)
        }
    }
}

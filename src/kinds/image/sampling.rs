//! How a pass samples, as a request names it: the scheduler and the ComfyUI schedule it runs
//! over ([`scheduler_choice`]), how its steps count ([`steps_mode`]) and whether the model's
//! scheduler takes them ([`check_schedule`]). One reading for both passes, the first's fields
//! (`scheduler`, `schedule`) and the second's (`refine.scheduler`, `refine.schedule`), so a
//! second pass combines them as the first does.

use crate::kinds::ParamError;
use crate::pipelines::diffusion::ModelInfo;
use crate::pipelines::diffusion::samplers::{self, Schedule, SchedulerChoice, StepsMode};

/// The scheduler a pass samples with, carrying the ComfyUI schedule it runs over: the
/// `scheduler` and `schedule` the request names (`asked`), else the pass's `defaults` (a first
/// pass: its preset's or model's scheduler and no schedule; a second pass: the first pass's
/// own). Refusals name `fields` (the scheduler's, the schedule's).
///
/// A schedule asked for replaces the Karras σs of a default scheduler the request did not
/// name (`dpmpp_2m_karras` → `dpmpp_2m` over it); a `_karras` name it did give is refused with
/// it, naming the schedule. An inherited schedule the named scheduler cannot take is refused
/// naming the scheduler. [`NO_SCHEDULE`] asks for none: the scheduler's own timesteps, what a
/// second pass whose sampler reads no schedule (A1111's DDIM and PLMS) samples over rather than
/// the first pass's.
pub(super) fn scheduler_choice(
    (scheduler, schedule): (Option<&str>, Option<&str>),
    (default_scheduler, default_schedule): (&str, Option<Schedule>),
    (scheduler_field, schedule_field): (&str, &str),
) -> Result<SchedulerChoice, ParamError> {
    let choice = SchedulerChoice::parse(scheduler.unwrap_or(default_scheduler))
        .map_err(|e| ParamError::new(scheduler_field, e.to_string()))?;
    if schedule == Some(NO_SCHEDULE) {
        return Ok(SchedulerChoice { schedule: None, ..choice });
    }
    let names: Vec<&str> = Schedule::NAMES.into_iter().chain([NO_SCHEDULE]).collect();
    let asked = named(schedule_field, schedule, Schedule::parse, &names)?;
    let choice = if scheduler.is_none() && asked.is_some() { choice.without_karras() } else { choice };
    let field = if asked.is_some() { schedule_field } else { scheduler_field };
    choice.with_schedule(asked.or(default_schedule)).map_err(|e| ParamError::new(field, e.to_string()))
}

/// The `schedule` that names none: the pass samples over its scheduler's own timesteps (a
/// `_karras` name's own σs), as a first pass naming no schedule does; a second pass's way of
/// not taking the first pass's.
pub const NO_SCHEDULE: &str = "none";

/// The value a request's `field` names among `names`, if it names one.
pub(super) fn named<T>(
    field: &str,
    name: Option<&str>,
    parse: fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<Option<T>, ParamError> {
    name.map(|n| parse(n).ok_or_else(|| ParamError::new(field, format!("{n:?} is not one of {}", names.join(", ")))))
        .transpose()
}

/// The [`StepsMode`] a request's `field` names (none: [`StepsMode::Schedule`]).
pub(super) fn steps_mode(field: &str, name: Option<&str>) -> Result<StepsMode, ParamError> {
    match name {
        None => Ok(StepsMode::Schedule),
        Some(name) => StepsMode::parse(name).ok_or_else(|| {
            ParamError::new(
                field,
                format!(
                    "{name:?} is neither \"schedule\" (steps is the schedule's, of which strength runs a share) \
                     nor \"run\" (steps is how many run, as ComfyUI's KSampler counts them)"
                ),
            )
        }),
    }
}

/// Whether the scheduler `choice` of a model `info` takes `steps` at `strength` counted by
/// `mode`, refusing at `fields` (the steps', the scheduler's) what it does not.
pub(super) fn check_schedule(
    choice: SchedulerChoice,
    info: &ModelInfo,
    steps: u32,
    strength: f64,
    mode: StepsMode,
    (steps_field, choice_field): (&str, &str),
) -> Result<(), ParamError> {
    samplers::build_span(choice, &info.scheduler_config, steps as usize, strength, mode).map(|_| ()).map_err(
        |e| match e {
            samplers::SchedulerError::Steps(m) => ParamError::new(steps_field, m),
            other => ParamError::new(choice_field, other.to_string()),
        },
    )
}

/// A second pass's own schedule as a job stores it: a ComfyUI schedule's name, or `none`.
pub(super) mod pass_schedule {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::NO_SCHEDULE;
    use crate::pipelines::diffusion::samplers::Schedule;

    pub fn serialize<S: Serializer>(v: &Option<Option<Schedule>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.flatten().map_or(NO_SCHEDULE, Schedule::name))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Schedule>>, D::Error> {
        let name = String::deserialize(d)?;
        if name == NO_SCHEDULE {
            return Ok(Some(None));
        }
        Schedule::parse(&name).map(|s| Some(Some(s))).ok_or_else(|| D::Error::custom(format!("no schedule {name:?}")))
    }
}

/// The sampler a pass samples with, as its stage builds it and a split works its switch out
/// on: its scheduler over its schedule, by its `sample_as` arithmetic.
pub(super) fn sampler_choice(params: &super::ImageParams) -> Result<SchedulerChoice, samplers::SchedulerError> {
    Ok(SchedulerChoice::parse(&params.scheduler)?.with_schedule(params.schedule)?.sampled_as(params.sample_as))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: (&str, &str) = ("refine.scheduler", "refine.schedule");

    /// What a second pass samples with, `scheduler schedule`, or the field its refusal names.
    fn chosen(asked: (Option<&str>, Option<&str>), default: (&str, Option<Schedule>)) -> String {
        match scheduler_choice(asked, default, FIELDS) {
            Ok(c) => format!("{} {}", c.name(), c.schedule.map_or("none", Schedule::name)),
            Err(e) => format!("refused at {}", e.field),
        }
    }

    #[test]
    fn a_second_pass_takes_its_own_schedule_or_the_first_passs() {
        let karras = Some(Schedule::Karras);
        assert_eq!(chosen((None, None), ("euler", karras)), "euler karras");
        assert_eq!(chosen((None, Some("normal")), ("euler", karras)), "euler normal");
        assert_eq!(chosen((Some("euler_a"), Some("exponential")), ("euler", None)), "euler_a exponential");
        // A default's Karras σs give way to the schedule asked for, as on the first pass.
        assert_eq!(chosen((None, Some("normal")), ("dpmpp_2m_karras", None)), "dpmpp_2m normal");
        assert_eq!(chosen((Some("dpmpp_2m_karras"), Some("normal")), ("euler", None)), "refused at refine.schedule");
        assert_eq!(chosen((None, Some("beta")), ("euler", None)), "refused at refine.schedule");
        assert_eq!(chosen((Some("lcm"), None), ("euler", karras)), "refused at refine.scheduler");
        // "none": the scheduler's own timesteps, not the first pass's schedule.
        assert_eq!(chosen((Some("ddim"), Some("none")), ("euler", karras)), "ddim none");
        assert_eq!(chosen((Some("pndm"), Some("none")), ("euler", karras)), "pndm none");
        assert_eq!(chosen((None, Some("none")), ("dpmpp_2m_karras", None)), "dpmpp_2m_karras none");
    }
}

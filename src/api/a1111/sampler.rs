//! A1111's samplers and schedules as reelbox runs them: the one place an A1111 `sampler_name`
//! and `scheduler` become the native `scheduler` ([`native`]), and the lists
//! `/sdapi/v1/samplers` and `/sdapi/v1/schedulers` answer. A1111 also takes a schedule on the
//! end of the sampler's name (`DPM++ 2M Karras`, its older names) and a sampler's lower-case
//! name or alias (`euler a`, `k_euler_a`), as its `samplers_map` does.

use serde::Serialize;
use utoipa::ToSchema;

use super::error::A1111Error;

/// A sampler A1111 names that reelbox runs.
struct Sampler {
    name: &'static str,
    aliases: &'static [&'static str],
    /// The native `scheduler` it is.
    native: &'static str,
    /// Whether it samples over a schedule, as A1111's k-diffusion samplers do: its schedules
    /// run as the native `schedule` (ComfyUI's, the same σs); the others only "Automatic".
    scheduled: bool,
    /// Whether A1111 runs it over its own evenly spaced timesteps (`sd_samplers_timesteps`:
    /// DDIM, PLMS), which read no schedule: any schedule A1111 knows is taken and changes
    /// nothing, as there (SillyTavern sends DDIM with Normal until its user picks others).
    timesteps: bool,
    /// The schedule "Automatic" is for it (A1111's sampler option; else Uniform, k-diffusion's
    /// own, which is ComfyUI's `normal`).
    automatic: &'static str,
}

/// The samplers, in A1111's order. A1111's "DPM++ 2M" takes the Karras schedule when asked
/// for "Automatic" (its sampler options say `scheduler: karras`).
const SAMPLERS: [Sampler; 6] = [
    Sampler {
        name: "DPM++ 2M",
        aliases: &["k_dpmpp_2m"],
        native: "dpmpp_2m",
        scheduled: true,
        timesteps: false,
        automatic: "karras",
    },
    Sampler {
        name: "Euler a",
        aliases: &["k_euler_a", "k_euler_ancestral"],
        native: "euler_a",
        scheduled: true,
        timesteps: false,
        automatic: "normal",
    },
    Sampler {
        name: "Euler",
        aliases: &["k_euler"],
        native: "euler",
        scheduled: true,
        timesteps: false,
        automatic: "normal",
    },
    Sampler { name: "LCM", aliases: &["k_lcm"], native: "lcm", scheduled: false, timesteps: false, automatic: "" },
    Sampler { name: "DDIM", aliases: &["ddim"], native: "ddim", scheduled: false, timesteps: true, automatic: "" },
    Sampler { name: "PLMS", aliases: &["plms"], native: "pndm", scheduled: false, timesteps: true, automatic: "" },
];

/// A schedule A1111 knows.
struct ScheduleRow {
    name: &'static str,
    label: &'static str,
    aliases: &'static [&'static str],
    default_rho: f64,
    /// The native `schedule` it runs as; none: not run (refused naming `scheduler`).
    native: Option<&'static str>,
}

/// Every schedule A1111 knows: known all so that a sampler name ending in one is read as
/// A1111 reads it. "Automatic" is the sampler's own.
const SCHEDULES: [ScheduleRow; 12] = [
    ScheduleRow { name: "automatic", label: "Automatic", aliases: &[], default_rho: -1.0, native: None },
    ScheduleRow { name: "uniform", label: "Uniform", aliases: &[], default_rho: -1.0, native: Some("normal") },
    ScheduleRow { name: "karras", label: "Karras", aliases: &[], default_rho: 7.0, native: Some("karras") },
    ScheduleRow {
        name: "exponential",
        label: "Exponential",
        aliases: &[],
        default_rho: -1.0,
        native: Some("exponential"),
    },
    ScheduleRow { name: "polyexponential", label: "Polyexponential", aliases: &[], default_rho: 1.0, native: None },
    ScheduleRow {
        name: "sgm_uniform",
        label: "SGM Uniform",
        aliases: &["SGMUniform"],
        default_rho: -1.0,
        native: Some("sgm_uniform"),
    },
    ScheduleRow { name: "kl_optimal", label: "KL Optimal", aliases: &[], default_rho: -1.0, native: None },
    ScheduleRow { name: "align_your_steps", label: "Align Your Steps", aliases: &[], default_rho: -1.0, native: None },
    ScheduleRow { name: "simple", label: "Simple", aliases: &[], default_rho: -1.0, native: Some("simple") },
    ScheduleRow { name: "normal", label: "Normal", aliases: &[], default_rho: -1.0, native: Some("normal") },
    ScheduleRow { name: "ddim", label: "DDIM", aliases: &[], default_rho: -1.0, native: None },
    ScheduleRow { name: "beta", label: "Beta", aliases: &[], default_rho: -1.0, native: None },
];

/// Whether reelbox runs the schedule at `index` of [`SCHEDULES`].
fn runs(index: usize) -> bool {
    index == 0 || SCHEDULES[index].native.is_some()
}

/// What a request's sampler and schedule run as: the native scheduler and schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampling {
    /// The native `scheduler`; `None`: the model's own (the request named neither).
    pub scheduler: Option<&'static str>,
    /// The native `schedule` (ComfyUI's σs) a k-diffusion sampler runs over.
    pub schedule: Option<&'static str>,
}

/// The names a request's sampler and schedule fields go by in its refusals.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub sampler: &'static str,
    pub schedule: &'static str,
}

/// The first pass's fields.
pub const FIRST_PASS: Fields = Fields { sampler: "sampler_name", schedule: "scheduler" };

/// The schedule named `text` (its name, label or alias), as its index in [`SCHEDULES`].
fn schedule_index(text: &str) -> Option<usize> {
    let t = text.trim();
    SCHEDULES.iter().position(|row| {
        t.eq_ignore_ascii_case(row.name)
            || t.eq_ignore_ascii_case(row.label)
            || row.aliases.iter().any(|a| t.eq_ignore_ascii_case(a))
    })
}

/// The sampler named `text` (its name, or an alias, in any case).
fn sampler_named(text: &str) -> Option<&'static Sampler> {
    let t = text.trim();
    SAMPLERS.iter().find(|s| t.eq_ignore_ascii_case(s.name) || s.aliases.iter().any(|a| t.eq_ignore_ascii_case(a)))
}

/// A sampler's name with a schedule's label on its end split off (`DPM++ 2M Karras`); the
/// longest that fits (`SGM Uniform`, not `Uniform`).
fn split_schedule(text: &str) -> (&str, Option<usize>) {
    let t = text.trim();
    let mut found: Option<(usize, usize)> = None;
    for (i, row) in SCHEDULES.iter().enumerate() {
        for option in std::iter::once(&row.label).chain(row.aliases.iter()) {
            let cut = t.len().checked_sub(option.len() + 1);
            if let Some(cut) = cut
                && t.is_char_boundary(cut)
                && t[cut..].starts_with(' ')
                && t[cut + 1..].eq_ignore_ascii_case(option)
                && found.is_none_or(|(at, _)| cut < at)
            {
                found = Some((cut, i));
            }
        }
    }
    match found {
        Some((cut, i)) => (t[..cut].trim_end(), Some(i)),
        None => (t, None),
    }
}

/// The native scheduler an A1111 `sampler` and `schedule` run as; refused naming the field
/// (`fields`) that asks for what reelbox does not run. Neither named: the model's own.
pub fn native(sampler: Option<&str>, schedule: Option<&str>, fields: Fields) -> Result<Sampling, A1111Error> {
    let (sampler, suffix) = match sampler.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => match split_schedule(s) {
            // "DDIM" alone is a sampler, not a schedule on an empty name.
            (rest, Some(i)) if !rest.is_empty() && sampler_named(s).is_none() => (Some(rest), Some(i)),
            _ => (Some(s), None),
        },
        None => (None, None),
    };
    let named = match schedule.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(schedule_index(s).ok_or_else(|| {
            A1111Error::field(fields.schedule, format!("{s:?} is not a schedule A1111 has; {}", ran_schedules()))
        })?),
        None => None,
    };
    // As A1111 reads them, a schedule on the sampler's name wins over the field's.
    let asked = suffix.or(named);
    let found = match sampler {
        Some(name) => Some(sampler_named(name).ok_or_else(|| {
            A1111Error::field(
                fields.sampler,
                format!("{name:?} is not a sampler reelbox runs; it runs {}", sampler_names().join(", ")),
            )
        })?),
        None => None,
    };
    if let Some(s) = found.filter(|s| s.timesteps) {
        return Ok(Sampling { scheduler: Some(s.native), schedule: None });
    }
    let index = asked.unwrap_or(0);
    if !runs(index) {
        return Err(A1111Error::field(fields.schedule, format!("{:?}: {}", SCHEDULES[index].label, ran_schedules())));
    }
    // A schedule alone is A1111's default sampler's (its API's `sampler_index`, Euler).
    let found = match (found, index) {
        (None, 0) => return Ok(Sampling { scheduler: None, schedule: None }),
        (None, _) => &SAMPLERS[2],
        (Some(s), _) => s,
    };
    if !found.scheduled {
        if index != 0 {
            return Err(A1111Error::field(
                fields.schedule,
                format!("{:?} does not go with the {} sampler; use Automatic", SCHEDULES[index].label, found.name),
            ));
        }
        return Ok(Sampling { scheduler: Some(found.native), schedule: None });
    }
    let schedule = SCHEDULES[index].native.unwrap_or(found.automatic);
    Ok(Sampling { scheduler: Some(found.native), schedule: Some(schedule) })
}

fn ran_schedules() -> String {
    let labels: Vec<&str> = (0..SCHEDULES.len()).filter(|&i| runs(i)).map(|i| SCHEDULES[i].label).collect();
    format!("reelbox runs {} (with Euler, Euler a and DPM++ 2M; LCM only Automatic)", labels.join(", "))
}

/// A1111's names of the samplers reelbox runs.
pub fn sampler_names() -> Vec<&'static str> {
    SAMPLERS.iter().map(|s| s.name).collect()
}

/// The A1111 sampler and schedule a native `scheduler` and `schedule` are (for `info`); a
/// job made natively with a `_karras` name reads as its sampler with Karras.
pub fn a1111_names(native: &str, schedule: Option<&str>) -> (&'static str, &'static str) {
    let (base, karras) = match native.strip_suffix("_karras") {
        Some(base) => (base, true),
        None => (native, false),
    };
    let name = SAMPLERS.iter().find(|s| s.native == base).map_or("Euler", |s| s.name);
    let label = match (schedule, karras) {
        (_, true) => "Karras",
        (None, _) => "Automatic",
        (Some(s), _) => SCHEDULES.iter().find(|row| row.name == s).map_or("Automatic", |row| row.label),
    };
    (name, label)
}

/// One item of `GET /sdapi/v1/samplers`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Sampler)]
pub struct SamplerItem {
    pub name: String,
    pub aliases: Vec<String>,
    /// A1111's sampler options: `{"scheduler": "karras"}` for a sampler whose Automatic
    /// schedule is Karras.
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// One item of `GET /sdapi/v1/schedulers`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Schedule)]
pub struct ScheduleItem {
    pub name: String,
    pub label: String,
    pub aliases: Option<Vec<String>>,
    pub default_rho: f64,
    pub need_inner_model: bool,
}

/// The samplers reelbox runs, as `/sdapi/v1/samplers` lists them.
pub fn sampler_items() -> Vec<SamplerItem> {
    SAMPLERS
        .iter()
        .map(|s| {
            let mut options = serde_json::Map::new();
            if s.automatic == "karras" {
                options.insert("scheduler".into(), "karras".into());
            }
            SamplerItem { name: s.name.into(), aliases: s.aliases.iter().map(|a| a.to_string()).collect(), options }
        })
        .collect()
}

/// The schedules reelbox runs, as `/sdapi/v1/schedulers` lists them.
pub fn schedule_items() -> Vec<ScheduleItem> {
    (0..SCHEDULES.len())
        .filter(|&i| runs(i))
        .map(|i| {
            let row = &SCHEDULES[i];
            ScheduleItem {
                name: row.name.to_string(),
                label: row.label.to_string(),
                aliases: (!row.aliases.is_empty()).then(|| row.aliases.iter().map(|a| a.to_string()).collect()),
                default_rho: row.default_rho,
                need_inner_model: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The native scheduler and schedule `sampler` and `schedule` run as.
    fn run(sampler: Option<&str>, schedule: Option<&str>) -> (Option<&'static str>, Option<&'static str>) {
        let s = native(sampler, schedule, FIRST_PASS).expect("runs");
        (s.scheduler, s.schedule)
    }

    /// Why `sampler` and `schedule` are refused.
    fn refused(sampler: Option<&str>, schedule: Option<&str>) -> String {
        native(sampler, schedule, FIRST_PASS).expect_err("refused").detail
    }

    #[test]
    fn a1111_names_aliases_and_schedules_map_onto_native_samplers_and_schedules() {
        assert_eq!(run(None, None), (None, None));
        assert_eq!(run(Some("Euler a"), None), (Some("euler_a"), Some("normal")));
        assert_eq!(run(Some("euler a"), Some("Automatic")), (Some("euler_a"), Some("normal")));
        assert_eq!(run(Some("k_euler"), Some("karras")), (Some("euler"), Some("karras")));
        assert_eq!(run(Some("Euler a"), Some("Karras")), (Some("euler_a"), Some("karras")));
        assert_eq!(run(Some("Euler"), Some("Exponential")), (Some("euler"), Some("exponential")));
        assert_eq!(run(Some("DPM++ 2M"), None), (Some("dpmpp_2m"), Some("karras")));
        assert_eq!(run(Some("DPM++ 2M Karras"), None), (Some("dpmpp_2m"), Some("karras")));
        assert_eq!(run(Some("DPM++ 2M SGM Uniform"), None), (Some("dpmpp_2m"), Some("sgm_uniform")));
        assert_eq!(run(Some("Euler"), Some("Uniform")), (Some("euler"), Some("normal")));
        assert_eq!(run(Some("DDIM"), None), (Some("ddim"), None));
        assert_eq!(run(Some("PLMS"), Some("")), (Some("pndm"), None));
        assert_eq!(run(Some("LCM"), None), (Some("lcm"), None));
        // A1111's DDIM and PLMS read no schedule: a named one changes nothing, as there.
        assert_eq!(run(Some("DDIM"), Some("normal")), (Some("ddim"), None));
        assert_eq!(run(Some("PLMS"), Some("Beta")), (Some("pndm"), None));
        assert_eq!(run(None, Some("Karras")), (Some("euler"), Some("karras")));
    }

    #[test]
    fn what_reelbox_does_not_run_is_refused_naming_its_field() {
        assert!(refused(Some("Heun"), None).starts_with("sampler_name: \"Heun\""));
        assert!(refused(Some("Euler"), Some("Beta")).starts_with("scheduler: \"Beta\""));
        assert!(refused(Some("DPM++ 2M Align Your Steps"), None).starts_with("scheduler:"));
        assert!(refused(Some("LCM"), Some("Karras")).starts_with("scheduler:"));
        assert!(refused(Some("DDIM"), Some("sideways")).starts_with("scheduler:"));
        assert!(refused(Some("Euler"), Some("sideways")).starts_with("scheduler:"));
    }

    #[test]
    fn native_samplers_and_schedules_read_back_as_a1111_names() {
        assert_eq!(a1111_names("dpmpp_2m", Some("karras")), ("DPM++ 2M", "Karras"));
        assert_eq!(a1111_names("dpmpp_2m_karras", None), ("DPM++ 2M", "Karras"));
        assert_eq!(a1111_names("euler", Some("sgm_uniform")), ("Euler", "SGM Uniform"));
        assert_eq!(a1111_names("euler_a", Some("normal")), ("Euler a", "Normal"));
        assert_eq!(a1111_names("pndm", None), ("PLMS", "Automatic"));
    }
}

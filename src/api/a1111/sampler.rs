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
    /// The native scheduler it is, with A1111's "Automatic" schedule.
    automatic: &'static str,
    /// The native scheduler it is with the Karras schedule, where reelbox has one.
    karras: Option<&'static str>,
}

/// The samplers, in A1111's order. A1111's "DPM++ 2M" takes the Karras schedule when asked
/// for "Automatic" (its sampler options say `scheduler: karras`); the others their own.
const SAMPLERS: [Sampler; 6] = [
    Sampler {
        name: "DPM++ 2M",
        aliases: &["k_dpmpp_2m"],
        automatic: "dpmpp_2m_karras",
        karras: Some("dpmpp_2m_karras"),
    },
    Sampler { name: "Euler a", aliases: &["k_euler_a", "k_euler_ancestral"], automatic: "euler_a", karras: None },
    Sampler { name: "Euler", aliases: &["k_euler"], automatic: "euler", karras: Some("euler_karras") },
    Sampler { name: "LCM", aliases: &["k_lcm"], automatic: "lcm", karras: None },
    Sampler { name: "DDIM", aliases: &["ddim"], automatic: "ddim", karras: None },
    Sampler { name: "PLMS", aliases: &["plms"], automatic: "pndm", karras: None },
];

/// Every schedule A1111 knows: name, label, aliases and `default_rho`. Only the first two
/// are run; the rest are known so a sampler name ending in one is read as A1111 reads it,
/// and refused naming `scheduler`.
const SCHEDULES: [(&str, &str, &[&str], f64); 12] = [
    ("automatic", "Automatic", &[], -1.0),
    ("karras", "Karras", &[], 7.0),
    ("uniform", "Uniform", &[], -1.0),
    ("exponential", "Exponential", &[], -1.0),
    ("polyexponential", "Polyexponential", &[], 1.0),
    ("sgm_uniform", "SGM Uniform", &["SGMUniform"], -1.0),
    ("kl_optimal", "KL Optimal", &[], -1.0),
    ("align_your_steps", "Align Your Steps", &[], -1.0),
    ("simple", "Simple", &[], -1.0),
    ("normal", "Normal", &[], -1.0),
    ("ddim", "DDIM", &[], -1.0),
    ("beta", "Beta", &[], -1.0),
];
/// How many of [`SCHEDULES`] reelbox runs.
const RUN: usize = 2;

/// What a request's sampler and schedule run as: the native scheduler name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sampling {
    /// The native `scheduler`; `None`: the model's own (the request named neither).
    pub scheduler: Option<&'static str>,
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
    SCHEDULES.iter().position(|(name, label, aliases, _)| {
        t.eq_ignore_ascii_case(name)
            || t.eq_ignore_ascii_case(label)
            || aliases.iter().any(|a| t.eq_ignore_ascii_case(a))
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
    for (i, (_, label, aliases, _)) in SCHEDULES.iter().enumerate() {
        for option in std::iter::once(label).chain(aliases.iter()) {
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
    let index = asked.unwrap_or(0);
    if index >= RUN {
        return Err(A1111Error::field(fields.schedule, format!("{:?}: {}", SCHEDULES[index].1, ran_schedules())));
    }
    // A schedule alone is A1111's default sampler's (its API's `sampler_index`, Euler).
    let found = match (found, index) {
        (None, 0) => return Ok(Sampling { scheduler: None }),
        (None, _) => &SAMPLERS[2],
        (Some(s), _) => s,
    };
    let scheduler = match index {
        0 => found.automatic,
        _ => found.karras.ok_or_else(|| {
            A1111Error::field(
                fields.schedule,
                format!("\"Karras\" does not go with the {} sampler; use Automatic", found.name),
            )
        })?,
    };
    Ok(Sampling { scheduler: Some(scheduler) })
}

fn ran_schedules() -> String {
    let labels: Vec<&str> = SCHEDULES[..RUN].iter().map(|s| s.1).collect();
    format!("reelbox runs {} (Karras with DPM++ 2M and Euler)", labels.join(" and "))
}

/// A1111's names of the samplers reelbox runs.
pub fn sampler_names() -> Vec<&'static str> {
    SAMPLERS.iter().map(|s| s.name).collect()
}

/// The A1111 sampler and schedule a native scheduler name is (for `info`).
pub fn a1111_names(native: &str) -> (&'static str, &'static str) {
    for s in &SAMPLERS {
        if s.automatic == native {
            return (s.name, SCHEDULES[0].1);
        }
        if s.karras == Some(native) {
            return (s.name, SCHEDULES[1].1);
        }
    }
    ("Euler", SCHEDULES[0].1)
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
            if s.automatic.ends_with("_karras") {
                options.insert("scheduler".into(), "karras".into());
            }
            SamplerItem { name: s.name.into(), aliases: s.aliases.iter().map(|a| a.to_string()).collect(), options }
        })
        .collect()
}

/// The schedules reelbox runs, as `/sdapi/v1/schedulers` lists them.
pub fn schedule_items() -> Vec<ScheduleItem> {
    SCHEDULES[..RUN]
        .iter()
        .map(|(name, label, aliases, rho)| ScheduleItem {
            name: name.to_string(),
            label: label.to_string(),
            aliases: (!aliases.is_empty()).then(|| aliases.iter().map(|a| a.to_string()).collect()),
            default_rho: *rho,
            need_inner_model: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The native scheduler `sampler` and `schedule` run as.
    fn run(sampler: Option<&str>, schedule: Option<&str>) -> Option<&'static str> {
        native(sampler, schedule, FIRST_PASS).expect("runs").scheduler
    }

    /// Why `sampler` and `schedule` are refused.
    fn refused(sampler: Option<&str>, schedule: Option<&str>) -> String {
        native(sampler, schedule, FIRST_PASS).expect_err("refused").detail
    }

    #[test]
    fn a1111_names_aliases_and_schedules_map_onto_native_schedulers() {
        assert_eq!(run(None, None), None);
        assert_eq!(run(Some("Euler a"), None), Some("euler_a"));
        assert_eq!(run(Some("euler a"), Some("Automatic")), Some("euler_a"));
        assert_eq!(run(Some("k_euler"), Some("karras")), Some("euler_karras"));
        assert_eq!(run(Some("DPM++ 2M"), None), Some("dpmpp_2m_karras"));
        assert_eq!(run(Some("DPM++ 2M Karras"), None), Some("dpmpp_2m_karras"));
        assert_eq!(run(Some("DDIM"), None), Some("ddim"));
        assert_eq!(run(Some("PLMS"), Some("")), Some("pndm"));
        assert_eq!(run(Some("LCM"), None), Some("lcm"));
        assert_eq!(run(None, Some("Karras")), Some("euler_karras"));
    }

    #[test]
    fn what_reelbox_does_not_run_is_refused_naming_its_field() {
        assert!(refused(Some("Heun"), None).starts_with("sampler_name: \"Heun\""));
        assert!(refused(Some("Euler"), Some("Exponential")).starts_with("scheduler: \"Exponential\""));
        assert!(refused(Some("DPM++ 2M SGM Uniform"), None).starts_with("scheduler:"));
        assert!(refused(Some("Euler a"), Some("Karras")).starts_with("scheduler:"));
        assert!(refused(Some("Euler"), Some("sideways")).starts_with("scheduler:"));
    }

    #[test]
    fn native_schedulers_read_back_as_a1111_names() {
        assert_eq!(a1111_names("dpmpp_2m_karras"), ("DPM++ 2M", "Automatic"));
        assert_eq!(a1111_names("euler_karras"), ("Euler", "Karras"));
        assert_eq!(a1111_names("pndm"), ("PLMS", "Automatic"));
    }
}

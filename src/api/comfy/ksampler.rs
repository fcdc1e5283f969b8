//! ComfyUI's sampler nodes, KSampler and KSamplerAdvanced, described and read once: the
//! specs `/object_info` prints and validation reads, and the settings either gives the
//! `image` kind ([`SamplerSettings`]) wherever a sampler stands (a first pass, the hires
//! fix's second, an inpainting's masked latent).
//!
//! A KSamplerAdvanced runs as the native job does while it samples its schedule to the end,
//! as ComfyUI's `common_ksampler` cuts it (`sigmas[start_at_step:end_at_step + 1]`): from
//! step 0 it is the KSampler at denoise 1; from a `start_at_step` s on a picture's latent, the
//! schedule of `steps` from its step s (`samplers::Span::run_request`). A pair that splits one
//! schedule (`split`: the first stops with its leftover noise, the second goes on from it
//! adding none) is the job's `refine.switch_at_step`. What goes past that — stopping before
//! the last step otherwise, sampling a latent without adding noise otherwise — is refused at
//! the input asking.

use serde_json::Value;

use super::compile::{fold_seed, input_error};
use super::literals::{float_value, int_value, text, wire};
use super::nodes::{InputKind, InputSpec, MAX_SEED, NodeSpec, SAMPLERS, SCHEDULERS, SpecContext, int, link};
use super::nodes::{float, reelbox_scheduler};
use super::validate::{PromptError, ValidGraph};
use crate::pipelines::diffusion::samplers::Span;

/// ComfyUI's plain sampler.
pub const KSAMPLER: &str = "KSampler";
/// ComfyUI's sampler with a step range, a noise switch and leftover noise.
pub const ADVANCED: &str = "KSamplerAdvanced";
/// The sampler nodes reelbox runs: wherever one is taken, so is the other.
pub const CLASS_TYPES: [&str; 2] = [KSAMPLER, ADVANCED];

/// ComfyUI's largest `start_at_step`/`end_at_step`, and `end_at_step`'s default: to the end.
pub(super) const LAST_STEP: i128 = 10_000;

/// How a sampler's `steps` count from a picture or a latent: all of them run, over the tail
/// of a longer schedule (`samplers::StepsMode::Run`), not the share of them A1111's rule runs.
pub(super) const STEPS_RUN: &str = "run";

/// A choice between two words, the first the default (ComfyUI's "enable"/"disable").
fn switch(name: &'static str, choices: [&str; 2]) -> InputSpec {
    InputSpec { name, kind: InputKind::Combo(choices.map(String::from).to_vec()) }
}

/// The spec of KSampler or KSamplerAdvanced (`None` for other class types): ComfyUI's inputs
/// in its order, `steps` up to the box's limit.
pub fn spec(class_type: &str, ctx: &SpecContext) -> Option<NodeSpec> {
    let advanced = match class_type {
        KSAMPLER => false,
        ADVANCED => true,
        _ => return None,
    };
    let mut inputs = vec![link("model", "MODEL")];
    if advanced {
        inputs.push(switch("add_noise", ["enable", "disable"]));
    }
    inputs.extend([
        int(if advanced { "noise_seed" } else { "seed" }, 0, 0, i128::from(MAX_SEED), 1),
        int("steps", 20, 1, i128::from(ctx.max_steps), 1),
        InputSpec { name: "cfg", kind: InputKind::Float { default: 8.0, min: 0.0, max: 100.0, step: 0.1 } },
        InputSpec { name: "sampler_name", kind: InputKind::Combo(SAMPLERS.map(String::from).to_vec()) },
        InputSpec { name: "scheduler", kind: InputKind::Combo(SCHEDULERS.map(String::from).to_vec()) },
        link("positive", "CONDITIONING"),
        link("negative", "CONDITIONING"),
        link("latent_image", "LATENT"),
    ]);
    if advanced {
        inputs.extend([
            int("start_at_step", 0, 0, LAST_STEP, 1),
            int("end_at_step", LAST_STEP, 0, LAST_STEP, 1),
            switch("return_with_leftover_noise", ["disable", "enable"]),
        ]);
    } else {
        inputs.push(float("denoise", 1.0, 0.0, 1.0));
    }
    Some(NodeSpec {
        class_type: if advanced { ADVANCED } else { KSAMPLER },
        display_name: if advanced { "KSampler (Advanced)" } else { KSAMPLER },
        category: "sampling",
        description: if advanced {
            "Denoises a latent with the model and prompts over a range of its steps."
        } else {
            "Denoises a latent with the model and prompts."
        },
        inputs,
        outputs: &["LATENT"],
        output_node: false,
        python_module: "nodes",
    })
}

/// A sampler node's settings as the `image` kind takes them.
pub(super) struct SamplerSettings {
    pub seed: i64,
    /// The steps that run (a KSamplerAdvanced's from its `start_at_step`).
    pub steps: i64,
    pub cfg: f64,
    /// The `image` kind's `strength` in [`STEPS_RUN`] mode: a KSampler's `denoise`, or the
    /// one that starts a KSamplerAdvanced's schedule at its `start_at_step`.
    pub strength: f64,
    pub scheduler: &'static str,
    /// The `image` kind's `schedule`: ComfyUI's scheduler the sampler runs over.
    pub schedule: Option<&'static str>,
    /// It is a KSamplerAdvanced (its inputs' names differ: `noise_seed`, `start_at_step`).
    pub advanced: bool,
    /// A split's second half (`split`): the step it goes on from and its schedule's `steps`.
    pub goes_on: Option<(i64, i64)>,
}

impl SamplerSettings {
    /// Sampler `id`'s, ComfyUI's defaults for inputs left out; a sampler or schedule reelbox
    /// lacks, or a KSamplerAdvanced's range it does not run, is its node error.
    pub(super) fn of(g: &ValidGraph, id: &str) -> Result<Self, PromptError> {
        let node = &g.nodes[id];
        let advanced = node.class_type == ADVANCED;
        let int = |input: &str, default: i128| node.inputs.get(input).and_then(int_value).unwrap_or(default);
        let float = |input: &str, default: f64| node.inputs.get(input).and_then(float_value).unwrap_or(default);
        let (scheduler, schedule) = reelbox_scheduler(&text(node, "sampler_name"), &text(node, "scheduler"))
            .map_err(|input| refusal(g, id, input, "value_not_in_list", "Value not in list"))?;
        let (steps, strength) = match advanced {
            true => advanced_span(g, id, int("steps", 20))?,
            false => (int("steps", 20), float("denoise", 1.0)),
        };
        let goes_on = match super::split::goes_on_after(g, id) {
            Some(_) if advanced => Some((wire(int("start_at_step", 0)), wire(int("steps", 20)))),
            _ => None,
        };
        Ok(Self {
            seed: wire(i128::from(fold_seed(int(if advanced { "noise_seed" } else { "seed" }, 0)))),
            steps: wire(steps),
            cfg: float("cfg", 8.0),
            strength,
            scheduler,
            schedule,
            advanced,
            goes_on,
        })
    }
}

/// Node `id`'s error at `input`, showing the value it was given.
fn refusal(g: &ValidGraph, id: &str, input: &str, kind: &str, message: &str) -> PromptError {
    let node = &g.nodes[id];
    let received = node.inputs.get(input).cloned().unwrap_or(Value::Null);
    input_error(id, &node.class_type, input, kind, message, &received)
}

/// The steps that run and the strength of KSamplerAdvanced `id` of `steps` steps, or the
/// refusal of a range reelbox does not run (or that runs no step), naming its input.
fn advanced_span(g: &ValidGraph, id: &str, steps: i128) -> Result<(i128, f64), PromptError> {
    let node = &g.nodes[id];
    let int = |input: &str, default: i128| node.inputs.get(input).and_then(int_value).unwrap_or(default);
    let (start, end) = (int("start_at_step", 0), int("end_at_step", LAST_STEP));
    let bad = |input: &str, message: String| refusal(g, id, input, "custom_validation_failed", &message);
    let unsupported = |input: &str, message: String| refusal(g, id, input, "unsupported_graph", &message);
    if end <= start {
        return Err(bad("end_at_step", format!("end_at_step {end} must be above start_at_step {start}: no step runs")));
    }
    if start >= steps {
        return Err(bad("start_at_step", format!("start_at_step {start} must be below steps ({steps}): no step runs")));
    }
    // ComfyUI cuts the schedule only when it ends before its last step; a split's first half
    // hands the rest on (its stop is the job's `refine.switch_at_step`).
    let hands_on = super::split::hands_on(g, id);
    if end < steps && text(node, "return_with_leftover_noise") == "enable" && !hands_on {
        return Err(unsupported(
            "return_with_leftover_noise",
            format!(
                "reelbox hands a sampler's leftover noise only to a KSamplerAdvanced that goes on from it, its \
                 one taker (add_noise disable, start_at_step {end}); this one stops at step {end} of {steps} and \
                 its LATENT goes elsewhere (a VAEDecode would decode noise): link it to such a sampler, or set \
                 end_at_step to {steps} or more"
            ),
        ));
    }
    if end < steps && !hands_on {
        return Err(unsupported(
            "end_at_step",
            format!(
                "reelbox runs a sampler's steps to the end; end_at_step {end} stops it {} steps early, which it \
                 does not run: set end_at_step to {steps} or more",
                steps - end
            ),
        ));
    }
    let empty = g.linked(id, "latent_image").is_some_and(|(_, n)| n.class_type == "EmptyLatentImage");
    let after = super::split::goes_on_after(g, id);
    if let Some((first, stop)) = after.as_ref().filter(|(_, stop)| *stop != start) {
        return Err(bad(
            "start_at_step",
            format!(
                "node {first} stops at step {stop} with its leftover noise; this sampler must go on from step {stop}"
            ),
        ));
    }
    if text(node, "add_noise") == "disable" && after.is_none() {
        let why = if empty {
            "an empty latent is not a picture: sampled without noise it stays empty; set add_noise to enable"
        } else {
            "reelbox samples a latent without adding noise only where it goes on from a KSamplerAdvanced's \
             leftover noise (a base → refiner split: return_with_leftover_noise enable, end_at_step below its \
             steps, this its one taker); set add_noise to enable"
        };
        return Err(unsupported("add_noise", why.to_string()));
    }
    if start > 0 && empty {
        return Err(unsupported(
            "start_at_step",
            "an empty latent is sampled from step 0; a start_at_step above 0 takes a picture's latent \
             (VAEEncode) or another sampler's"
                .to_string(),
        ));
    }
    // Both within the checked graph's limits (steps ≤ the box's, start < steps).
    let span = Span { schedule: usize::try_from(steps).unwrap_or(1), start: usize::try_from(start).unwrap_or(0) };
    let (run, strength) = span.run_request();
    Ok((run as i128, strength))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::info::node_info as object_info;
    use super::super::validate::tests::{ctx, default_workflow};
    use super::super::validate::validate;
    use super::*;

    #[test]
    fn ksampler_advanced_has_comfyuis_inputs_in_its_order() {
        let info = object_info(&spec(ADVANCED, &ctx()).expect("spec"));
        assert_eq!(
            info["input_order"]["required"],
            json!([
                "model",
                "add_noise",
                "noise_seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "start_at_step",
                "end_at_step",
                "return_with_leftover_noise"
            ])
        );
        let required = &info["input"]["required"];
        assert_eq!(required["add_noise"], json!([["enable", "disable"]]));
        assert_eq!(required["return_with_leftover_noise"], json!([["disable", "enable"]]));
        assert_eq!(required["end_at_step"], json!(["INT", {"default": 10000, "min": 0, "max": 10000, "step": 1}]));
        assert_eq!(required["start_at_step"][1]["default"], 0);
        assert_eq!(required["noise_seed"][1]["max"], json!(u64::MAX));
        assert_eq!((&info["display_name"], &info["output"]), (&json!("KSampler (Advanced)"), &json!(["LATENT"])));
    }

    /// The default workflow with its sampler a KSamplerAdvanced given `inputs`.
    fn advanced(inputs: Value) -> ValidGraph {
        let mut g = default_workflow();
        g["4"]["inputs"]["ckpt_name"] = json!("tiny-sd.safetensors");
        g["3"]["class_type"] = json!(ADVANCED);
        let node = g["3"]["inputs"].as_object_mut().expect("inputs");
        node.remove("denoise");
        let seed = node.remove("seed").unwrap_or(json!(0));
        node.insert("noise_seed".into(), seed);
        for (k, v) in [("add_noise", json!("enable")), ("start_at_step", json!(0)), ("end_at_step", json!(10000))] {
            node.insert(k.into(), v);
        }
        node.insert("return_with_leftover_noise".into(), json!("disable"));
        for (k, v) in inputs.as_object().expect("object") {
            node.insert(k.clone(), v.clone());
        }
        validate(&g, &ctx()).expect("valid")
    }

    #[test]
    fn a_whole_range_is_the_ksampler_at_full_denoise() {
        let s = SamplerSettings::of(&advanced(json!({"steps": 20})), "3").expect("runs");
        assert_eq!((s.steps, s.strength, s.seed, s.advanced), (20, 1.0, 8566257, true));
        // Leftover noise at the last step is none: ComfyUI cuts nothing.
        let s = SamplerSettings::of(&advanced(json!({"return_with_leftover_noise": "enable", "end_at_step": 20})), "3");
        assert_eq!(s.map(|s| s.steps).ok(), Some(20));
    }

    /// The input node 3's refusal names, and its type.
    fn refused(inputs: Value) -> (String, String) {
        let err = SamplerSettings::of(&advanced(inputs), "3").err().expect("refused");
        let e = &err.node_errors["3"]["errors"][0];
        (e["extra_info"]["input_name"].as_str().unwrap_or("").into(), e["type"].as_str().unwrap_or("").into())
    }

    #[test]
    fn ranges_reelbox_does_not_run_are_refused_at_their_input() {
        let named = |input: &str, kind: &str| (input.to_string(), kind.to_string());
        let bad = "custom_validation_failed";
        assert_eq!(refused(json!({"start_at_step": 10, "end_at_step": 10})), named("end_at_step", bad));
        assert_eq!(refused(json!({"start_at_step": 12, "end_at_step": 4})), named("end_at_step", bad));
        assert_eq!(refused(json!({"steps": 20, "start_at_step": 20})), named("start_at_step", bad));
        let no = "unsupported_graph";
        let split = json!({"steps": 20, "end_at_step": 12, "return_with_leftover_noise": "enable"});
        assert_eq!(refused(split), named("return_with_leftover_noise", no));
        assert_eq!(refused(json!({"steps": 20, "end_at_step": 12})), named("end_at_step", no));
        assert_eq!(refused(json!({"add_noise": "disable"})), named("add_noise", no));
        assert_eq!(refused(json!({"start_at_step": 5})), named("start_at_step", no), "an empty latent");
    }
}

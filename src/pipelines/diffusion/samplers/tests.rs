//! Every scheduler against numbers printed by diffusers
//! (tests/fixtures/make_scheduler_reference.py → tests/fixtures/reference/schedulers.json).

use serde::Deserialize;

use super::*;
use crate::pipelines::diffusion::noise::ReplayNoise;

#[derive(Deserialize)]
struct Reference {
    sd15_alphas_cumprod: Vec<f64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    scheduler: String,
    config: serde_json::Value,
    steps: usize,
    strength: f64,
    timesteps: Vec<f64>,
    sigmas: Option<Vec<f64>>,
    init_noise_sigma: f64,
    init: Init,
    #[serde(rename = "loop")]
    steps_out: Vec<StepOut>,
}

#[derive(Deserialize)]
struct Init {
    x: Option<Vec<f32>>,
    x0: Option<Vec<f32>>,
    noise: Option<Vec<f32>>,
    t_start: Option<usize>,
    latents: Vec<f32>,
}

#[derive(Deserialize)]
struct StepOut {
    t: f64,
    scaled: Vec<f32>,
    model_output: Vec<f32>,
    noise: Option<Vec<f32>>,
    prev: Vec<f32>,
}

fn reference() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference/schedulers.json");
    let text = std::fs::read_to_string(path).expect("scheduler reference present");
    serde_json::from_str(&text).expect("reference parses")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn alphas_cumprod_match_torch() {
    let r = reference();
    let file: SchedulerConfigFile = serde_json::from_value(r.cases[0].config.clone()).expect("config");
    let choice = SchedulerChoice::parse("euler").expect("euler");
    let ac = SchedulerConfig::resolve(&file, choice).expect("resolve").alphas_cumprod().expect("ac");
    for (i, (&ours, &theirs)) in ac.iter().zip(&r.sd15_alphas_cumprod).enumerate() {
        assert_eq!(ours, theirs as f32, "alphas_cumprod[{i}]");
    }
}

#[test]
fn schedules_and_sampling_loops_match_diffusers() {
    let r = reference();
    let mut failures = Vec::new();
    for case in &r.cases {
        if let Err(e) = check_case(case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), r.cases.len(), failures.join("\n"));
}

fn check_case(case: &Case) -> Result<(), Box<dyn std::error::Error>> {
    let file: SchedulerConfigFile = serde_json::from_value(case.config.clone())?;
    let mut choice = SchedulerChoice::parse(&case.scheduler)?;
    choice.karras = file.use_karras_sigmas.unwrap_or(false);
    let mut s = build(choice, &file, case.steps, case.strength)?;
    let ts = s.timesteps().to_vec();
    if ts.len() != case.timesteps.len() || ts.iter().zip(&case.timesteps).any(|(a, b)| (a - b).abs() > 1e-3) {
        return Err(format!("timesteps {ts:?} != {:?}", case.timesteps).into());
    }
    if let Some(want) = &case.sigmas {
        let have = s.sigmas().ok_or("no sigmas")?;
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let d = max_diff(have, &want);
        if d > 1e-5 {
            return Err(format!("sigmas differ by {d}: {have:?} != {want:?}").into());
        }
    }
    if (f64::from(s.init_noise_sigma()) - case.init_noise_sigma).abs() > 1e-5 {
        return Err(format!("init_noise_sigma {} != {}", s.init_noise_sigma(), case.init_noise_sigma).into());
    }
    let n = case.init.latents.len();
    let mut latents = vec![0f32; n];
    let start = match (&case.init.x, &case.init.x0) {
        (Some(x), _) => {
            let sigma = s.init_noise_sigma();
            for (l, &v) in latents.iter_mut().zip(x) {
                *l = v * sigma;
            }
            0
        }
        (None, Some(x0)) => {
            let start = case.init.t_start.ok_or("t_start")?;
            if start != img2img_start(case.steps, case.strength, SampleAs::Comfyui) {
                return Err(format!(
                    "img2img start {} != {start}",
                    img2img_start(case.steps, case.strength, SampleAs::Comfyui)
                )
                .into());
            }
            s.add_noise(start, x0, case.init.noise.as_deref().ok_or("noise")?, &mut latents);
            start
        }
        _ => return Err("case has neither x nor x0".into()),
    };
    let d = max_diff(&latents, &case.init.latents);
    if d > 1e-5 {
        return Err(format!("initial latents differ by {d}").into());
    }
    let mut scaled = vec![0f32; n];
    for (k, step) in case.steps_out.iter().enumerate() {
        let i = start + k;
        if (ts[i] - step.t).abs() > 1e-3 {
            return Err(format!("step {i}: t {} != {}", ts[i], step.t).into());
        }
        s.scale_model_input(i, &latents, &mut scaled);
        let d = max_diff(&scaled, &step.scaled);
        if d > 1e-5 {
            return Err(format!("step {i}: scaled input differs by {d}").into());
        }
        let mut noise = ReplayNoise::new(step.noise.iter().cloned().collect());
        let mut denoised = vec![0f32; n];
        s.step(i, &step.model_output, &mut latents, &mut noise, Some(&mut denoised))?;
        if noise.remaining() != 0 {
            return Err(format!("step {i}: noise draw not consumed").into());
        }
        let scale = step.prev.iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = max_diff(&latents, &step.prev);
        if d > 2e-5 * scale {
            return Err(format!("step {i}: prev_sample differs by {d} (scale {scale})").into());
        }
        // Keep following diffusers' trajectory so one rounding does not snowball.
        latents.copy_from_slice(&step.prev);
    }
    Ok(())
}

#[test]
fn scheduler_names_parse_and_unknown_ones_are_rejected() {
    for name in SCHEDULER_NAMES {
        assert_eq!(SchedulerChoice::parse(name).expect(name).name(), name);
    }
    assert_eq!(SchedulerChoice::parse("plms").expect("A1111's name").name(), "pndm");
    assert!(matches!(SchedulerChoice::parse("heun"), Err(SchedulerError::UnknownName(_))));
    assert!(SchedulerChoice::parse("euler_a_karras").is_err());
    // What clients are offered is every name, and every schedule.
    assert_eq!(SchedulerChoice::all().map(|c| c.name()).collect::<Vec<_>>(), SCHEDULER_NAMES);
    assert_eq!(Schedule::all().map(Schedule::name).collect::<Vec<_>>(), Schedule::NAMES);
}

#[test]
fn configs_may_spell_infinities_as_strings() {
    let file: SchedulerConfigFile =
        serde_json::from_str(r#"{"lambda_min_clipped": "-inf", "sigma_min": null, "beta_end": 0.012}"#)
            .expect("parses");
    assert_eq!(file.lambda_min_clipped, Some(f64::NEG_INFINITY));
    assert_eq!(file.sigma_min, None);
    assert_eq!(file.beta_end, Some(0.012));
}

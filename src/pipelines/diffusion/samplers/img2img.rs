//! Where image to image starts on a schedule. Two rules are in use, and a request says which
//! its `steps` follow ([`StepsMode`]): A1111's and diffusers' (`steps` is the schedule, of
//! which about `steps × strength` run: a strength of 0.5 halves the work) and ComfyUI's
//! KSampler (`steps` is what runs: at denoise `d` < 1 it builds a schedule of `⌊steps ÷ d⌋`
//! steps and runs the last `steps` of it, so the work is the same at any denoise). By the
//! first, A1111's k-diffusion samplers run one step more than diffusers' ([`img2img_start`]):
//! whose count applies is the run's `sample_as` ([`count_rule`]).

use serde::{Deserialize, Serialize};

use super::{
    SampleAs, Schedule, Scheduler, SchedulerChoice, SchedulerConfig, SchedulerConfigFile, SchedulerError,
    SchedulerKind, build,
};

/// ComfyUI's KSampler takes a denoise above this as 1: the plain `steps`-step schedule.
const FULL_DENOISE: f64 = 0.9999;
/// A1111 takes a denoising strength above this as this (`min(p.denoising_strength, 0.999)`).
const A1111_MOST_STRENGTH: f64 = 0.999;

/// How a request's `steps` count when it starts from a picture or a latent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepsMode {
    /// `steps` is the schedule's length, of which `⌊steps × strength⌋` run (at least one):
    /// A1111's and diffusers' image to image.
    #[default]
    Schedule,
    /// `steps` is how many run, over the last of a `⌊steps ÷ strength⌋`-step schedule:
    /// ComfyUI's KSampler at `denoise` < 1.
    Run,
}

impl StepsMode {
    /// The names a request gives the modes in.
    pub const NAMES: [&'static str; 2] = ["schedule", "run"];

    /// The mode a request names, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "schedule" => Some(Self::Schedule),
            "run" => Some(Self::Run),
            _ => None,
        }
    }

    /// Whether this is the default, which stored jobs leave out.
    pub fn is_schedule(&self) -> bool {
        *self == Self::Schedule
    }
}

/// One run on a schedule: the schedule's length in steps and the index of the step it starts
/// at (its last `schedule − start` steps run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub schedule: usize,
    pub start: usize,
}

impl Span {
    /// The span of `steps` at `strength` (1 for text to image) counted by `mode` (and, in
    /// [`StepsMode::Schedule`], by `rule`'s count, [`img2img_start`]), on a scheduler whose
    /// schedules have at most `longest` steps: a tiny strength in [`StepsMode::Run`] asks for a
    /// schedule longer than any (ComfyUI's sigmas go on past the 1000 training timesteps), so
    /// it takes the longest, whose last `steps` still run. (A1111's hires fix counts its steps
    /// as the run mode does, `⌊steps ÷ min(d, 0.999)⌋`: the same schedule at any `steps` a
    /// request may have.)
    pub fn of(steps: usize, strength: f64, mode: StepsMode, longest: usize, rule: SampleAs) -> Self {
        match mode {
            StepsMode::Schedule => Self { schedule: steps, start: img2img_start(steps, strength, rule) },
            StepsMode::Run if strength > FULL_DENOISE => Self { schedule: steps, start: 0 },
            StepsMode::Run => {
                // Python's int() of a positive float is its floor; `as` saturates a 0 strength's ∞.
                let schedule = ((steps as f64 / strength).floor() as usize).min(longest).max(steps);
                Self { schedule, start: schedule - steps }
            }
        }
    }

    /// Steps it runs: at least one, however small the strength.
    pub fn steps_run(&self) -> usize {
        (self.schedule - self.start).max(1)
    }

    /// The `steps` and `strength` of a [`StepsMode::Run`] request whose span is this one (a
    /// whole schedule from its step `start`, ComfyUI's KSamplerAdvanced `start_at_step`), on
    /// any scheduler whose schedules may be `schedule` steps long: the steps that run and a
    /// strength half a step short of theirs, so `⌊run ÷ strength⌋` is `schedule` whatever the
    /// float rounding. A span from step 0 is the plain schedule, strength 1.
    pub fn run_request(&self) -> (usize, f64) {
        let run = self.schedule.saturating_sub(self.start).max(1);
        if run == self.schedule {
            return (run, 1.0);
        }
        (run, run as f64 / (self.schedule as f64 + 0.5))
    }
}

/// Steps a run of `steps` at `strength` counted by `mode` and `rule` takes: what its cost and
/// progress count. The same on every schedule that takes the request (a span's length never
/// depends on how long a schedule may be, only its start).
pub fn steps_run(steps: usize, strength: f64, mode: StepsMode, rule: SampleAs) -> usize {
    Span::of(steps, strength, mode, usize::MAX, rule).steps_run()
}

/// First step index of an img2img run of `steps` at `strength`, by `rule`'s count:
/// diffusers' `get_timesteps` (`t_start = n − min(⌊n·strength⌋, n)`), which ComfyUI's
/// schedule-mode requests follow; or A1111's `sample_img2img` (its k-diffusion samplers, with
/// `img2img_fix_steps` off, its default): `t_enc = ⌊min(strength, 0.999)·n⌋` and its σs from
/// `sigmas[n − t_enc − 1]`, so `t_enc + 1` steps run: 16 of 20 at 0.75, where diffusers runs 15.
pub fn img2img_start(steps: usize, strength: f64, rule: SampleAs) -> usize {
    match rule {
        SampleAs::Comfyui => steps - ((steps as f64 * strength).floor() as usize).min(steps),
        SampleAs::A1111 => {
            let t_enc = (steps as f64 * strength.min(A1111_MOST_STRENGTH)).floor() as usize;
            steps.saturating_sub(t_enc.min(steps) + 1)
        }
    }
}

/// Whose count an image-to-image run on `schedule` by `sample_as`'s arithmetic takes its
/// steps by ([`img2img_start`]): A1111's for its k-diffusion samplers (a run over a
/// schedule, `sample_as: a1111`); diffusers' for every other (A1111's DDIM and PLMS are not
/// k-diffusion's: they keep diffusers' count here).
pub fn count_rule(schedule: Option<Schedule>, sample_as: SampleAs) -> SampleAs {
    if schedule.is_some() { sample_as } else { SampleAs::Comfyui }
}

/// A scheduler for `steps` at `strength` (1 for text to image) counted by `mode`, and the
/// [`Span`] it runs; refuses what the scheduler refuses (LCM's step limit) as [`build`] does.
pub fn build_span(
    choice: SchedulerChoice,
    file: &SchedulerConfigFile,
    steps: usize,
    strength: f64,
    mode: StepsMode,
) -> Result<(Box<dyn Scheduler>, Span), SchedulerError> {
    let cfg = SchedulerConfig::resolve(file, choice)?;
    let lcm = choice.kind == SchedulerKind::Lcm;
    // LCM spaces its steps over its original schedule: no more of them than it has.
    let longest = if lcm { cfg.original_inference_steps } else { cfg.num_train_timesteps };
    let span = Span::of(steps, strength, mode, longest, count_rule(choice.schedule, choice.sample_as));
    // In the run mode the schedule is a whole one, from full noise, whose tail runs; LCM's own
    // shortening for a strength is the schedule mode's (diffusers' LCM img2img).
    let strength = if mode == StepsMode::Run { 1.0 } else { strength };
    Ok((build(choice, file, span.schedule, strength)?, span))
}

/// The step at which A1111 (1.6+) swaps in its refiner for a `refiner_switch_at` of `fraction`
/// on a run of `steps` with `choice`: before each model call its `apply_refiner` takes the
/// training timestep t whose σ is nearest the step's (for a sampler without σs, DDIM's, the
/// timestep itself) and switches at the first step where (999 − t) / 1000 reaches the
/// fraction, compared in f32 as torch compares them; its steps' own count does not decide
/// (`refiner_switch_by_sample_steps`, off by default). `None`: no step reaches it.
pub fn a1111_switch_step(
    choice: SchedulerChoice,
    file: &SchedulerConfigFile,
    steps: usize,
    fraction: f64,
) -> Result<Option<usize>, SchedulerError> {
    let table: Vec<f32> =
        SchedulerConfig::resolve(file, choice)?.alphas_cumprod()?.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
    let scheduler = build(choice, file, steps, 1.0)?;
    // torch.argmin: the first of equally near ones.
    let nearest = |sigma: f32| {
        table.iter().enumerate().min_by(|a, b| (a.1 - sigma).abs().total_cmp(&(b.1 - sigma).abs())).map_or(0, |m| m.0)
    };
    let timestep = |i: usize| match scheduler.sigmas() {
        Some(sigmas) => nearest(sigmas[i]) as i64,
        None => scheduler.timesteps()[i] as i64,
    };
    let fraction = fraction as f32;
    Ok((0..scheduler.timesteps().len()).find(|&i| (999 - timestep(i)) as f32 / 1000.0 >= fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// diffusers' count, which every request but A1111's k-diffusion ones takes.
    const C: SampleAs = SampleAs::Comfyui;

    /// ComfyUI's `KSampler.set_steps`: `sigmas = calculate_sigmas(int(steps/denoise))[-(steps + 1):]`,
    /// its schedule's last `steps` steps; the numbers as Python works them out.
    #[test]
    fn the_run_mode_runs_the_last_steps_of_comfyuis_longer_schedule() {
        for (steps, denoise, schedule) in [(20, 0.5, 40), (20, 0.3, 66), (25, 0.75, 33), (4, 0.05, 80), (6, 0.6, 10)] {
            let span = Span::of(steps, denoise, StepsMode::Run, 1000, C);
            assert_eq!(span, Span { schedule, start: schedule - steps }, "steps {steps}, denoise {denoise}");
            assert_eq!((span.steps_run(), steps_run(steps, denoise, StepsMode::Run, C)), (steps, steps));
        }
        // Denoise 1 (and above ComfyUI's 0.9999) is the plain schedule.
        for denoise in [1.0, 0.99995] {
            assert_eq!(Span::of(20, denoise, StepsMode::Run, 1000, C), Span { schedule: 20, start: 0 });
        }
        // Past the scheduler's longest schedule, its longest: still `steps` run.
        assert_eq!(Span::of(20, 0.01, StepsMode::Run, 1000, C), Span { schedule: 1000, start: 980 });
        assert_eq!(Span::of(4, 0.0, StepsMode::Run, 50, C), Span { schedule: 50, start: 46 });
        assert_eq!(Span::of(8, 0.5, StepsMode::Run, 4, C).steps_run(), 8, "never fewer than asked");
    }

    #[test]
    fn a_run_request_spans_the_whole_schedule_from_its_start() {
        for schedule in 1..=400 {
            for start in 0..schedule {
                let span = Span { schedule, start };
                let (steps, strength) = span.run_request();
                assert_eq!(Span::of(steps, strength, StepsMode::Run, 1000, C), span, "{schedule} from {start}");
                assert_eq!(steps, schedule - start);
            }
        }
        assert_eq!(Span { schedule: 20, start: 0 }.run_request(), (20, 1.0));
    }

    #[test]
    fn the_schedule_mode_runs_a_share_of_its_steps_as_diffusers_does() {
        for (steps, strength, start, run) in [(20, 0.5, 10, 10), (20, 0.3, 14, 6), (25, 0.75, 7, 18), (4, 0.6, 2, 2)] {
            let span = Span::of(steps, strength, StepsMode::Schedule, 1000, C);
            assert_eq!(span, Span { schedule: steps, start }, "steps {steps}, strength {strength}");
            assert_eq!(steps_run(steps, strength, StepsMode::Schedule, C), run);
        }
        assert_eq!(steps_run(4, 0.05, StepsMode::Schedule, C), 1, "at least one step runs");
        assert_eq!(steps_run(30, 1.0, StepsMode::Schedule, C), 30);
    }

    /// A1111's `setup_img2img_steps` (fix steps off) and `sample_img2img`: `t_enc =
    /// int(min(d, 0.999) * n)`, `sigma_sched = sigmas[n - t_enc - 1:]`, its numbers as Python
    /// works them out: one step more than diffusers' at any strength, the whole schedule at 1.
    #[test]
    fn a1111_runs_one_step_more_of_its_schedule_than_diffusers() {
        for (steps, strength, start) in
            [(20, 0.75, 4), (20, 0.5, 9), (20, 0.3, 13), (25, 0.6, 9), (20, 1.0, 0), (4, 0.05, 3)]
        {
            let span = Span::of(steps, strength, StepsMode::Schedule, 1000, SampleAs::A1111);
            assert_eq!(span, Span { schedule: steps, start }, "steps {steps}, strength {strength}");
            let diffusers = steps_run(steps, strength, StepsMode::Schedule, C);
            let more = usize::from(strength < 1.0 && diffusers > 1);
            assert_eq!(span.steps_run(), diffusers + more, "steps {steps}, strength {strength}");
        }
        assert_eq!(img2img_start(20, 0.0, SampleAs::A1111), 19, "a step at the least, as A1111 runs");
        // Only its k-diffusion samplers (a run over a schedule) count so.
        assert_eq!(count_rule(None, SampleAs::A1111), C);
        assert_eq!(count_rule(Some(Schedule::Karras), SampleAs::A1111), SampleAs::A1111);
        let euler = SchedulerChoice::parse("euler").expect("euler").sampled_as(SampleAs::A1111);
        let file = SchedulerConfigFile::default();
        let (_, span) = build_span(euler, &file, 20, 0.75, StepsMode::Schedule).expect("builds");
        assert_eq!(span, Span { schedule: 20, start: 20 - 15 }, "no schedule: diffusers' 15 of 20");
        let over = euler.with_schedule(Some(Schedule::Normal)).expect("a schedule");
        let (_, span) = build_span(over, &file, 20, 0.75, StepsMode::Schedule).expect("builds");
        assert_eq!(span, Span { schedule: 20, start: 4 }, "over a schedule: A1111's 16 of 20");
    }

    #[test]
    fn a1111_switches_to_its_refiner_where_the_steps_noise_reaches_the_fraction() {
        let euler = SchedulerChoice::parse("euler").expect("euler");
        let file = SchedulerConfigFile::default();
        let at = |steps: usize, fraction: f64| a1111_switch_step(euler, &file, steps, fraction).expect("builds");
        // 20 steps from t = 999 down to 0, a step of 999/19: step i's t is about 999 − 52.6·i.
        assert_eq!(at(20, 0.8), Some(16));
        assert_eq!(at(20, 0.5), Some(10));
        assert_eq!(at(20, 0.0), Some(0), "at once: the refiner runs every step");
        assert_eq!(at(20, 1.0), None, "(999 − 0) / 1000 never reaches 1");
        // DDIM's steps are its timesteps (leading spacing: 950, 900, …, 0).
        let ddim = SchedulerChoice::parse("ddim").expect("ddim");
        assert_eq!(a1111_switch_step(ddim, &file, 20, 0.8).expect("builds"), Some(16));
    }

    #[test]
    fn the_run_mode_runs_the_tail_of_the_longer_schedules_timesteps() {
        let choice = SchedulerChoice::parse("euler").expect("euler");
        let file = SchedulerConfigFile::default();
        let (long, span) = build_span(choice, &file, 20, 0.5, StepsMode::Run).expect("builds");
        let (forty, _) = build_span(choice, &file, 40, 1.0, StepsMode::Schedule).expect("builds");
        assert_eq!(span, Span { schedule: 40, start: 20 });
        assert_eq!(long.timesteps()[span.start..], forty.timesteps()[20..]);
        // LCM's tail is of its whole origin schedule, at most its original steps long.
        let lcm = SchedulerChoice::parse("lcm").expect("lcm");
        let (_, span) = build_span(lcm, &file, 4, 0.05, StepsMode::Run).expect("builds");
        assert_eq!(span, Span { schedule: 50, start: 46 });
    }
}

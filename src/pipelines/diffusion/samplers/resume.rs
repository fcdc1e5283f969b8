//! What a sampler carries from one step to the next beside the latents themselves, so that a
//! run stopped before step K can be gone on with by another run of the same schedule as if it
//! had never stopped: A1111's refiner swaps the model inside one sampler run, whose history
//! (DPM++ 2M's last denoised latent, PLMS's past model outputs, DPM-Solver's lower-order count)
//! goes on across the swap. One type for every sampler: each [`super::Scheduler`] says in
//! `state` what it keeps and takes it back in `resume`; a sampler with no history keeps none.

use super::SchedulerError;

/// A sampler's state between two steps of its schedule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplerState {
    /// Latents of earlier steps the method reads again, each the whole batch's, in the order
    /// the sampler keeps them; `None` a slot not filled yet.
    pub latents: Vec<Option<Vec<f32>>>,
    /// Steps its method has counted (DPM-Solver's lower-order steps, PLMS's counter).
    pub count: usize,
}

impl SamplerState {
    /// Picture `i`'s share of a state of `n` pictures: each latent's `i`th of `n` equal parts.
    pub fn of_picture(&self, i: usize, n: usize) -> Self {
        let share = |l: &Vec<f32>| {
            let per = l.len() / n.max(1);
            l.get(i * per..(i + 1) * per).unwrap_or_default().to_vec()
        };
        Self { latents: self.latents.iter().map(|l| l.as_ref().map(share)).collect(), count: self.count }
    }

    /// The same state for a batch of `n` pictures alike (a one-picture state repeated).
    pub fn repeated(&self, n: usize) -> Self {
        let latents = self.latents.iter().map(|l| l.as_ref().map(|l| l.repeat(n))).collect();
        Self { latents, ..self.clone() }
    }

    /// Refused unless it holds `slots` latents of `len` values each (a filled one), as the
    /// sampler `name` keeps them: a state another sampler or size made.
    pub(super) fn expect(&self, name: &str, slots: usize, len: usize) -> Result<(), SchedulerError> {
        let fits = self.latents.len() == slots && self.latents.iter().flatten().all(|l| l.len() == len);
        if fits {
            return Ok(());
        }
        Err(SchedulerError::Unsupported(format!(
            "a {name} run cannot go on from this state: it keeps {slots} latent(s) of {len} values, the state has {}",
            self.latents.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::diffusion::noise::{NoiseSource, SeededNoise};
    use crate::pipelines::diffusion::samplers::{Schedule, SchedulerChoice, SchedulerConfigFile, build};

    /// Steps `from..to` of `steps` of sampler `name` (over ComfyUI schedule `schedule`, if
    /// any) with a made-up model (ε = 0.3·x_in + 0.1), from `x`, its step noise from `noise`,
    /// gone on from `resume` if given; the state it stops with.
    fn run(
        (name, schedule): (&str, Option<&str>),
        steps: usize,
        (from, to): (usize, usize),
        x: &mut [f32],
        noise: &mut dyn NoiseSource,
        resume: Option<SamplerState>,
    ) -> SamplerState {
        let schedule = schedule.map(|s| Schedule::parse(s).expect("a schedule"));
        let choice = SchedulerChoice::parse(name).expect("a sampler").with_schedule(schedule).expect("takes it");
        let file = SchedulerConfigFile {
            beta_schedule: Some("scaled_linear".into()),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            ..SchedulerConfigFile::default()
        };
        let mut s = build(choice, &file, steps, 1.0).expect("builds");
        if let Some(state) = resume {
            s.resume(state).expect("resumes");
        }
        let (mut input, mut eps) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        for i in from..to {
            s.scale_model_input(i, x, &mut input);
            eps.iter_mut().zip(&input).for_each(|(e, v)| *e = 0.3 * v + 0.1);
            s.step(i, &eps, x, noise, None).expect("step");
        }
        s.state()
    }

    #[test]
    fn every_sampler_goes_on_from_its_state_as_its_one_run() {
        let samplers = [
            ("dpmpp_2m", None),
            ("dpmpp_2m_karras", None),
            ("dpmpp_2m", Some("karras")),
            ("euler", None),
            ("euler", Some("normal")),
            ("euler_a", None),
            ("euler_a", Some("karras")),
            ("ddim", None),
            ("pndm", None),
            ("lcm", None),
        ];
        for sampler in samplers {
            let steps = if sampler.0 == "lcm" { 4 } else { 8 };
            // PLMS runs one more step than asked; its split falls inside its repeated first step too.
            let total = if sampler.0 == "pndm" { steps + 1 } else { steps };
            for at in [1, 3] {
                let start: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin() * 14.0).collect();
                let mut one = start.clone();
                run(sampler, steps, (0, total), &mut one, &mut SeededNoise::new(&[3]), None);
                let (mut split, mut noise) = (start, SeededNoise::new(&[3]));
                let state = run(sampler, steps, (0, at), &mut split, &mut noise, None);
                run(sampler, steps, (at, total), &mut split, &mut noise, Some(state));
                assert_eq!(split, one, "{sampler:?} split at {at}: not its one run");
            }
        }
    }

    #[test]
    fn a_state_is_one_pictures_share_and_refused_by_another_sampler() {
        let state = SamplerState { latents: vec![None, Some((0..8).map(|v| v as f32).collect())], count: 1 };
        let second = state.of_picture(1, 2);
        assert_eq!(second.latents, vec![None, Some(vec![4.0, 5.0, 6.0, 7.0])]);
        assert_eq!(second.count, 1);
        assert_eq!(second.repeated(2).latents, vec![None, Some(vec![4.0, 5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 7.0])]);
        assert!(state.expect("DPM-Solver++", 2, 8).is_ok());
        assert!(state.expect("DPM-Solver++", 2, 4).is_err(), "another size");
        assert!(state.expect("DPM++ 2M", 1, 8).is_err(), "another sampler's slots");
        // A fresh sampler's state is refused by one whose method keeps latents only after a step.
        assert!(SamplerState::default().expect("DPM++ 2M", 1, 8).is_err());
    }
}

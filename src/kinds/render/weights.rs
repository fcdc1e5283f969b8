//! How much of a render's time each stage takes, from its plan: what the job's overall
//! fraction weighs its stages by, so a one-second keyframes stage no longer counts as
//! much as a two-minute lip-sync (and a time left extrapolated from it holds).

use super::{RenderParams, SCENE_GAP_S, STAGES};
use crate::kinds::StageName;
use crate::pipelines::render::Layout;
use crate::pipelines::render::plan::plan;

/// Seconds of work per unit, measured on the demo models (CPU, 2 cores: a 12-scene,
/// 93-second film took keyframes 1.6 s, narration 10 s, motion 58 s at 20 fps, mux 16 s,
/// talking head 113 s; a 3-second upscaled film 16 s). Only their ratios matter.
const PLAN_S: f64 = 0.05;
const KEYFRAMES_S_PER_SCENE: f64 = 0.1;
const NARRATION_S_PER_S: f64 = 0.1;
/// Per second of film at [`DEMO_FPS`]; more frames a second cost more.
const MOTION_S_PER_S: f64 = 0.6;
const TALKING_HEAD_S_PER_S: f64 = 1.2;
const UPSCALE_S_PER_S: f64 = 5.0;
const MUX_S_PER_S: f64 = 0.2;
const DEMO_FPS: f64 = 20.0;

/// Each of `stages`' expected share of the render's time, in their order, from
/// [`planned`]: one the render has not (a record from a build with other stages) weighs
/// nothing.
pub(super) fn stage_weights(p: &RenderParams, stages: &[StageName]) -> Vec<f64> {
    let planned = planned(p);
    stages.iter().map(|s| planned.iter().find(|(name, _)| name == s).map_or(0.0, |(_, w)| *w)).collect()
}

/// Each render stage's expected share of the render's time, in stage order; they sum to 1.
/// A stage the render skips (no presenter shown, no upscale) weighs nothing.
fn planned(p: &RenderParams) -> Vec<(StageName, f64)> {
    // Its words and scenes, which do not hang on where its sentences end: no voice read.
    let plan = plan(&p.script, &p.style, p.seed, &crate::text::language::UNKNOWN);
    let film_s = plan.estimated_seconds(f64::from(p.length_scale.unwrap_or(1.0)), SCENE_GAP_S);
    let frames = film_s * f64::from(p.fps) / DEMO_FPS;
    let presenter = p.presenter.is_some() && p.layout != Layout::None;
    let cost = |stage: StageName| match stage {
        StageName::Plan => PLAN_S,
        StageName::Keyframes => KEYFRAMES_S_PER_SCENE * plan.scenes.len() as f64,
        StageName::Narration => NARRATION_S_PER_S * film_s,
        StageName::Motion => MOTION_S_PER_S * frames,
        StageName::TalkingHead if presenter => TALKING_HEAD_S_PER_S * frames,
        StageName::Upscale if p.upscale => UPSCALE_S_PER_S * frames,
        StageName::Mux => MUX_S_PER_S * film_s,
        _ => 0.0,
    };
    let costs: Vec<(StageName, f64)> = STAGES.iter().map(|&s| (s, cost(s))).collect();
    let total: f64 = costs.iter().map(|(_, c)| c).sum();
    costs.into_iter().map(|(s, c)| (s, c / total)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::render::Presenter;

    fn params(presenter: bool, upscale: bool) -> RenderParams {
        // Twelve scenes of 25 words: about 100 s of film, like the measured demo.
        let scene = "The harbour was foggy that morning and the boats waited for the light to come. ".repeat(2);
        RenderParams {
            presenter: presenter.then(|| Presenter { portrait: "p".into(), face_box: None, face_model: None }),
            layout: if presenter { Layout::Full } else { Layout::None },
            upscale,
            ..RenderParams::sample([scene.trim(); 12].join("\n\n"))
        }
    }

    fn weight(w: &[(StageName, f64)], stage: StageName) -> f64 {
        w.iter().find(|(s, _)| *s == stage).map_or(0.0, |(_, w)| *w)
    }

    /// A job's record lists its stages; each gets its planned share, in the record's order,
    /// and a stage this build's renders lack weighs nothing.
    #[test]
    fn a_records_stages_get_their_planned_shares_in_its_order() {
        let p = params(true, false);
        let planned = planned(&p);
        let asked = [StageName::Mux, StageName::Plan, StageName::Card, StageName::TalkingHead];
        let want: Vec<f64> = asked.iter().map(|&s| weight(&planned, s)).collect();
        assert_eq!(stage_weights(&p, &asked), want);
        assert_eq!(want[2], 0.0);
        assert!(want.iter().all(|&w| w < 1.0) && want[3] > want[0], "{want:?}");
    }

    #[test]
    fn stages_weigh_what_they_take() {
        let plain = planned(&params(false, false));
        assert_eq!(plain.iter().map(|(s, _)| *s).collect::<Vec<_>>(), STAGES.to_vec());
        assert!((plain.iter().map(|(_, w)| w).sum::<f64>() - 1.0).abs() < 1e-9);
        // Measured: motion 58 s of 86 s, keyframes 1.6 s; skipped stages take nothing.
        assert!(weight(&plain, StageName::Motion) > 0.5, "{plain:?}");
        assert!(weight(&plain, StageName::Keyframes) < 0.05, "{plain:?}");
        assert_eq!(weight(&plain, StageName::TalkingHead), 0.0);
        assert_eq!(weight(&plain, StageName::Upscale), 0.0);

        // Measured with a presenter: talking head 113 s of 208 s.
        let presenter = planned(&params(true, false));
        let head = weight(&presenter, StageName::TalkingHead);
        assert!((0.4..0.7).contains(&head), "{presenter:?}");
        let short: f64 =
            [StageName::Plan, StageName::Keyframes, StageName::Narration].iter().map(|&s| weight(&presenter, s)).sum();
        assert!(short < 0.15, "{presenter:?}");

        let upscaled = planned(&params(false, true));
        assert!(weight(&upscaled, StageName::Upscale) > weight(&upscaled, StageName::Motion));
    }
}

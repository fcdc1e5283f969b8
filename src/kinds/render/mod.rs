//! `render`: the main job. A script (or one prompt) becomes a narrated, lip-synced,
//! subtitled MP4 in stages, each with its own artifacts, so a restart resumes at the
//! first unfinished stage: plan → keyframes → narration → motion → talking head →
//! upscale → mux. Parameters are in `params`, the stages' work in `stages`.

use super::inputs::{Takes, require_input};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::kinds::StageName;
use crate::pipelines::render::Layout;
use crate::pipelines::render::plan::{Plan, plan};
use crate::pipelines::tts::Voice;
use crate::text::Language;
use crate::text::scripts::unspoken_notes;

mod params;
mod stages;
mod weights;

pub use params::{KNOWN as REQUEST_FIELDS, Presenter, RenderParams, RenderRequest, validate_params};

/// Pause between scenes' narration, seconds.
const SCENE_GAP_S: f64 = 0.35;

const STAGES: [StageName; 7] = [
    StageName::Plan,
    StageName::Keyframes,
    StageName::Narration,
    StageName::Motion,
    StageName::TalkingHead,
    StageName::Upscale,
    StageName::Mux,
];

/// The language of the voice `voice` (its `espeak.voice`), which the script is read in:
/// where its sentences end. Unknown (English's titles) when the voice is not on this box (a
/// head whose worker boxes have it): the narration, on the box, still reads by its own.
fn voice_language(config: &Config, voice: &str) -> &'static Language {
    Voice::find(&config.models_dir(), voice)
        .map_or(&crate::text::language::UNKNOWN, |v| Language::of(&v.config.espeak_voice))
}

/// The film's plan as its plan stage makes it (scenes, sentences cut in the voice's
/// language, keyframe prompts), for a request's preview too.
pub fn plan_of(config: &Config, p: &RenderParams) -> Plan {
    plan(&p.script, &p.style, p.seed, voice_language(config, &p.voice))
}

/// The `render` job kind.
#[derive(Debug, Default)]
pub struct Render;

impl TypedKind for Render {
    type Params = RenderParams;
    const NAME: &'static str = "render";
    const FIRST_STAGE: StageName = StageName::Plan;

    /// The largest of its GPU stages: keyframes, talking head, upscale (one at a time).
    fn vram_mib(&self, p: &RenderParams, config: &Config) -> u64 {
        let (w, h) = (p.keyframe_width.unwrap_or(p.width), p.keyframe_height.unwrap_or(p.height));
        let mut need = super::memory::diffusion_mib(config, &p.model, w, h, 1);
        if p.presenter.is_some() {
            need = need.max(super::memory::single_model_mib(config, &p.lipsync_model));
        }
        if p.upscale {
            need = need.max(super::memory::single_model_mib(config, &p.upscale_model));
        }
        need
    }

    /// Its keyframes, at the size their stage resolves (the model's own unless set).
    fn cpu_picture(&self, p: &RenderParams, config: &Config) -> Option<super::memory::CpuPicture> {
        let (width, height) = match (p.keyframe_width, p.keyframe_height) {
            (Some(w), Some(h)) => (w, h),
            _ => {
                let kf = params::keyframe_request(p, &p.script, p.seed).and_then(|r| r.resolve(config)).ok()?;
                (kf.width, kf.height)
            }
        };
        Some(super::memory::CpuPicture {
            model: p.model.clone(),
            width,
            height,
            fields: ("keyframe_width", "keyframe_height"),
            stage: StageName::Keyframes,
        })
    }

    fn models(&self, p: &RenderParams) -> Vec<String> {
        // A stage the render does not have may have no model (its default was none).
        let face_model = p.presenter.as_ref().and_then(|pr| pr.face_model.as_ref());
        [&p.model, &p.voice, &p.lipsync_model, &p.upscale_model]
            .into_iter()
            .chain(face_model)
            .filter(|m| !m.is_empty())
            .cloned()
            .collect()
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<RenderParams, ParamError> {
        let p = validate_params(params, ctx)?;
        // A presenter shown (layout inset or full): layout none never reads its portrait.
        if let Some(presenter) = p.presenter.as_ref().filter(|_| p.layout != Layout::None) {
            require_input(ctx, "presenter.portrait", &presenter.portrait, Takes::Picture)?;
        }
        if let Some(music) = &p.music {
            require_input(ctx, "music", music, Takes::Sound)?;
        }
        Ok(p)
    }

    fn stages(&self, _p: &RenderParams) -> Vec<StageName> {
        STAGES.to_vec()
    }

    /// From its plan: a lip-sync weighs more than its keyframes (it replans the script).
    fn stage_weights(&self, p: &RenderParams, stages: &[StageName]) -> Vec<f64> {
        weights::stage_weights(p, stages)
    }

    fn run_stage(&self, stage: StageName, p: &RenderParams, run: &StageRun) -> Result<(), StageError> {
        match stage {
            StageName::Plan => {
                let language = voice_language(run.config, &p.voice);
                // Said once, as the film is planned: what of the script the voice leaves unsaid.
                for note in unspoken_notes(&p.script, language, &p.voice) {
                    let what =
                        "it is shown in the subtitles with the words before it; a scene of only such text is left out";
                    run.sink.log("warn", &format!("{note}: {what}"));
                }
                stages::put_json(run, "plan.json", &plan_of(run.config, p))
            }
            StageName::Keyframes => stages::keyframes(run, p),
            StageName::Narration => stages::narration(run, p),
            StageName::Motion => stages::motion(run, p),
            StageName::TalkingHead => stages::talking_head(run, p),
            StageName::Upscale => stages::upscale(run, p),
            StageName::Mux => stages::mux(run, p),
            other => Err(StageError::fatal(format!("render has no stage {other:?}"))),
        }
    }
}

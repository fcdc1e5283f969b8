//! `render` parameters: [`RenderRequest`] as clients send it and [`RenderParams`] with
//! every default filled; the first scene's keyframe request is resolved at submission so
//! a bad model, scheduler, preset or size is refused before the job is queued.

use serde::{Deserialize, Serialize};

use super::SCENE_GAP_S;
use crate::config::LimitsConfig;
use crate::kinds::fields::{
    artifact_param, bool_field, box_param, float_field, float_in, int_field, int_in, opt_f32_in, opt_u32_in,
    reject_unknown, string_field, u32_in,
};
use crate::kinds::image::{ImageRequest, MAX_SEED, wire_int};
use crate::kinds::inputs::{default_model, face_detector, require_installed, require_kind, require_model_file};
use crate::kinds::{ParamError, ValidateCtx};
use crate::models::{Catalog, ModelKind};
use crate::pipelines::render::Layout;
use crate::pipelines::render::plan::{Plan, plan};
use crate::text::scripts::unspoken_notes;

/// Every field a render request may have (`profile` is folded in before the kind reads it,
/// and left as the id of the profile it named: see [`RenderRequest::profile`]).
pub const KNOWN: [&str; 26] = [
    "script",
    "script_format",
    "prompt",
    "style",
    "negative_prompt",
    "model",
    "steps",
    "guidance",
    "scheduler",
    "preset",
    "seed",
    "keyframe_width",
    "keyframe_height",
    "width",
    "height",
    "fps",
    "voice",
    "length_scale",
    "presenter",
    "layout",
    "lipsync_model",
    "upscale",
    "upscale_model",
    "music",
    "burn_subtitles",
    "profile",
];

/// The presenter of a render: portrait artifact and face box, or the face detector that
/// finds the face when no box was given (a profile made from a photo alone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presenter {
    pub portrait: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_box: Option<[u32; 4]>,
    /// Chosen at submission when `face_box` is unset and the presenter is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub face_model: Option<String>,
}

/// Validated render parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderParams {
    pub script: String,
    pub style: String,
    pub negative_prompt: Option<String>,
    pub model: String,
    pub steps: Option<u32>,
    pub guidance: Option<f64>,
    pub scheduler: Option<String>,
    pub preset: Option<String>,
    pub seed: u64,
    pub keyframe_width: Option<u32>,
    pub keyframe_height: Option<u32>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub voice: String,
    pub length_scale: Option<f32>,
    pub presenter: Option<Presenter>,
    pub layout: Layout,
    pub lipsync_model: String,
    pub upscale: bool,
    pub upscale_model: String,
    pub music: Option<String>,
    pub burn_subtitles: bool,
    /// The profile the render was submitted with, by id: what `jobs show` names (a match on
    /// the portrait named the wrong one of two profiles sharing it). None in a render made
    /// without one, and in those from before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// `render` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// The script: paragraphs are scenes. `prompt` is a one-line alternative.
    pub script: Option<String>,
    /// `text` (the default) or `markdown`: a script in Markdown is read as a plain one
    /// first ([`crate::text::markdown::to_script`]).
    pub script_format: Option<String>,
    pub prompt: Option<String>,
    pub style: Option<String>,
    pub negative_prompt: Option<String>,
    pub model: Option<String>,
    pub steps: Option<i64>,
    pub guidance: Option<f64>,
    pub scheduler: Option<String>,
    pub preset: Option<String>,
    pub seed: Option<i64>,
    pub keyframe_width: Option<i64>,
    pub keyframe_height: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub fps: Option<i64>,
    pub voice: Option<String>,
    pub length_scale: Option<f64>,
    pub presenter: Option<Presenter>,
    /// `inset`, `full` or `none`.
    pub layout: Option<String>,
    pub lipsync_model: Option<String>,
    /// `true`/`false` (or those words); anything else is refused naming the field.
    pub upscale: Option<bool>,
    pub upscale_model: Option<String>,
    /// Artifact id of background music.
    pub music: Option<String>,
    pub burn_subtitles: Option<bool>,
    /// The id of the profile folded in at submission (`jobs::Service::expand_render_profile`
    /// replaces the id or name the client sent with it).
    pub profile: Option<String>,
}

/// Reads the presenter object; its errors name `presenter.portrait` / `presenter.face_box`.
fn presenter(v: &serde_json::Value) -> Result<Presenter, ParamError> {
    let portrait = artifact_param(v, "portrait")
        .map_err(|e| ParamError::new("presenter.portrait", e.message))?
        .ok_or_else(|| ParamError::new("presenter.portrait", "is required"))?;
    let face_box = box_param(v, "face_box").map_err(|e| ParamError::new("presenter.face_box", e.message))?;
    Ok(Presenter { portrait: portrait.to_string(), face_box, face_model: None })
}

impl RenderRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(p: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(p, &KNOWN)?;
        Ok(Self {
            script: string_field(p, "script")?,
            script_format: string_field(p, "script_format")?,
            prompt: string_field(p, "prompt")?,
            style: string_field(p, "style")?,
            negative_prompt: string_field(p, "negative_prompt")?,
            model: string_field(p, "model")?,
            steps: int_field(p, "steps")?,
            guidance: float_field(p, "guidance")?,
            scheduler: string_field(p, "scheduler")?,
            preset: string_field(p, "preset")?,
            seed: int_field(p, "seed")?,
            keyframe_width: int_field(p, "keyframe_width")?,
            keyframe_height: int_field(p, "keyframe_height")?,
            width: int_field(p, "width")?,
            height: int_field(p, "height")?,
            fps: int_field(p, "fps")?,
            voice: string_field(p, "voice")?,
            length_scale: float_field(p, "length_scale")?,
            presenter: p.get("presenter").filter(|v| !v.is_null()).map(presenter).transpose()?,
            layout: string_field(p, "layout")?,
            lipsync_model: string_field(p, "lipsync_model")?,
            upscale: bool_field(p, "upscale")?,
            upscale_model: string_field(p, "upscale_model")?,
            music: artifact_param(p, "music")?.map(|u| u.to_string()),
            burn_subtitles: bool_field(p, "burn_subtitles")?,
            profile: string_field(p, "profile")?,
        })
    }

    /// Fills the defaults and checks sizes, models, length and the first keyframe.
    pub fn resolve(self, ctx: &ValidateCtx) -> Result<RenderParams, ParamError> {
        let config = ctx.config;
        if self.script.is_some() && self.prompt.is_some() {
            return Err(ParamError::new("prompt", "give a `script` or a one-line `prompt`, not both"));
        }
        let (field, script) = match (&self.script, &self.prompt) {
            (None, Some(prompt)) => ("prompt", crate::text::clean(prompt)),
            (script, _) => ("script", crate::text::clean(script.as_deref().unwrap_or_default())),
        };
        let script = script.trim();
        if script.is_empty() {
            return Err(ParamError::new("script", "is required (or give a single `prompt`)"));
        }
        // Held to the limit as sent: what the box reads, and what a client can count.
        if script.chars().count() > config.limits.max_prompt_chars {
            return Err(ParamError::new(
                field,
                format!("is longer than {} characters", config.limits.max_prompt_chars),
            ));
        }
        let script = match (field, self.script_format.as_deref()) {
            (_, None | Some("text")) | ("prompt", Some("markdown")) => script.to_string(),
            (_, Some("markdown")) => crate::text::markdown::to_script(script),
            (_, Some(other)) => {
                return Err(ParamError::new("script_format", format!("{other:?} is not text or markdown")));
            }
        };
        if script.is_empty() {
            return Err(ParamError::new(
                "script",
                "has nothing to narrate: its Markdown is only code blocks, HTML, front matter or footnotes",
            ));
        }
        let max_side = i64::from(config.limits.max_image_side);
        let width = u32_in("width", self.width.unwrap_or(512), 64..=max_side)?;
        let height = u32_in("height", self.height.unwrap_or(512), 64..=max_side)?;
        for (field, side) in [("width", width), ("height", height)] {
            if side % 8 != 0 {
                // The pictures are drawn in blocks of 8 pixels; say the two sizes that fit.
                let (below, above) = (side / 8 * 8, side / 8 * 8 + 8);
                let near = if below >= 64 { format!("{below} or {above}") } else { above.to_string() };
                return Err(ParamError::new(field, format!("must be a multiple of 8 ({near}), got {side}")));
            }
        }
        let layout = match self.layout.as_deref() {
            None if self.presenter.is_some() => Layout::Inset,
            None | Some("none") => Layout::None,
            Some("inset") => Layout::Inset,
            Some("full") => Layout::Full,
            Some(other) => return Err(ParamError::new("layout", format!("{other:?} is not inset, full or none"))),
        };
        let upscale = self.upscale.unwrap_or(false);
        // A stage's model: the request's, else the kind's default; required only when the
        // render has that stage (left empty otherwise: no stage runs it).
        let model_for =
            |field: &str, v: Option<String>, kind: ModelKind, needed: bool| match v.filter(|s| !s.is_empty()) {
                // A model of another kind is refused even where no stage would run it.
                Some(name) => require_kind(field, kind, &name, config).map(|()| name),
                None if needed => default_model(field, kind, config),
                None => Ok(Catalog::default_model(config, kind).unwrap_or_default()),
            };
        let presenting = self.presenter.is_some() && layout != Layout::None;
        let lipsync_model = model_for("lipsync_model", self.lipsync_model, ModelKind::Lipsync, presenting)?;
        let upscale_model = model_for("upscale_model", self.upscale_model, ModelKind::Upscale, upscale)?;
        let mut presenter = self.presenter;
        if presenting {
            require_model_file("lipsync_model", ModelKind::Lipsync, &lipsync_model, config)?;
            // A portrait without a face box (a profile made from a photo alone) is shown
            // with the face the detector finds, or refused now: it was left out of the film
            // without a word.
            if let Some(p) = presenter.as_mut().filter(|p| p.face_box.is_none()) {
                p.face_model = Some(face_detector("presenter.face_box", config)?);
            }
        }
        if upscale {
            require_model_file("upscale_model", ModelKind::Upscale, &upscale_model, config)?;
        }
        let params = RenderParams {
            script,
            style: self.style.unwrap_or_default(),
            negative_prompt: self.negative_prompt,
            model: model_for("model", self.model, ModelKind::Diffusion, true)?,
            steps: opt_u32_in("steps", self.steps, 1..=i64::from(config.limits.max_steps))?,
            guidance: self.guidance.map(|g| float_in("guidance", g, 0.0..=30.0)).transpose()?,
            scheduler: self.scheduler,
            preset: self.preset,
            seed: int_in("seed", self.seed.unwrap_or(0), 0..=MAX_SEED)?.unsigned_abs(),
            keyframe_width: opt_u32_in("keyframe_width", self.keyframe_width, 8..=max_side)?,
            keyframe_height: opt_u32_in("keyframe_height", self.keyframe_height, 8..=max_side)?,
            width,
            height,
            fps: u32_in("fps", self.fps.unwrap_or(i64::from(crate::pipelines::lipsync::DEFAULT_FPS)), 1..=60)?,
            voice: model_for("voice", self.voice, ModelKind::Tts, true)?,
            length_scale: opt_f32_in("length_scale", self.length_scale, 0.25..=4.0)?,
            presenter,
            layout,
            lipsync_model,
            upscale,
            upscale_model,
            music: self.music,
            burn_subtitles: self.burn_subtitles.unwrap_or(false),
            profile: self.profile,
        };
        // The voice (the request's, its profile's or the default) must be installed now: a
        // render would otherwise fail at its narration, after its keyframes.
        require_installed("voice", ModelKind::Tts, &params.voice, config)?;
        let language = super::voice_language(config, &params.voice);
        let planned = plan(&params.script, &params.style, params.seed, language);
        if let Some(note) =
            unspoken_notes(&params.script, language, &params.voice).first().filter(|_| planned.scenes.is_empty())
        {
            return Err(ParamError::new(field, format!("has no words the voice can say: {note}")));
        }
        if planned.scenes.is_empty() {
            // Every scene would be dropped: a film of nothing would fail at its last stage.
            return Err(ParamError::new(
                field,
                "has no words to speak: write the narration outside [brackets] (a [direction] alone is only a \
                 picture's description; emoji, symbols and punctuation alone are not spoken)",
            ));
        }
        params.limits(&planned, &config.limits)?;
        // The first scene's keyframe request validates model, scheduler, preset and sizes;
        // a size it refuses is the keyframe's own when one was given.
        keyframe_request(&params, &params.script, params.seed)?.resolve(config).map_err(|e| {
            match (e.field.as_str(), params.keyframe_width, params.keyframe_height) {
                ("width", Some(_), _) => ParamError::new("keyframe_width", e.message),
                ("height", _, Some(_)) => ParamError::new("keyframe_height", e.message),
                _ => e,
            }
        })?;
        Ok(params)
    }
}

impl RenderParams {
    /// A render of `script` on the demo models as `reelbox demo` makes one (192×320 at 20
    /// fps, no presenter, upscale or music): where benchmarks and tests start from, each
    /// changing what it measures.
    pub fn sample(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            style: String::new(),
            negative_prompt: None,
            model: "demo-shapes".into(),
            steps: None,
            guidance: None,
            scheduler: None,
            preset: None,
            seed: 1,
            keyframe_width: None,
            keyframe_height: None,
            width: 192,
            height: 320,
            fps: 20,
            voice: crate::config::defaults::DEFAULT_VOICE.into(),
            length_scale: None,
            presenter: None,
            layout: Layout::None,
            lipsync_model: "demo-presenter".into(),
            upscale: false,
            upscale_model: "demo-upscaler".into(),
            music: None,
            burn_subtitles: false,
            profile: None,
        }
    }

    /// About how long the film of `plan` (this render's) narrates, seconds.
    pub fn estimated_seconds(&self, plan: &Plan) -> f64 {
        plan.estimated_seconds(f64::from(self.length_scale.unwrap_or(1.0)), SCENE_GAP_S)
    }

    /// Holds a render to `limits.max_scenes`, and its narration (estimated from the script)
    /// to `max_audio_seconds` and its film to `max_frames`.
    pub fn limits(&self, plan: &Plan, limits: &LimitsConfig) -> Result<(), ParamError> {
        let scenes = plan.scenes.len();
        if scenes > limits.max_scenes as usize {
            return Err(ParamError::new(
                "script",
                format!("has {scenes} scenes (paragraphs); the limit is {} (limits.max_scenes)", limits.max_scenes),
            ));
        }
        let seconds = self.estimated_seconds(plan);
        crate::kinds::bounds::media_fits(seconds, f64::from(self.fps), limits)
            .map_err(|m| ParamError::new("script", format!("would make {m}{}", m.film_remedy())))
    }
}

/// Checks render request JSON and fills defaults.
pub fn validate_params(p: &serde_json::Value, ctx: &ValidateCtx) -> Result<RenderParams, ParamError> {
    RenderRequest::from_json(p)?.resolve(ctx)
}

/// The `image` request for one scene's keyframe.
pub(super) fn keyframe_request(p: &RenderParams, prompt: &str, seed: u64) -> Result<ImageRequest, ParamError> {
    Ok(ImageRequest {
        prompt: Some(prompt.to_string()),
        negative_prompt: p.negative_prompt.clone(),
        model: Some(p.model.clone()),
        width: p.keyframe_width.map(i64::from),
        height: p.keyframe_height.map(i64::from),
        steps: p.steps.map(i64::from),
        guidance: p.guidance,
        scheduler: p.scheduler.clone(),
        schedule: None,
        sample_as: None,
        clip_skip: None,
        seed: Some(wire_int("seed", seed)?),
        n: Some(1),
        init_image: None,
        strength: None,
        mask: None,
        mask_grow: None,
        steps_mode: None,
        noise: None,
        preset: p.preset.clone(),
        preview_every: Some(0),
        upscale_model: None,
        resize: None,
        refine: None,
    })
}

//! Profile expansion: a request's `profile` (id or name) becomes the parameters it stands for
//! (presenter, voice, style, picture, lip-sync and upscale models), folded in at submission so a
//! later profile edit cannot change a queued job. Fields the request sets itself win.

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Error, Service, Submitter, parse_id};
use crate::config::Config;
use crate::kinds::ParamError;
use crate::kinds::fields::bool_field;
use crate::models::ModelKind;
use crate::pipelines::render::plan::styled_prompt;
use crate::store::records::Profile;

/// A render's presenter: the portrait artifact and the face in it (found by the face
/// detector when the profile has no face box).
#[derive(Serialize)]
struct Presenter {
    portrait: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    face_box: Option<[u32; 4]>,
}

/// What a profile contributes to a render's parameters (in this order).
#[derive(Serialize)]
struct RenderDefaults {
    presenter: Option<Presenter>,
    voice: String,
    length_scale: Option<f32>,
    style: Option<String>,
    negative_prompt: Option<String>,
    preset: Option<String>,
    /// The profile's picture model: the keyframes' diffusion model.
    model: Option<String>,
    /// The profile's lip-sync model, when the render shows a presenter.
    lipsync_model: Option<String>,
    /// The profile's upscaler, when the render is upscaled.
    upscale_model: Option<String>,
}

/// Which of a render's optional stages run, so a profile's model for a stage that does not
/// is not put in the render (whose models its placement looks for).
#[derive(Clone, Copy)]
struct Runs {
    presenting: bool,
    upscaling: bool,
}

/// A profile's text field as a default: an empty one sets nothing.
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl RenderDefaults {
    fn of(p: Profile, runs: Runs) -> Self {
        Self {
            presenter: p.portrait.map(|portrait| Presenter { portrait: portrait.to_string(), face_box: p.face_box }),
            voice: p.voice.model,
            length_scale: p.voice.length_scale,
            style: non_empty(p.style.prompt_prefix),
            negative_prompt: non_empty(p.style.negative_prompt),
            preset: p.style.preset,
            model: p.style.image_model,
            lipsync_model: p.style.lipsync_model.filter(|_| runs.presenting),
            upscale_model: p.style.upscale_model.filter(|_| runs.upscaling),
        }
    }
}

/// What a profile contributes to an image's parameters besides its style, which
/// prefixes the prompt (as in a render's keyframes).
#[derive(Serialize)]
struct ImageDefaults {
    negative_prompt: Option<String>,
    preset: Option<String>,
    /// The profile's picture model.
    model: Option<String>,
}

impl ImageDefaults {
    fn of(p: Profile) -> Self {
        Self { negative_prompt: non_empty(p.style.negative_prompt), preset: p.style.preset, model: p.style.image_model }
    }
}

/// What a profile contributes to a lip-sync's parameters (in this order).
#[derive(Serialize, Default)]
struct LipsyncDefaults {
    portrait: Option<String>,
    face_box: Option<[u32; 4]>,
    voice: Option<String>,
    length_scale: Option<f32>,
    /// The profile's lip-sync model.
    model: Option<String>,
}

impl LipsyncDefaults {
    fn of(p: Profile, params: &Map<String, Value>) -> Self {
        let mut d = Self::default();
        // The face box belongs to the profile's portrait; it only applies to that one.
        if let (Some(portrait), Some(face_box)) = (p.portrait, p.face_box)
            && !is_set(params, "portrait")
        {
            d.portrait = Some(portrait.to_string());
            d.face_box = Some(face_box);
        }
        // The profile's voice only speaks text; given audio needs none.
        if is_set(params, "text") {
            d.voice = Some(p.voice.model);
            d.length_scale = p.voice.length_scale;
        }
        d.model = p.style.lipsync_model;
        d
    }
}

/// Refuses, naming `profile`, another key's profile whose portrait a job would use: a job
/// reads only its own key's files (an admin sees every profile, but their jobs cannot read
/// a family member's portrait; the refusal came at the talking-head stage, or as a missing
/// `presenter.portrait` they never typed).
fn portrait_readable(who: &Submitter, profile: &Profile) -> Result<(), Error> {
    if profile.portrait.is_none() || profile.owner == who.owner {
        return Ok(());
    }
    Err(ParamError::new(
        "profile",
        format!(
            "profile {:?} ({}) is another key's: a job reads only its own key's files, so its portrait cannot be \
             used; make a profile of your own with that portrait, or give `presenter`/`portrait` yourself",
            profile.name, profile.id
        ),
    )
    .into())
}

/// The command that gives profile `name` a face box, its name quoted for a shell when it
/// needs it: what a render refused for want of one, and `profiles create`, both say.
/// `reelbox` is how the command starts: the CLI adds the `--url` its user typed; the
/// daemon, which cannot know it, says `reelbox`.
pub fn face_box_fix(reelbox: &str, name: &str) -> String {
    format!(
        "`{reelbox} profiles update {} --face-box x,y,w,h` (the face's left, top, width and height in pixels, in \
         the portrait)",
        crate::error_text::shell_word(name)
    )
}

/// The command that gives profile `name` another model with `flag` (`--lipsync-model`…):
/// what a job refused for the profile's removed model says, and `reelbox rm` of a model
/// profiles name. `reelbox` as in [`face_box_fix`].
pub fn model_fix(reelbox: &str, name: &str, flag: &str) -> String {
    format!("`{reelbox} profiles update {} {flag} NAME`", crate::error_text::shell_word(name))
}

/// Refuses, naming `profile` and the `profiles update` that mends it, the profile's model
/// `name` of `kind` (set with `flag`) when this box cannot run it, most often because it was
/// removed after the profile chose it (`reelbox rm`), or its voice was never pulled: the
/// job's own refusal named `model`, `lipsync_model` or `voice`, a field the user never typed,
/// without saying the profile had chosen it. One rule for the voice and the picture,
/// lip-sync and upscale models; a voice and a picture model are folders the catalog
/// installs, the others one `model.onnx` each.
fn profile_model_usable(
    profile: &Profile,
    kind: ModelKind,
    flag: &str,
    name: &str,
    config: &Config,
) -> Result<(), Error> {
    let usable = match kind {
        ModelKind::Diffusion | ModelKind::Tts => crate::kinds::inputs::require_installed(flag, kind, name, config),
        _ => crate::kinds::inputs::require_model_file(flag, kind, name, config),
    };
    let Err(e) = usable else { return Ok(()) };
    let (names, cleared) = match kind {
        // A profile always has a voice (`--voice ''` is refused): the fix names another.
        ModelKind::Tts => (format!("'s voice {name:?} is not installed"), String::new()),
        _ => (
            format!(" names {} model {name:?}, which cannot be used", kind.as_str()),
            format!(" (`{flag} ''` leaves it to the box's default)"),
        ),
    };
    Err(ParamError {
        field: "profile".into(),
        message: format!(
            "profile {:?}{names}: {}; {} gives the profile an installed one{cleared}",
            profile.name,
            e.message,
            model_fix("reelbox", &profile.name, flag)
        ),
        model: e.model,
    }
    .into())
}

/// A profile's model a job would use: its kind, the request's field it fills, the
/// `profiles` flag that sets it, its name, and whether the job runs that stage.
type StageModel<'a> = (ModelKind, &'a str, &'a str, &'a Option<String>, bool);

/// [`profile_model_usable`] for each of `models` the job runs and the request does not
/// name a model of its own for (its own is checked, naming its field, by its kind).
fn profile_models_usable(
    profile: &Profile,
    params: &Map<String, Value>,
    models: &[StageModel<'_>],
    config: &Config,
) -> Result<(), Error> {
    for &(kind, field, flag, name, runs) in models {
        if let Some(name) = name.as_deref().filter(|_| runs && !is_set(params, field)) {
            profile_model_usable(profile, kind, flag, name, config)?;
        }
    }
    Ok(())
}

/// Refuses, naming `profile` and the fix, a profile whose portrait has no face box on a box
/// with no face detector to find the face: the render's own refusal named
/// `presenter.face_box`, a field the user never typed, and offered only a pull (which fails
/// offline), while the profile's face box is what a user can give there and then.
fn face_findable(profile: &Profile, config: &Config) -> Result<(), Error> {
    if profile.portrait.is_none() || profile.face_box.is_some() {
        return Ok(());
    }
    let Err(e) = crate::kinds::inputs::face_detector("profile", config) else { return Ok(()) };
    let name = &profile.name;
    let detector =
        e.model.as_ref().map(|m| format!(" (or a face detector: {})", m.no_default_text())).unwrap_or_default();
    Err(ParamError {
        field: "profile".into(),
        message: format!(
            "profile {name:?} has no face box, and this box has no face detector to find the face in its portrait: \
             {} gives it one{detector}; `--layout none` renders without the presenter",
            face_box_fix("reelbox", name)
        ),
        model: e.model,
    }
    .into())
}

fn is_set(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).is_some_and(|v| !v.is_null())
}

/// Sets each non-null field of `defaults` the request left out (or set to null).
fn fill(params: &mut Map<String, Value>, defaults: impl Serialize) -> Result<(), Error> {
    let Value::Object(defaults) =
        serde_json::to_value(defaults).map_err(|e| ParamError::new("profile", e.to_string()))?
    else {
        return Ok(());
    };
    for (key, value) in defaults {
        if !value.is_null() && !is_set(params, &key) {
            params.insert(key, value);
        }
    }
    Ok(())
}

impl Service {
    /// Folds a render request's `profile` into its `presenter`, `voice`, `length_scale`,
    /// `style`, `negative_prompt`, `preset`, (from its `image_model`) `model`, and the
    /// `lipsync_model` and `upscale_model` of the stages the render runs, and leaves `profile`
    /// as the profile's id, which the render keeps (profiles may share a portrait). A voice or
    /// model of the profile's that this box cannot run is refused naming `profile` and its fix.
    pub fn expand_render_profile(&self, who: &Submitter, params: &mut Value) -> Result<(), Error> {
        // Read as the render reads it (`true`, or the word); a bad value it refuses itself.
        let upscaling = matches!(bool_field(params, "upscale"), Ok(Some(true)));
        let Some(obj) = params.as_object_mut() else {
            return Err(ParamError::new("params", "must be a JSON object").into());
        };
        let Some(profile) = self.take_profile(who, obj)? else { return Ok(()) };
        let shown = obj.get("layout").and_then(Value::as_str).is_none_or(|l| l != "none");
        if shown && !is_set(obj, "presenter") {
            portrait_readable(who, &profile)?;
            face_findable(&profile, self.config())?;
        }
        let runs = Runs { presenting: shown && (is_set(obj, "presenter") || profile.portrait.is_some()), upscaling };
        let style = &profile.style;
        let voice = Some(profile.voice.model.clone()).filter(|v| !v.is_empty());
        let models = [
            (ModelKind::Tts, "voice", "--voice", &voice, true),
            (ModelKind::Diffusion, "model", "--image-model", &style.image_model, true),
            (ModelKind::Lipsync, "lipsync_model", "--lipsync-model", &style.lipsync_model, runs.presenting),
            (ModelKind::Upscale, "upscale_model", "--upscale-model", &style.upscale_model, runs.upscaling),
        ];
        profile_models_usable(&profile, obj, &models, self.config())?;
        let id = profile.id.to_string();
        fill(obj, RenderDefaults::of(profile, runs))?;
        obj.insert("profile".into(), Value::String(id));
        Ok(())
    }

    /// Folds an image request's `profile` into its `negative_prompt`, `preset` and (from
    /// its `image_model`) `model`, and puts the profile's style before the prompt, so a
    /// picture made with a profile looks like its renders' keyframes. A picture model of the
    /// profile's that this box cannot run is refused naming `profile` and its fix.
    pub fn expand_image_profile(&self, who: &Submitter, params: &mut Value) -> Result<(), Error> {
        let Some(obj) = params.as_object_mut() else {
            return Err(ParamError::new("params", "must be a JSON object").into());
        };
        let Some(profile) = self.take_profile(who, obj)? else { return Ok(()) };
        let picture = [(ModelKind::Diffusion, "model", "--image-model", &profile.style.image_model, true)];
        profile_models_usable(&profile, obj, &picture, self.config())?;
        if let Some(Value::String(prompt)) = obj.get_mut("prompt") {
            *prompt = styled_prompt(&profile.style.prompt_prefix, prompt);
        }
        fill(obj, ImageDefaults::of(profile))
    }

    /// Folds a lip-sync request's `profile` into its portrait and face box (when it names
    /// no portrait of its own), for spoken text its voice, and its lip-sync model as `model`;
    /// either of those that this box cannot run is refused naming `profile` and its fix.
    pub fn expand_lipsync_profile(&self, who: &Submitter, params: &mut Map<String, Value>) -> Result<(), Error> {
        let Some(profile) = self.take_profile(who, params)? else { return Ok(()) };
        if !is_set(params, "portrait") {
            portrait_readable(who, &profile)?;
        }
        // The profile's voice speaks only text; given audio needs none.
        let voice = Some(profile.voice.model.clone()).filter(|v| !v.is_empty());
        let speaks = is_set(params, "text");
        let models = [
            (ModelKind::Tts, "voice", "--voice", &voice, speaks),
            (ModelKind::Lipsync, "model", "--lipsync-model", &profile.style.lipsync_model, true),
        ];
        profile_models_usable(&profile, params, &models, self.config())?;
        let defaults = LipsyncDefaults::of(profile, params);
        fill(params, defaults)
    }

    /// Takes the `profile` field out of `params`: the submitter's profile by id or by name
    /// (as `reelbox profiles list` shows both), or a field error (one the submitter may
    /// not see is reported like a missing one).
    fn take_profile(&self, who: &Submitter, params: &mut Map<String, Value>) -> Result<Option<Profile>, Error> {
        let Some(raw) = params.remove("profile").filter(|v| !v.is_null()) else { return Ok(None) };
        let raw = raw.as_str().ok_or_else(|| ParamError::new("profile", "must be a profile id or name"))?.to_string();
        self.find_profile(who, "profile", &raw)?.map(Some).ok_or_else(|| {
            ParamError::new("profile", format!("no profile {raw:?} (id or name; `reelbox profiles list` shows them)"))
                .into()
        })
    }

    /// The profile `raw` names, by id or by name, among those `who` may see: `None` when
    /// there is none, an error naming `field` when two or more share the name.
    pub fn find_profile(&self, who: &Submitter, field: &str, raw: &str) -> Result<Option<Profile>, Error> {
        if let Ok(id) = parse_id("profile", raw) {
            return Ok(self.store().profile(id)?.filter(|p| who.may_see(&p.owner)));
        }
        let mut named: Vec<Profile> = self
            .store()
            .profiles(None)?
            .into_iter()
            .filter(|p| crate::text::same(&p.name, raw) && who.may_see(&p.owner))
            .collect();
        // An admin sees everyone's profiles, and names are one per owner: their own profile
        // of that name is the one they mean (a family's admin and child may both have "me").
        if named.len() > 1 && named.iter().filter(|p| p.owner == who.owner).count() == 1 {
            named.retain(|p| p.owner == who.owner);
        }
        if named.len() > 1 {
            let ids: Vec<String> = named.iter().map(|p| p.id.to_string()).collect();
            let msg = format!("{} profiles are named {raw:?}; give one's id ({})", named.len(), ids.join(", "));
            return Err(ParamError::new(field, msg).into());
        }
        Ok(named.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Style, Voice};
    use serde_json::json;

    fn profile() -> Profile {
        Profile {
            id: ulid::Ulid::nil(),
            owner: "local".into(),
            name: "anna".into(),
            portrait: Some(ulid::Ulid::nil()),
            face_box: Some([1, 2, 3, 4]),
            voice_sample: None,
            voice: Voice {
                model: "v".into(),
                speaker: None,
                length_scale: Some(1.5),
                noise_scale: None,
                noise_w: None,
            },
            style: Style {
                prompt_prefix: "oil".into(),
                negative_prompt: String::new(),
                preset: None,
                image_model: Some("styled".into()),
                lipsync_model: Some("talker".into()),
                upscale_model: Some("sharp".into()),
            },
            created_at: 0,
        }
    }

    #[test]
    fn a_render_keeps_its_own_fields_and_takes_the_rest_from_the_profile() {
        let mut params = json!({"voice": "mine", "preset": null}).as_object().cloned().unwrap_or_default();
        fill(&mut params, RenderDefaults::of(profile(), Runs { presenting: true, upscaling: false })).expect("fill");
        assert_eq!(params["voice"], "mine");
        assert_eq!(params["lipsync_model"], "talker", "the profile's lip-sync model makes its presenter talk");
        assert!(!params.contains_key("upscale_model"), "a render that is not upscaled runs no upscaler");
        assert_eq!(params["model"], "styled", "the profile's picture model draws the keyframes");
        assert_eq!(params["style"], "oil");
        assert_eq!(params["length_scale"], 1.5);
        assert_eq!(params["presenter"]["face_box"], json!([1, 2, 3, 4]));
        assert!(!params.contains_key("negative_prompt"), "an empty profile field adds nothing");
        assert!(params["preset"].is_null(), "a profile without a preset leaves the request's null");
    }

    #[test]
    fn an_image_takes_the_profiles_picture_model_and_keeps_its_own_negative_prompt() {
        let mut p = profile();
        p.style.negative_prompt = "blur".into();
        let mut params = json!({"negative_prompt": "text"}).as_object().cloned().unwrap_or_default();
        fill(&mut params, ImageDefaults::of(p)).expect("fill");
        assert_eq!(params["model"], "styled");
        assert_eq!(params["negative_prompt"], "text");
        assert!(!params.contains_key("preset"));
        assert_eq!(styled_prompt("oil", "a cat"), "oil, a cat");
        assert_eq!(styled_prompt("  ", "a cat"), "a cat");
    }

    #[test]
    fn a_lipsync_with_its_own_portrait_and_audio_takes_nothing() {
        let params = json!({"portrait": "x", "audio": "y"}).as_object().cloned().unwrap_or_default();
        let d = LipsyncDefaults::of(profile(), &params);
        assert!(d.portrait.is_none() && d.face_box.is_none() && d.voice.is_none());
    }
}

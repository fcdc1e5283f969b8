//! Parameter helpers shared by kinds that take uploaded files and installed models:
//! model names checked against the install, and input artifacts checked at submission and
//! found while running.

use std::path::PathBuf;

use ulid::Ulid;

use super::{ParamError, StageError, StageRun, ValidateCtx, box_models};
use crate::config::Config;
use crate::kinds::StageName;
use crate::models::{Availability, Catalog, ModelKind, ModelProblem};
use crate::store::records::Artifact;

/// The model of `kind` a request that names none runs ([`Catalog::default_model`]); when
/// the kind has none, an error naming `field` that says how to pull or choose one.
/// On a head, a default only its worker boxes have counts (the head's own first).
pub fn default_model(field: &str, kind: ModelKind, config: &Config) -> Result<String, ParamError> {
    box_models::default_anywhere(config, kind).ok_or_else(|| {
        // Read once (the whole catalog), then worded.
        let problem = Catalog::no_default_problem(config, kind);
        let why = problem.no_default_text_where(box_models::missing_where());
        ParamError::new(field, format!("required: {why}")).with_model(Some(problem))
    })
}

/// The installed face detector (the `face` kind's default) that finds the face in a
/// portrait given without a face box; when none is installed, an error naming `field` that
/// says how to pull one (the model goes along as data, so a client can offer the pull).
pub fn face_detector(field: &str, config: &Config) -> Result<String, ParamError> {
    let detector = Catalog::default_model(config, ModelKind::Face)
        .filter(|d| crate::models::model_file(config, d).is_file())
        .or_else(|| box_models::default_model(config, ModelKind::Face));
    detector.ok_or_else(|| {
        // Read once (the whole catalog), then worded.
        let problem = Catalog::no_default_problem(config, ModelKind::Face);
        let why = problem.no_default_text_where(box_models::missing_where());
        ParamError::new(field, format!("required: [x, y, w, h] of the face, or a face detector: {why}"))
            .with_model(Some(problem))
    })
}

/// Refuses model `name` of `kind` unless it is installed, naming `field` and saying how to
/// pull it (or, for an unknown name, the close names): at submission, not mid-run. On a
/// head, a model a live worker box has counts: placement sends the job there.
pub fn require_installed(field: &str, kind: ModelKind, name: &str, config: &Config) -> Result<(), ParamError> {
    require_kind(field, kind, name, config)?;
    match Availability::of(config, kind, name) {
        Availability::Installed => Ok(()),
        _ if box_models::has(kind, name) => Ok(()),
        missing => Err(ParamError::unavailable_model(field, kind, name, &missing)),
    }
}

/// Refuses model `name` for `field`, which takes a model of `kind`, when it is a model of
/// another kind (`upscale_model: "wav2lip_gan" is a lipsync model, not upscale`), by the
/// rule `reelbox models default` applies ([`Catalog::refuse_other_kind`]): a lip-sync model
/// sent to the upscaler was accepted and failed its job on the graph's inputs. An installed
/// model of `kind` is told by its own files; only another name reads the whole catalog.
pub fn require_kind(field: &str, kind: ModelKind, name: &str, config: &Config) -> Result<(), ParamError> {
    if Catalog::installed_dir_of(config, kind, name).is_some() || box_models::has(kind, name) {
        return Ok(());
    }
    let catalog = Catalog::load(config);
    catalog.refuse_other_kind(name, kind).map_err(|e| {
        // What the field does take, as an unknown name's refusal lists it.
        let installed = catalog.installed_names(kind);
        let listed = if installed.is_empty() { "none".to_string() } else { installed.join(", ") };
        ParamError::new(field, format!("{e}; installed: {listed}")).with_model(Some(ModelProblem {
            kind: kind.as_str().to_string(),
            name: Some(name.to_string()),
            state: "other_kind".to_string(),
            pull: None,
            close: Vec::new(),
            installed,
        }))
    })
}

/// Checks a single-file model's name (a directory under the models dir holding
/// `model.onnx`; the kind's default when unset) and that it is installed; errors name `field`.
pub fn installed_model(
    field: &str,
    name: Option<&str>,
    kind: ModelKind,
    config: &Config,
) -> Result<String, ParamError> {
    let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => default_model(field, kind, config)?,
    };
    let valid =
        !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(ParamError::new(field, format!("{name:?} is not a model name (letters, digits, - _ .)")));
    }
    require_model_file(field, kind, &name, config)?;
    Ok(name)
}

/// Refuses single-file model `name` (lip-sync, upscale, face) unless its `model.onnx` is
/// there: the pull that installs it or the close names of a typo, naming `field`.
/// On a head, a model a live worker box has counts: placement sends the job there.
pub fn require_model_file(field: &str, kind: ModelKind, name: &str, config: &Config) -> Result<(), ParamError> {
    if box_models::has(kind, name) {
        return Ok(());
    }
    require_kind(field, kind, name, config)?;
    require_file_here(field, kind, name, config)
}

/// [`require_model_file`] on this box's own models only.
fn require_file_here(field: &str, kind: ModelKind, name: &str, config: &Config) -> Result<(), ParamError> {
    let file = crate::models::model_file(config, name);
    if file.is_file() {
        return Ok(());
    }
    require_installed(field, kind, name, config)?;
    // The catalog sees the model's folder, but its graph is gone: the fix fits where the
    // model came from, as a job's missing file says it (`EngineError::model_missing`).
    let fix = crate::models::repair_advice(config, &file).map(|f| format!("; fix: {f}")).unwrap_or_default();
    Err(ParamError::new(field, format!("model {name:?} is not installed (no {}){fix}", file.display())))
}

/// The file of single-file model `name` (named by `field`) for a running stage. Checked at
/// submission; one removed since (`reelbox rm --force`) fails the stage at once, saying how
/// to get it back, instead of retrying ONNX Runtime's "file not found".
pub fn stage_model_file(config: &Config, field: &str, kind: ModelKind, name: &str) -> Result<PathBuf, ParamError> {
    require_file_here(field, kind, name, config)?;
    Ok(crate::models::model_file(config, name))
}

/// An input artifact named by a validated parameter, with its file and a label for errors.
pub struct InputFile {
    pub artifact: Artifact,
    pub path: PathBuf,
    /// `field artifact ID (name)`, used in every error about this input.
    pub label: String,
}

impl InputFile {
    /// `artifact` (at `path`) as parameter `field` names it.
    fn new(field: &str, artifact: Artifact, path: PathBuf) -> Self {
        let label = format!("{field} artifact {} ({})", artifact.id, artifact.name);
        Self { artifact, path, label }
    }
}

/// The file of artifact `name` that an earlier stage of this job stored.
pub fn stage_file(run: &StageRun, stage: StageName, name: &str) -> Option<PathBuf> {
    run.sink.stage_artifacts(stage).into_iter().find(|a| a.name == name).map(|a| run.sink.artifact_path(&a))
}

/// Looks up the artifact `id` that the validated parameter `field` names.
pub fn input_file(run: &StageRun, field: &str, id: &str) -> Result<InputFile, StageError> {
    let id = Ulid::from_string(id.trim())
        .map_err(|_| StageError::fatal(format!("{field}: {id:?} is not an artifact id")))?;
    let artifact =
        run.sink.artifact(id)?.ok_or_else(|| StageError::fatal(format!("{field}: artifact {id} not found")))?;
    let path = run.sink.artifact_path(&artifact);
    Ok(InputFile::new(field, artifact, path))
}

/// What an input parameter takes, by the artifact's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A still picture.
    Picture,
    /// A picture or a video.
    Visual,
    /// Sound: audio, or a video's sound track.
    Sound,
}

impl Takes {
    /// The media type families (`image/...`) it takes, and how to say so.
    fn families(self) -> (&'static [&'static str], &'static str) {
        match self {
            Takes::Picture => (&["image"], "a picture (PNG, JPEG or WebP)"),
            Takes::Visual => (&["image", "video"], "a picture (PNG, JPEG or WebP) or an MP4 video"),
            Takes::Sound => (&["audio", "video"], "audio (WAV, MP3, FLAC, Ogg) or a video with sound"),
        }
    }
}

/// Artifact `id` that parameter `field` names, checked at submission: the submitter must
/// have it (their own upload or job output) and it must be what the field takes. Without
/// this a typo'd or foreign id was queued and failed at the job's first stage.
pub fn require_input(ctx: &ValidateCtx, field: &str, id: &str, takes: Takes) -> Result<InputFile, ParamError> {
    let ulid =
        Ulid::from_string(id.trim()).map_err(|_| ParamError::new(field, format!("{id:?} is not an artifact id")))?;
    // Another key's artifact reads as missing: its id says nothing about it.
    // A store error reads as none here: the submitter answers it as the server's error.
    let artifact = ctx.artifacts.artifact(ulid).ok().flatten().ok_or_else(|| {
        ParamError::new(
            field,
            format!(
                "this key has no artifact {ulid}: upload the file (POST /api/v1/artifacts) and send the id it answers"
            ),
        )
    })?;
    let (families, words) = takes.families();
    let family = artifact.media_type.split('/').next().unwrap_or_default();
    if !families.contains(&family) {
        return Err(ParamError::new(
            field,
            format!("artifact {ulid} ({}) is {}; {field} takes {words}", artifact.name, artifact.media_type),
        ));
    }
    let path = ctx.artifacts.artifact_path(&artifact);
    Ok(InputFile::new(field, artifact, path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kinds::OwnArtifacts;

    /// A submitter with no artifacts.
    pub(crate) struct NoArtifacts;

    impl OwnArtifacts for NoArtifacts {
        fn artifact(&self, _id: Ulid) -> Result<Option<Artifact>, crate::store::StoreError> {
            Ok(None)
        }

        fn artifact_path(&self, artifact: &Artifact) -> PathBuf {
            PathBuf::from(&artifact.path)
        }
    }
}

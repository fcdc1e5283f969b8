//! Parameter helpers shared by kinds that take uploaded files and installed models:
//! artifact ids, model names, face boxes, and turning media errors into stage errors.

use std::path::PathBuf;

use ulid::Ulid;

use super::{ParamError, StageError, StageRun, str_param};
use crate::config::Config;
use crate::store::records::Artifact;

/// Reads an optional artifact-id parameter (a ULID string).
pub fn artifact_param(params: &serde_json::Value, field: &str) -> Result<Option<Ulid>, ParamError> {
    str_param(params, field)?
        .map(|s| {
            Ulid::from_string(s.trim()).map_err(|_| ParamError::new(field, format!("{s:?} is not an artifact id")))
        })
        .transpose()
}

/// Reads a model name (a directory under the models dir) and checks it is installed.
pub fn model_param(
    params: &serde_json::Value,
    field: &str,
    default: &str,
    config: &Config,
) -> Result<String, ParamError> {
    let name = str_param(params, field)?.unwrap_or(default).trim().to_string();
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(ParamError::new(field, format!("{name:?} is not a model name (letters, digits, - _ .)")));
    }
    let file = crate::models::model_file(config, &name);
    if !file.is_file() {
        return Err(ParamError::new(field, format!("model {name:?} is not installed (no {})", file.display())));
    }
    Ok(name)
}

/// Reads an optional `[x, y, w, h]` box with a positive size.
pub fn box_param(params: &serde_json::Value, field: &str) -> Result<Option<[u32; 4]>, ParamError> {
    let Some(v) = params.get(field).filter(|v| !v.is_null()) else { return Ok(None) };
    let err = || ParamError::new(field, "must be [x, y, w, h] with non-negative integers and w, h > 0");
    let arr = v.as_array().filter(|a| a.len() == 4).ok_or_else(err)?;
    let mut out = [0u32; 4];
    for (o, x) in out.iter_mut().zip(arr) {
        *o = x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(err)?;
    }
    if out[2] == 0 || out[3] == 0 {
        return Err(err());
    }
    Ok(Some(out))
}

/// An input artifact named by a validated parameter, with its file and a label for errors.
pub struct InputFile {
    pub artifact: Artifact,
    pub path: PathBuf,
    /// `field artifact ID (name)`, used in every error about this input.
    pub label: String,
}

/// The file of artifact `name` that an earlier stage of this job stored.
pub fn stage_file(run: &StageRun, stage: &str, name: &str) -> Option<PathBuf> {
    run.sink.stage_artifacts(stage).into_iter().find(|a| a.name == name).map(|a| run.sink.artifact_path(&a))
}

/// Looks up the artifact a validated id parameter names.
pub fn input_file(run: &StageRun, field: &str) -> Result<InputFile, StageError> {
    let id = artifact_param(run.params, field)?.ok_or_else(|| StageError::fatal(format!("{field}: missing")))?;
    let artifact =
        run.sink.artifact(id).ok_or_else(|| StageError::fatal(format!("{field}: artifact {id} not found")))?;
    let path = run.sink.artifact_path(&artifact);
    let label = format!("{field} artifact {id} ({})", artifact.name);
    Ok(InputFile { artifact, path, label })
}

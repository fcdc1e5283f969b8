//! What the compatibility layers read back from jobs: their final images (not the step
//! previews an `image` job also stores), their audio, and preview frames as they appear.

use crate::store::records::{Artifact, Job};
use crate::store::{Store, StoreError};

/// Every artifact of a job, in stage order then creation order.
pub fn job_artifacts(store: &Store, job: &Job) -> Result<Vec<Artifact>, StoreError> {
    let mut out = Vec::new();
    for stage in &job.stages {
        for id in &stage.artifacts {
            if let Some(a) = store.artifact(*id)? {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// True for the low-resolution step previews an `image` job stores while it denoises.
pub fn is_preview(artifact: &Artifact) -> bool {
    is_preview_named(artifact.stage.as_deref(), &artifact.name)
}

/// [`is_preview`] of an artifact known by its stage and name (a client's view of it).
pub fn is_preview_named(stage: Option<&str>, name: &str) -> bool {
    stage == Some("preview") || name.starts_with("preview")
}

/// The finished pictures of a job, in order.
pub fn final_images(store: &Store, job: &Job) -> Result<Vec<Artifact>, StoreError> {
    Ok(job_artifacts(store, job)?
        .into_iter()
        .filter(|a| a.media_type.starts_with("image/") && !is_preview(a))
        .collect())
}

/// The pictures of the last stage of a job that made any: a picture made in passes (a
/// second pass, an upscale, a resize) answered by its last form, as the web studio shows it.
pub fn last_stage_images(store: &Store, job: &Job) -> Result<Vec<Artifact>, StoreError> {
    let images = final_images(store, job)?;
    let last = images.last().map(|a| a.stage.clone());
    Ok(images.into_iter().filter(|a| Some(&a.stage) == last.as_ref()).collect())
}

/// The first artifact of a job with this media type.
pub fn first_of_type(store: &Store, job: &Job, media_type: &str) -> Result<Option<Artifact>, StoreError> {
    Ok(job_artifacts(store, job)?.into_iter().find(|a| a.media_type == media_type))
}

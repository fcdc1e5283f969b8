//! `DELETE /api/v1/models/{name}`: removes an installed model from the box's models dir,
//! as `reelbox rm` does on the box, for those who drive it from elsewhere: the web
//! studio's Remove, a `reelbox rm` from a login or box whose models dir is not the
//! daemon's. A model a queued or running job runs stays unless forced (those jobs would
//! fail); the profiles that name it are said, since their renders are refused until they
//! name another.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::json::ApiQuery;
use super::views::ProfileView;
use super::{ApiError, AppState};
use crate::models::ModelStore;

/// Query of `DELETE /api/v1/models/{name}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Remove it even though queued or running jobs run it (they fail).
    pub force: Option<bool>,
}

/// A profile that names a model, and as what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileNaming {
    pub id: String,
    pub name: String,
    /// What it names the model as: `voice`, `image_model`, `lipsync_model` or `upscale_model`.
    pub field: String,
}

/// A model removed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelRemoved {
    pub name: String,
    /// The profiles that name it: their renders are refused until they name another.
    pub profiles: Vec<ProfileNaming>,
}

/// The profiles of `list` that name model `name`, as what (one entry per field).
pub fn profiles_naming<'a>(list: impl IntoIterator<Item = &'a ProfileView>, name: &str) -> Vec<ProfileNaming> {
    let mut out = Vec::new();
    for p in list {
        let s = &p.style;
        let models = [
            ("voice", Some(&p.voice.model)),
            ("image_model", s.image_model.as_ref()),
            ("lipsync_model", s.lipsync_model.as_ref()),
            ("upscale_model", s.upscale_model.as_ref()),
        ];
        for (field, model) in models {
            if model.is_some_and(|m| m == name) {
                out.push(ProfileNaming { id: p.id.clone(), name: p.name.clone(), field: field.to_string() });
            }
        }
    }
    out
}

/// Remove an installed model (admin). Queued and running jobs that run it keep it unless
/// `force` (they fail then); the profiles naming it are listed.
#[utoipa::path(delete, path = "/api/v1/models/{name}", operation_id = "remove_model",
    params(("name" = String, Path, description = "the installed model's name (`GET /api/v1/models`)"), RemoveQuery),
    responses((status = 200, body = ModelRemoved),
        (status = 403, description = "`admin_only`", body = super::error::ErrorBody),
        (status = 404, description = "no model of this name is installed on this box", body = super::error::ErrorBody),
        (status = 409, description = "`model_in_use`: queued or running jobs run it (remove it anyway with `force=true`)", body = super::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> Result<Json<ModelRemoved>, ApiError> {
    remove_named(state, caller, name, query).await
}

/// `DELETE /api/v1/models/pull` and `/import`: the routes that pull and import models take
/// those paths, so a model of either name (`models import … --name pull`) is removed here,
/// not answered 405 (the same operation as [`remove`] in the document).
pub async fn remove_shadowed(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> Result<Json<ModelRemoved>, ApiError> {
    let name = uri.path().rsplit('/').next().unwrap_or_default().to_string();
    remove_named(state, caller, name, query).await
}

async fn remove_named(
    state: AppState,
    caller: Caller,
    name: String,
    query: RemoveQuery,
) -> Result<Json<ModelRemoved>, ApiError> {
    super::jobs::require_admin(&caller)?;
    let store = ModelStore::new(&state.config);
    // A model only worker boxes have is not this box's to remove.
    let installed = crate::models::manifest::valid_name(&name)
        && (store.installed_manifest(&name).is_some() || store.model_dir(&name).is_dir());
    if !installed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("model {name:?} is not installed on this box (`GET /api/v1/models` lists what is)"),
        ));
    }
    if !query.force.unwrap_or(false) {
        let jobs = state.jobs.jobs_needing_model(&name)?;
        if !jobs.is_empty() {
            let ids: Vec<String> = jobs.iter().map(ToString::to_string).collect();
            let message = format!(
                "{name} is needed by queued or running job(s) {}, which would fail without it; cancel them, or \
                 remove it anyway with force=true",
                ids.join(", ")
            );
            return Err(ApiError::new(StatusCode::CONFLICT, "model_in_use", message));
        }
    }
    let removing = name.clone();
    tokio::task::spawn_blocking(move || store.rm(&removing))
        .await
        .map_err(|e| ApiError::internal(format!("removing model {name} failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("removing model {name} failed: {e}")))?;
    tracing::info!(model = %name, by = %caller.label, "model removed");
    let views: Vec<ProfileView> = state.store.profiles(None)?.iter().map(ProfileView::from).collect();
    Ok(Json(ModelRemoved { profiles: profiles_naming(&views, &name), name }))
}

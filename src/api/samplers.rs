//! `GET /api/v1/samplers`: the samplers (`scheduler`) and ComfyUI schedules (`schedule`) an
//! image request may name, each with the name A1111 and ComfyUI users know it by, read from
//! the sampler code itself (`SchedulerChoice::all`, `Schedule::all`), so a client such as the
//! web studio offers what the box runs instead of a list typed again.

use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use crate::pipelines::diffusion::samplers::{Schedule, SchedulerChoice};

/// A sampler or schedule: the name a request gives and the one a person reads.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamplerChoiceView {
    /// As a request's `scheduler` (a sampler) or `schedule` names it: `dpmpp_2m`, `karras`.
    pub name: String,
    /// As A1111 shows it and a picture's PNG text says it: `DPM++ 2M`, `Karras`.
    pub label: String,
}

/// The samplers and schedules of this box.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SamplerList {
    /// What an image request's `scheduler` takes.
    pub samplers: Vec<SamplerChoiceView>,
    /// What an image request's `schedule` takes.
    pub schedules: Vec<SamplerChoiceView>,
}

/// The samplers and schedules an image request may name.
#[utoipa::path(get, path = "/api/v1/samplers", operation_id = "list_samplers",
    responses((status = 200, body = SamplerList)))]
pub async fn list(_caller: Caller) -> Json<SamplerList> {
    let view = |name: &str, label: &str| SamplerChoiceView { name: name.into(), label: label.into() };
    Json(SamplerList {
        samplers: SchedulerChoice::all().map(|c| view(c.name(), c.label())).collect(),
        schedules: Schedule::all().map(|s| view(s.name(), s.label())).collect(),
    })
}

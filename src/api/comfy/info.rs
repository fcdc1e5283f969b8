//! What ComfyUI clients ask before they queue: nodes, models, devices.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::answers::{Device, Features, NodeInfo, SystemInfo, SystemStats};
use super::nodes::{NodeSpec, SpecContext, class_types, input_config, spec};
use crate::api::auth::Caller;
use crate::api::{ApiError, AppState};
use crate::gpu::DeviceId;
use crate::models::{Catalog, ModelKind};

/// Installed models of `kind` (on a head, its live worker boxes' too: a workflow naming
/// one is run there), sorted, each once.
fn installed(catalog: &Catalog, kind: ModelKind) -> Vec<String> {
    let mut names = catalog.installed_names(kind);
    names.extend(crate::kinds::box_models::names(kind));
    names.sort();
    names.dedup();
    names
}

/// The spec context of this daemon: installed checkpoints (and the bases of fused models,
/// which run through their LoRA loaders), upscale models and LoRAs (on a head, its live
/// worker boxes' too: [`crate::kinds::box_models::checkpoints`]), and limits.
pub fn spec_context(state: &AppState) -> SpecContext {
    let catalog = Catalog::load(&state.config);
    let fused = crate::kinds::box_models::checkpoints(&catalog);
    let mut checkpoints = installed(&catalog, ModelKind::Diffusion);
    checkpoints.extend(super::lora_target::bases_alone(&fused));
    checkpoints.sort();
    checkpoints.dedup();
    SpecContext {
        checkpoints,
        upscale_models: installed(&catalog, ModelKind::Upscale),
        loras: fused.lora_files(),
        max_side: state.config.limits.max_image_side,
        max_steps: state.config.limits.max_steps,
        // EmptyLatentImage `batch_size` becomes the job's `n`.
        max_batch: crate::kinds::image::MAX_IMAGES as u32,
    }
}

/// Every node reelbox runs, in ComfyUI's `/object_info` shape.
#[utoipa::path(get, path = "/object_info", tag = "comfyui",
    responses((status = 200, body = HashMap<String, NodeInfo>, description = "each node by its class type")))]
pub async fn object_info(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let ctx = spec_context(&state);
    let all: Map<String, Value> =
        class_types().filter_map(|c| spec(c, &ctx)).map(|s| (s.class_type.to_string(), node_info(&s))).collect();
    Json(Value::Object(all))
}

/// One node's description (`{}` for a node reelbox does not run, as ComfyUI answers).
#[utoipa::path(get, path = "/object_info/{node_class}", tag = "comfyui", params(("node_class" = String, Path)),
    responses((status = 200, body = HashMap<String, NodeInfo>, description = "the node by its class type, or `{}`")))]
pub async fn object_info_one(State(state): State<AppState>, _caller: Caller, Path(class): Path<String>) -> Json<Value> {
    let ctx = spec_context(&state);
    Json(match spec(&class, &ctx) {
        Some(s) => json!({ s.class_type: node_info(&s) }),
        None => json!({}),
    })
}

/// Model folders (`["checkpoints", "upscale_models", "loras"]`). An OpenAI SDK whose `base_url` lacks `/v1` lands
/// here for `models.list()`: it is told to add `/v1` instead of getting a list it cannot read.
#[utoipa::path(get, path = "/models", tag = "comfyui", responses((status = 200, body = Vec<String>, description = "model folder names")))]
pub async fn model_folders(State(state): State<AppState>, _caller: Caller, headers: HeaderMap) -> Response {
    if crate::api::openai::from_openai_sdk(&headers) {
        let base = crate::api::origin::base_url(&headers, &state.config);
        return crate::api::openai::missing_v1_error(&base).into_response();
    }
    Json(json!(MODEL_FOLDERS)).into_response()
}

/// ComfyUI's model folders reelbox has: what the loaders' choices list.
const MODEL_FOLDERS: [&str; 3] = ["checkpoints", "upscale_models", "loras"];

/// The models of a folder (`checkpoints`: installed diffusion models and fused models'
/// bases; `upscale_models`: installed upscale models; `loras`: the LoRA files fused models
/// were made with).
#[utoipa::path(get, path = "/models/{folder}", tag = "comfyui", params(("folder" = String, Path)),
    responses((status = 200, body = Vec<String>, description = "model names"),
        (status = 404, description = "no such model folder", body = super::error::ComfyErrorBody)))]
pub async fn models_in(State(state): State<AppState>, _caller: Caller, Path(folder): Path<String>) -> Response {
    match folder.as_str() {
        "checkpoints" => Json(spec_context(&state).checkpoints).into_response(),
        "upscale_models" => Json(spec_context(&state).upscale_models).into_response(),
        "loras" => Json(spec_context(&state).loras).into_response(),
        _ => super::error::ComfyError::from(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no model folder {folder:?}; reelbox has {}", MODEL_FOLDERS.join(", ")),
        ))
        .into_response(),
    }
}

/// The textual-inversion embeddings installed, by the names `embedding:NAME` takes.
#[utoipa::path(get, path = "/embeddings", tag = "comfyui", responses((status = 200, body = Vec<String>, description = "embedding names")))]
pub async fn embeddings(State(state): State<AppState>, _caller: Caller) -> Json<Vec<String>> {
    Json(crate::kinds::image::embeddings::installed(&state.config).0.iter().map(|e| e.name.clone()).collect())
}

/// `MemTotal` and `MemAvailable` from /proc/meminfo, bytes.
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// Devices in ComfyUI's shape: every GPU the workers run on (worker boxes' too), with its
/// memory from the latest telemetry sample, or the CPU (with system RAM) when there is none.
pub fn devices(state: &AppState) -> Vec<Device> {
    const MIB: u64 = 1 << 20;
    let latest = state.scheduler.telemetry().latest();
    let gpus: Vec<Device> = state
        .scheduler
        .gpus()
        .iter()
        .filter_map(|g| match g.id {
            DeviceId::Cuda(i) => {
                let sample = latest.as_ref().and_then(|s| s.gpus.iter().find(|x| x.index == i));
                let total = sample.and_then(|x| x.mem_total_mib).map_or(g.memory_total, |m| m * MIB);
                let free = sample.and_then(|x| x.mem_free_mib()).map_or(total, |m| m * MIB);
                Some(Device::gpu(format!("cuda:{i} {}", g.name), i, total, free))
            }
            DeviceId::Cpu | DeviceId::Remote { .. } => None,
        })
        .collect();
    // Worker boxes' GPUs follow, named `NAME/cuda:N` (their index is the one on that box).
    let remote = latest.iter().flat_map(|s| s.remote_gpus.iter()).map(|g| {
        let total = g.mem_total_mib.unwrap_or(0) * MIB;
        let free = g.mem_free_mib().map_or(total, |m| m * MIB);
        Device::gpu(format!("{} {}", g.device(), g.name), g.index, total, free)
    });
    let gpus: Vec<Device> = gpus.into_iter().chain(remote).collect();
    if !gpus.is_empty() {
        return gpus;
    }
    let (ram_total, ram_free) = memory();
    vec![Device {
        name: "cpu".into(),
        kind: "cpu".into(),
        index: None,
        vram_total: ram_total,
        vram_free: ram_free,
        torch_vram_total: ram_total,
        torch_vram_free: ram_free,
    }]
}

/// The machine and its devices, in ComfyUI's `/system_stats` shape.
#[utoipa::path(get, path = "/system_stats", tag = "comfyui", responses((status = 200, body = SystemStats)))]
pub async fn system_stats(State(state): State<AppState>, _caller: Caller) -> Json<SystemStats> {
    let (ram_total, ram_free) = memory();
    let system = SystemInfo {
        os: std::env::consts::OS.into(),
        ram_total,
        ram_free,
        comfyui_version: format!("reelbox-{}", env!("CARGO_PKG_VERSION")),
        python_version: String::new(),
        pytorch_version: String::new(),
        embedded_python: false,
        argv: vec!["reelbox".into(), "serve".into()],
    };
    Json(SystemStats { system, devices: devices(&state) })
}

/// Body of `POST /free`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub struct FreeRequest {
    /// Unload the models no prompt is using now.
    #[serde(default)]
    pub unload_models: bool,
    /// ComfyUI also drops its caches; for reelbox the same as `unload_models`.
    #[serde(default)]
    pub free_memory: bool,
}

/// Unload models now instead of after `runtime.keep_alive_s` (what a running prompt uses stays).
#[utoipa::path(post, path = "/free", tag = "comfyui", request_body = Option<FreeRequest>,
    responses((status = 200, description = "done: no body, as ComfyUI answers")))]
pub async fn free(
    State(state): State<AppState>,
    _caller: Caller,
    body: Result<crate::api::json::ApiBytes, ApiError>,
) -> Result<StatusCode, super::error::ComfyError> {
    let req: FreeRequest = super::error::parse_or_default(body)?;
    if req.unload_models || req.free_memory {
        let gone = state.scheduler.engine().unload_unused();
        tracing::info!(sessions = gone, "ComfyUI /free unloaded the models no job was using");
    }
    Ok(StatusCode::OK)
}

/// Front-end extension scripts: reelbox has none (`[]`).
#[utoipa::path(get, path = "/extensions", tag = "comfyui", responses((status = 200, body = Vec<String>, description = "extension script paths: none")))]
pub async fn extensions(_caller: Caller) -> Json<Value> {
    Json(json!([]))
}

/// What the server supports, as ComfyUI's front end asks (`/features`).
#[utoipa::path(get, path = "/features", tag = "comfyui", responses((status = 200, body = Features)))]
pub async fn features(State(state): State<AppState>, _caller: Caller) -> Json<Features> {
    Json(Features { supports_preview_metadata: false, max_upload_size: state.config.limits.max_upload_bytes })
}

/// The `/object_info` entry of a node. Every input is listed as required, as ComfyUI does
/// for these nodes (reelbox is lenient and fills `denoise` and `filename_prefix`).
pub fn node_info(spec: &NodeSpec) -> Value {
    let mut required = serde_json::Map::new();
    for input in &spec.inputs {
        let config = if spec.class_type == "LoadImage" {
            // Clients show an upload button for this flag.
            json!([[], {"image_upload": true}])
        } else {
            input_config(&input.kind)
        };
        required.insert(input.name.into(), config);
    }
    let order: Vec<&str> = spec.inputs.iter().map(|i| i.name).collect();
    json!({
        "input": {"required": required},
        "input_order": {"required": order},
        "output": spec.outputs,
        "output_is_list": spec.outputs.iter().map(|_| false).collect::<Vec<_>>(),
        "output_name": spec.outputs,
        "name": spec.class_type,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": spec.python_module,
        "category": spec.category,
        "output_node": spec.output_node,
    })
}

//! ComfyUI's answers in the shapes its own server sends them (a ComfyUI client reads them
//! so): typed where a handler fills in fixed fields, and described for the document where
//! a handler builds them from records (`/queue`'s items, `/history`, `/object_info`), which
//! `tests/it/api_fuzz.rs` holds the handlers to.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// `POST /upload/image`: the name to give `LoadImage` (and `/view`), and where it went.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedImage {
    /// The picture's name, `<stem>_<id>.<ext>`.
    pub name: String,
    /// The subfolder the form named, as sent.
    pub subfolder: String,
    /// The folder it went to: `input` (the default), `temp` or `output`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(input|temp|output)$")]
    pub folder: String,
}

/// `POST /prompt`: the queued prompt.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromptQueued {
    /// The id `/history/{prompt_id}` and `/ws`'s messages name it by.
    pub prompt_id: String,
    /// Its place in the queue's numbering.
    pub number: i64,
    /// Problems with output nodes that were left out, by node id (reelbox refuses the whole
    /// prompt instead, so always `{}`).
    #[schema(value_type = Object)]
    pub node_errors: Map<String, Value>,
}

/// `GET /prompt`: how much is left to run.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueInfo {
    pub exec_info: ExecInfo,
}

/// [`QueueInfo`]'s one field.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecInfo {
    /// Prompts (and other jobs) queued or running on the box.
    pub queue_remaining: u64,
}

/// `GET /features`: what the server supports, as ComfyUI's front end asks.
#[derive(Debug, Serialize, ToSchema)]
pub struct Features {
    /// Whether preview pictures on `/ws` carry metadata (reelbox sends none).
    pub supports_preview_metadata: bool,
    /// The largest upload taken, bytes (`limits.max_upload_bytes`).
    pub max_upload_size: usize,
}

/// `GET /system_stats`: the machine and the devices prompts run on.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStats {
    pub system: SystemInfo,
    pub devices: Vec<Device>,
}

/// The machine, in ComfyUI's terms (no Python or PyTorch: those are empty).
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemInfo {
    pub os: String,
    /// Memory, bytes.
    pub ram_total: u64,
    pub ram_free: u64,
    /// `reelbox-VERSION`.
    pub comfyui_version: String,
    pub python_version: String,
    pub pytorch_version: String,
    pub embedded_python: bool,
    pub argv: Vec<String>,
}

/// One device: a GPU, or the CPU (with system RAM) on a box without one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    /// `cuda:N NAME`, a worker box's `BOX/cuda:N NAME`, or `cpu`.
    pub name: String,
    /// `cuda` or `cpu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The GPU's index on its box; `null` for the CPU.
    pub index: Option<u32>,
    /// Memory, bytes.
    pub vram_total: u64,
    pub vram_free: u64,
    pub torch_vram_total: u64,
    pub torch_vram_free: u64,
}

impl Device {
    /// A GPU with `total` bytes of memory, `free` of them free (PyTorch's own figures the same).
    pub fn gpu(name: String, index: u32, total: u64, free: u64) -> Self {
        Device {
            name,
            kind: "cuda".into(),
            index: Some(index),
            vram_total: total,
            vram_free: free,
            torch_vram_total: total,
            torch_vram_free: free,
        }
    }
}

/// `GET /queue`: the caller's running and pending prompts.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueContents {
    #[schema(value_type = Vec<QueueItem>)]
    pub queue_running: Vec<Value>,
    /// In the order they will run.
    #[schema(value_type = Vec<QueueItem>)]
    pub queue_pending: Vec<Value>,
}

/// A queue item: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
pub struct QueueItem;

impl PartialSchema for QueueItem {
    fn schema() -> RefOr<Schema> {
        let outputs = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String));
        tuple(
            "`[number, prompt_id, prompt (the graph), extra_data, outputs_to_execute (output node ids)]`",
            [
                ObjectBuilder::new().schema_type(Type::Integer).into(),
                ObjectBuilder::new().schema_type(Type::String).into(),
                ObjectBuilder::new().schema_type(Type::Object).into(),
                ObjectBuilder::new().schema_type(Type::Object).into(),
                outputs.into(),
            ],
        )
    }
}

impl ToSchema for QueueItem {}

/// An array whose items are, in order, `items` (more may follow, as ComfyUI adds them).
fn tuple<const N: usize>(description: &str, items: [Schema; N]) -> RefOr<Schema> {
    ArrayBuilder::new().description(Some(description)).prefix_items(items).min_items(Some(N)).into()
}

/// A finished prompt in `/history`, by its prompt id.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct HistoryEntry {
    prompt: QueueItem,
    /// What each output node showed, by node id.
    outputs: HashMap<String, NodeOutput>,
    status: PromptStatus,
    /// Which node each output is, by node id.
    meta: HashMap<String, OutputMeta>,
}

/// An output node's pictures.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct NodeOutput {
    images: Vec<ImageRef>,
}

/// A picture by its ComfyUI name: `/view`'s query.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct ImageRef {
    filename: String,
    subfolder: String,
    /// `output`, `temp` or `input`.
    #[schema(rename = "type")]
    folder: String,
}

/// How a prompt ended.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct PromptStatus {
    /// `success` or `error` (failed or interrupted).
    #[schema(pattern = "^(success|error)$")]
    status_str: String,
    completed: bool,
    /// The `/ws` messages of its run.
    messages: Vec<StatusMessage>,
}

/// One of a prompt's messages: `[type, data]`.
pub struct StatusMessage;

impl PartialSchema for StatusMessage {
    fn schema() -> RefOr<Schema> {
        tuple(
            "`[type, data]`, as `/ws` sent it (`execution_start`, `execution_success`…)",
            [
                ObjectBuilder::new().schema_type(Type::String).into(),
                ObjectBuilder::new().schema_type(Type::Object).into(),
            ],
        )
    }
}

impl ToSchema for StatusMessage {}

/// An output node as the history names it.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct OutputMeta {
    node_id: String,
    display_node: String,
    parent_node: Option<String>,
    real_node_id: String,
}

/// A node in `/object_info`, by its class type.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct NodeInfo {
    input: NodeInputs,
    input_order: InputOrder,
    /// Its outputs' types.
    output: Vec<String>,
    output_is_list: Vec<bool>,
    output_name: Vec<String>,
    /// Its class type.
    name: String,
    display_name: String,
    description: String,
    python_module: String,
    category: String,
    /// Whether it ends a graph (SaveImage, PreviewImage).
    output_node: bool,
}

/// A node's inputs by name (reelbox lists every one as required).
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct NodeInputs {
    required: HashMap<String, InputSpec>,
    optional: Option<HashMap<String, InputSpec>>,
}

/// The order a node's inputs are shown in.
#[derive(ToSchema)]
#[allow(dead_code)] // only describes the handlers' JSON
pub struct InputOrder {
    required: Vec<String>,
    optional: Option<Vec<String>>,
}

/// One input: `[type]`, `[type, options]` or `[choices, options]`.
pub struct InputSpec;

impl PartialSchema for InputSpec {
    fn schema() -> RefOr<Schema> {
        let choices = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String));
        let kind = OneOfBuilder::new().item(ObjectBuilder::new().schema_type(Type::String)).item(choices);
        ArrayBuilder::new()
            .description(Some(
                "`[type]` (`INT`, `FLOAT`, `STRING`, or what a link carries: `MODEL`…), \
                 `[type, {default, min, max, step…}]`, or `[[choices…], {options}]`",
            ))
            .prefix_items([Schema::from(kind), ObjectBuilder::new().schema_type(Type::Object).into()])
            .min_items(Some(1))
            .max_items(Some(2))
            .into()
    }
}

impl ToSchema for InputSpec {}

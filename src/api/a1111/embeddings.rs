//! `GET /sdapi/v1/embeddings`: the textual-inversion embeddings installed, as A1111 lists
//! them: `loaded` those the model the caller's requests draw with takes (its text encoders as
//! wide as their vectors, and made to take them), `skipped` the others; and
//! `POST /sdapi/v1/refresh-embeddings`, which clients send after adding one.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::info::current;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::kinds::image::diffusion_model;
use crate::kinds::image::embeddings::installed;

/// One embedding, as A1111 describes one.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Embedding)]
pub struct EmbeddingItem {
    /// Training steps, where the file says them (reelbox keeps none).
    pub step: Option<u64>,
    pub sd_checkpoint: Option<String>,
    pub sd_checkpoint_name: Option<String>,
    /// The width of its vectors (SDXL's: both encoders' together, 768 + 1280).
    pub shape: usize,
    /// How many tokens it takes in a prompt.
    pub vectors: usize,
}

/// The answer: embeddings by name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = A1111Embeddings)]
pub struct Embeddings {
    pub loaded: BTreeMap<String, EmbeddingItem>,
    pub skipped: BTreeMap<String, EmbeddingItem>,
}

/// The embeddings installed, by whether the caller's model takes them.
#[utoipa::path(get, path = "/sdapi/v1/embeddings", operation_id = "a1111_embeddings", tag = "a1111", responses((status = 200, body = Embeddings)))]
pub async fn embeddings(State(state): State<AppState>, caller: Caller) -> Json<Embeddings> {
    let info = current(&state, &caller).and_then(|m| diffusion_model("sd_model_checkpoint", &m, &state.config).ok());
    let mut out = Embeddings { loaded: BTreeMap::new(), skipped: BTreeMap::new() };
    for e in &installed(&state.config).0 {
        let item = EmbeddingItem {
            step: None,
            sd_checkpoint: None,
            sd_checkpoint_name: None,
            shape: e.widths().iter().sum(),
            vectors: e.vectors(),
        };
        let list = if info.as_ref().is_none_or(|i| i.takes(e)) { &mut out.loaded } else { &mut out.skipped };
        list.insert(e.name.clone(), item);
    }
    Json(out)
}

/// A1111 reads its embeddings folder again here; reelbox reads its models dir whenever it
/// changed (`Catalog::load`), so an embedding imported since is already listed.
#[utoipa::path(post, path = "/sdapi/v1/refresh-embeddings", operation_id = "a1111_refresh_embeddings", tag = "a1111", responses((status = 200, body = Option<Object>, description = "`null`, as A1111 answers")))]
pub async fn refresh_embeddings(_caller: Caller) -> Json<serde_json::Value> {
    Json(serde_json::Value::Null)
}

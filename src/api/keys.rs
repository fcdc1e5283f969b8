//! `/api/v1/keys`: create, list and revoke API keys. A key is shown once, in the answer
//! to its creation; afterwards only its hash exists.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::jobs::{parse_id, require_admin};
use super::json::ApiJson;
use super::views::time;
use super::{ApiError, AppState};
use crate::store::keys::{hash_secret, new_secret};
use crate::store::quota::day_of;
use crate::store::records::{ApiKey, Scope, now_ms};
use crate::store::{Store, StoreError};

/// Body of `POST /api/v1/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A name for people (`laptop`, `open-webui`); need not be unique.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// `client` (default: own records only) or `admin` (everything, and key management).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(client|admin)$")]
    pub scope: Option<String>,
    /// Most queued jobs at once (each quota 1 or more; left out, none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub max_queued: Option<u64>,
    /// GPU-seconds per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub gpu_seconds_per_day: Option<u64>,
    /// Most bytes of artifacts (uploads and job outputs) the key may hold; uploads past
    /// it are refused with 413, job outputs still count but are never refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub max_storage_bytes: Option<u64>,
}

/// A key's record (never the key itself, except in `key` right after creation).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Also the owner id of the records made with this key.
    pub id: String,
    pub name: String,
    pub scope: String,
    pub max_queued: Option<u64>,
    pub gpu_seconds_per_day: Option<u64>,
    /// Storage quota, bytes.
    #[serde(default)]
    pub max_storage_bytes: Option<u64>,
    /// Bytes of artifacts this key holds now.
    #[serde(default)]
    pub storage_bytes: u64,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Who revoked it (`key "mum"`, `user alice`, `its own holder`); absent while it is
    /// active and for keys revoked before reelbox kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Jobs of this key waiting in the queue now.
    pub queued: u64,
    /// GPU-seconds charged to this key today (UTC).
    pub gpu_seconds_today: u64,
    /// GPU-seconds reserved by this key's unfinished jobs (estimates, released as they end).
    #[serde(default)]
    pub gpu_seconds_reserved: u64,
    /// The key; present only in the answer to its creation. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The answer to a revoke: the key, whether it was revoked before, and what it stopped.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    /// True when the key was revoked before this request; `revoked_at` is that earlier time.
    pub already_revoked: bool,
    /// Queued and running jobs of the key this revoke canceled (each `canceled` event says
    /// the key was revoked); finished jobs and their files stay.
    pub canceled_jobs: u64,
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Admin => "admin",
        Scope::Client => "client",
    }
}

/// The view of a key with its usage; `secret` only right after creation.
pub fn key_view(store: &Store, k: &ApiKey, secret: Option<String>) -> Result<KeyView, StoreError> {
    let owner = k.id.to_string();
    Ok(KeyView {
        queued: store.owner_queued(&owner)?,
        gpu_seconds_today: store.gpu_ms_used(&owner, day_of(now_ms()))? / 1000,
        gpu_seconds_reserved: store.gpu_ms_reserved(&owner)?.div_ceil(1000),
        storage_bytes: store.owner_bytes(&owner)?,
        id: owner,
        name: k.name.clone(),
        scope: scope_name(k.scope).into(),
        max_queued: k.max_queued,
        gpu_seconds_per_day: k.gpu_seconds_per_day,
        max_storage_bytes: k.max_storage_bytes,
        created_at: time(k.created_at),
        revoked_at: k.revoked_at.map(time),
        revoked_by: k.revoked_by.clone(),
        key: secret,
    })
}

/// What a refused key's holder is told: when it was revoked and what to do, else
/// `fallback` (a mistyped key, or one from another box).
pub fn refused_key_message(store: &Store, hash: &str, fallback: &str) -> String {
    match store.revoked_key_by_hash(hash) {
        Ok(Some(k)) => revoked_message(&k),
        _ => fallback.to_string(),
    }
}

/// The refusal of key `k`, revoked: when, by whom (when kept), and who can give a new one.
pub fn revoked_message(k: &ApiKey) -> String {
    let when = k.revoked_at.map(time).unwrap_or_default();
    let by = by_whom(k.revoked_by.as_deref());
    format!("the key {:?} was revoked at {when}{by}; ask whoever runs the box for a new key", k.name)
}

/// ` by WHOM` after a revoke's time where who revoked the key is kept, else nothing.
pub fn by_whom(revoked_by: Option<&str>) -> String {
    revoked_by.map(|by| format!(" by {by}")).unwrap_or_default()
}

/// How a revoke's record names who made it: the revoking key or proxy user (its label), or
/// the key's own holder.
fn revoker(caller: &Caller, key: ulid::Ulid) -> String {
    if caller.key_id == Some(key) { "its own holder".into() } else { caller.label.clone() }
}

/// Resolves once key `key` is revoked (or its record is gone or unreadable), with its
/// record when there is one; checked now and whenever keys change, never per message. An
/// event stream and a ComfyUI socket of the key end on it. Pending forever after shutdown.
pub fn key_revoked(state: &AppState, key: ulid::Ulid) -> impl Future<Output = Option<ApiKey>> + Send + 'static {
    // Subscribed before the first check, so a revoke between the two is not missed.
    let mut changes = state.gate.key_changes.subscribe();
    let store = state.store.clone();
    async move {
        loop {
            match store.key(key) {
                Ok(Some(k)) if k.revoked_at.is_none() => {}
                Ok(k) => return k,
                Err(e) => {
                    tracing::warn!(key = %key, "cannot read the key of an open stream; ending it: {e}");
                    return None;
                }
            }
            if changes.changed().await.is_err() {
                // The gate is gone (shutdown): the stream ends with the server.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// An event stream (`text/event-stream`) of key `key` that ends once the key is revoked
/// ([`key_revoked`]), its last message a `revoked` event saying when and by whom (a
/// follower would otherwise see a stream that just stopped); any other response as it is.
pub fn end_stream_on_revoke(
    state: &AppState,
    key: ulid::Ulid,
    resp: axum::response::Response,
) -> axum::response::Response {
    use futures::StreamExt;
    let is_stream = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        return resp;
    }
    // Set once the revoke ended the stream; a stream that ended by itself (the job's final
    // state, shutdown) leaves it unset and gets no revoke message.
    let fired = std::sync::Arc::new(std::sync::OnceLock::new());
    let revoked = key_revoked(state, key);
    let revoked = {
        let fired = fired.clone();
        async move {
            let _ = fired.set(revoked.await);
            tracing::info!(key = %key, "an event stream of a revoked key ended");
        }
    };
    let last = futures::stream::once(async move {
        fired.get().map(|k: &Option<ApiKey>| Ok::<_, axum::Error>(axum::body::Bytes::from(revoked_event(k.as_ref()))))
    })
    .filter_map(std::future::ready);
    let (parts, body) = resp.into_parts();
    let body = axum::body::Body::from_stream(body.into_data_stream().take_until(revoked).chain(last));
    axum::response::Response::from_parts(parts, body)
}

/// The Server-Sent Event that ends a revoked key's stream: `revoked`, without an id (it is
/// no stored event to resume after), its `message` [`revoked_message`].
fn revoked_event(k: Option<&ApiKey>) -> String {
    // Without its record (gone), the words of a socket's close frame, which need none.
    let message = k.map(revoked_message).unwrap_or_else(|| revoked_close_reason(None));
    let data = serde_json::json!({"type": "revoked", "message": message});
    format!("event: revoked\ndata: {data}\n\n")
}

/// [`revoked_message`] as the reason of a WebSocket close frame, which holds at most 123
/// bytes: without the key's name when a long name would not fit.
pub fn revoked_close_reason(k: Option<&ApiKey>) -> String {
    const MAX: usize = 123;
    let whole = k.map(revoked_message).filter(|m| m.len() <= MAX);
    whole.unwrap_or_else(|| {
        let when = k.and_then(|k| k.revoked_at).map(|t| format!(" at {}", time(t))).unwrap_or_default();
        format!("the key was revoked{when}; ask whoever runs the box for a new key")
    })
}

/// Create a key (admin; or, while no key exists, a loopback caller).
#[utoipa::path(post, path = "/api/v1/keys", operation_id = "create_key", request_body = CreateKeyRequest,
    responses((status = 201, body = KeyView), (status = 403, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    require_admin(&caller)?;
    // While no key exists the caller is the keyless local admin (or the CLI with the
    // database open); the first key must keep someone able to manage keys.
    let bootstrap = caller.key_id.is_none() && state.gate.keyless();
    let (key, secret) = build_key(&state.store, &req, bootstrap)?;
    let key = state.store.create_key(key, bootstrap).await?;
    state.gate.refresh(&state.store)?;
    tracing::info!(key = %key.id, name = %key.name, scope = scope_name(key.scope), by = %caller.label, "API key created");
    Ok((StatusCode::CREATED, Json(key_view(&state.store, &key, Some(secret))?)))
}

/// Validates a creation request and makes the key and its record (not yet stored).
pub fn build_key(store: &Store, req: &CreateKeyRequest, first: bool) -> Result<(ApiKey, String), ApiError> {
    let name = crate::text::clean(req.name.trim());
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::field("name", "must be 1–64 printable characters"));
    }
    let scope = match req.scope.as_deref().unwrap_or("client") {
        "client" => Scope::Client,
        "admin" => Scope::Admin,
        other => return Err(ApiError::field("scope", format!("must be client or admin, not {other:?}"))),
    };
    // 0 reads as "no limit" to many people, but would refuse every job or upload: refused,
    // as one key's "no quota" is the field left out.
    for (field, value) in [
        ("max_queued", req.max_queued),
        ("gpu_seconds_per_day", req.gpu_seconds_per_day),
        ("max_storage_bytes", req.max_storage_bytes),
    ] {
        if value == Some(0) {
            return Err(ApiError::field(field, "must be at least 1 (leave it out for no quota)"));
        }
        // The document's int64, which generated clients hold it in (a Java `long`); none
        // could send more, and a quota past it limits nothing anyway.
        if value.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err(ApiError::field(field, format!("must be at most {} (leave it out for no quota)", i64::MAX)));
        }
    }
    if first && scope != Scope::Admin {
        return Err(ApiError::field("scope", "the first key must be an admin key (use --scope admin)"));
    }
    let secret = new_secret()?;
    let key = ApiKey {
        id: store.new_id(),
        name,
        hash: hash_secret(&secret),
        scope,
        max_queued: req.max_queued,
        gpu_seconds_per_day: req.gpu_seconds_per_day,
        created_at: now_ms(),
        revoked_at: None,
        max_storage_bytes: req.max_storage_bytes,
        revoked_by: None,
    };
    Ok((key, secret))
}

/// List keys: admins see all, a client key sees itself.
#[utoipa::path(get, path = "/api/v1/keys", operation_id = "list_keys", responses((status = 200, body = Vec<KeyView>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<KeyView>>, ApiError> {
    let keys = state.store.keys()?;
    let visible = keys.iter().filter(|k| caller.admin || caller.key_id == Some(k.id));
    Ok(Json(visible.map(|k| key_view(&state.store, k, None).map_err(ApiError::from)).collect::<Result<_, _>>()?))
}

/// Revoke a key by id or name (admin, or the key itself). It stops working at once and
/// its queued and running jobs are canceled. Revoking a revoked key changes nothing but
/// cancels what of its jobs still waits or runs (an earlier revoke was cut short).
#[utoipa::path(delete, path = "/api/v1/keys/{id}",
    params(("id" = String, Path, description = "the key's id, or its name (refused, naming the ids, when keys share it)")),
    responses((status = 200, body = RevokedKeyView), (status = 404, body = super::error::ErrorBody), (status = 409, body = super::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokedKeyView>, ApiError> {
    let key_id = key_id(&state.store, &caller, &id)?;
    let revoked = state.store.revoke_key(key_id, revoker(&caller, key_id)).await?;
    let key = revoked.key;
    if !revoked.already {
        state.gate.refresh(&state.store)?;
        tracing::info!(key = %key.id, name = %key.name, by = %caller.label, "API key revoked");
    }
    let reason = format!("canceled because the key {:?} was revoked", key.name);
    let canceled_jobs = state.jobs.cancel_all_of(&key.id.to_string(), &reason).await?;
    if canceled_jobs > 0 {
        tracing::info!(key = %key.id, canceled_jobs, "jobs of a revoked key canceled");
    }
    Ok(Json(RevokedKeyView {
        key: key_view(&state.store, &key, None)?,
        already_revoked: revoked.already,
        canceled_jobs,
    }))
}

/// The key `raw` names among those the caller may revoke: by id, or by name when one
/// active key has it (names need not be unique; two share it → an error listing their
/// ids), else the last revoked key of that name (revoking it again says when it was).
fn key_id(store: &Store, caller: &Caller, raw: &str) -> Result<ulid::Ulid, ApiError> {
    let mine = |k: &ApiKey| caller.admin || caller.key_id == Some(k.id);
    if let Ok(id) = parse_id("key", raw) {
        return match store.key(id)? {
            Some(k) if mine(&k) => Ok(id),
            _ => Err(ApiError::not_found("key", raw)),
        };
    }
    let (active, revoked): (Vec<ApiKey>, Vec<ApiKey>) = store
        .keys()?
        .into_iter()
        .filter(|k| crate::text::same(&k.name, raw.trim()) && mine(k))
        .partition(|k| k.revoked_at.is_none());
    match active.as_slice() {
        [] => revoked.iter().max_by_key(|k| k.revoked_at).map(|k| k.id).ok_or_else(|| ApiError::not_found("key", raw)),
        [k] => Ok(k.id),
        many => {
            let ids: Vec<String> = many.iter().map(|k| k.id.to_string()).collect();
            Err(ApiError::field(
                "id",
                format!("{} keys are named {raw:?}; give one's id ({})", many.len(), ids.join(", ")),
            ))
        }
    }
}

/// Adds the `Authorization: Bearer` scheme to the OpenAPI document, required everywhere
/// (the probes answer without it).
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API key from `reelbox keys create`"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new("api_key", Vec::<String>::new())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_reason_fits_a_close_frame_whatever_the_keys_name() {
        let key = |name: &str| ApiKey {
            id: ulid::Ulid::nil(),
            name: name.into(),
            hash: String::new(),
            scope: Scope::Client,
            max_queued: None,
            gpu_seconds_per_day: None,
            created_at: 0,
            revoked_at: Some(1_700_000_000_000),
            max_storage_bytes: None,
            revoked_by: Some("key \"mum\"".into()),
        };
        let kid = key("kid");
        assert_eq!(revoked_close_reason(Some(&kid)), revoked_message(&kid), "the same words where they fit");
        assert!(
            revoked_message(&kid).contains("at 2023-11-14T22:13:20.000Z by key \"mum\";"),
            "{}",
            revoked_message(&kid)
        );
        let long = revoked_close_reason(Some(&key(&"ä".repeat(64))));
        assert!(long.len() <= 123, "{} bytes", long.len());
        assert!(long.contains("was revoked at 2023-11-14T22:13:20.000Z") && long.contains("ask whoever"), "{long}");
        assert!(revoked_close_reason(None).len() <= 123);
    }
}

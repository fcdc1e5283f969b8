//! ComfyUI's execution messages, shared by the WebSocket (live) and `/history` (after the
//! fact), built from a prompt's record and its job.

use serde_json::{Value, json};

use super::files::image_ref;
use super::prompts::PromptMeta;
use crate::store::records::{Artifact, Millis};

/// One message: its `type` and `data`.
pub type Message = (&'static str, Value);

/// `status` with the queue length (`sid` only in the first message of a connection).
pub fn status(queue_remaining: u64, sid: Option<&str>) -> Message {
    let mut data = json!({"status": {"exec_info": {"queue_remaining": queue_remaining}}});
    if let Some(sid) = sid {
        data["sid"] = json!(sid);
    }
    ("status", data)
}

/// `execution_start`.
pub fn execution_start(p: &PromptMeta, at: Millis) -> Message {
    ("execution_start", json!({"prompt_id": p.prompt_id, "timestamp": at}))
}

/// `execution_cached` (reelbox caches no node outputs between prompts).
pub fn execution_cached(p: &PromptMeta, at: Millis) -> Message {
    ("execution_cached", json!({"nodes": [], "prompt_id": p.prompt_id, "timestamp": at}))
}

/// `executing` for a node, or `null` when the prompt is done.
pub fn executing(p: &PromptMeta, node: Option<&str>) -> Message {
    ("executing", json!({"node": node, "display_node": node, "prompt_id": p.prompt_id}))
}

/// `progress` of the sampler's steps.
pub fn progress(p: &PromptMeta, value: u64, max: u64) -> Message {
    ("progress", json!({"value": value, "max": max, "prompt_id": p.prompt_id, "node": p.roles.sampler}))
}

/// The `{images: [...]}` output of one output node.
pub fn node_output(p: &PromptMeta, node: &str, images: &[Artifact]) -> Value {
    let out = p.roles.outputs.iter().find(|o| o.id == node);
    let (prefix, folder) = out.map_or(("ComfyUI", "output"), |o| (o.filename_prefix.as_str(), o.folder.as_str()));
    json!({"images": images.iter().map(|a| image_ref(prefix, folder, a)).collect::<Vec<_>>()})
}

/// `executed` for an output node with its pictures.
pub fn executed(p: &PromptMeta, node: &str, images: &[Artifact]) -> Message {
    (
        "executed",
        json!({"node": node, "display_node": node, "output": node_output(p, node, images), "prompt_id": p.prompt_id}),
    )
}

/// `execution_success`.
pub fn execution_success(p: &PromptMeta, at: Millis) -> Message {
    ("execution_success", json!({"prompt_id": p.prompt_id, "timestamp": at}))
}

/// `execution_error`, attributed to the sampler (the node that runs the model).
pub fn execution_error(p: &PromptMeta, error: &str, at: Millis) -> Message {
    (
        "execution_error",
        json!({
            "prompt_id": p.prompt_id,
            "node_id": p.roles.sampler,
            "node_type": "KSampler",
            "executed": [],
            "exception_message": error,
            "exception_type": "RuntimeError",
            "traceback": [],
            "current_inputs": {},
            "current_outputs": {},
            "timestamp": at,
        }),
    )
}

/// `execution_interrupted`, with why and by whom as `reason` when the box knows it (a field
/// of reelbox's: ComfyUI's own interrupts are always the user's, so it sends none). A prompt
/// that `ran` is attributed to the sampler; one that never started, to no node.
pub fn execution_interrupted(p: &PromptMeta, reason: Option<&str>, at: Millis, ran: bool) -> Message {
    let (node, node_type) = if ran { (Some(p.roles.sampler.as_str()), Some("KSampler")) } else { (None, None) };
    let mut data =
        json!({"prompt_id": p.prompt_id, "node_id": node, "node_type": node_type, "executed": [], "timestamp": at});
    if let Some(why) = reason {
        data["reason"] = json!(why);
    }
    ("execution_interrupted", data)
}

/// Preview frame: 4-byte big-endian event type 1, 4-byte format (1 JPEG, 2 PNG), the bytes.
pub fn preview_frame(media_type: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let format: u32 = match media_type {
        "image/jpeg" => 1,
        "image/png" => 2,
        _ => return None,
    };
    let mut frame = Vec::with_capacity(8 + bytes.len());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&format.to_be_bytes());
    frame.extend_from_slice(bytes);
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_frames_carry_type_and_format_big_endian() {
        let f = preview_frame("image/png", b"PNG").expect("png");
        assert_eq!(f, [0, 0, 0, 1, 0, 0, 0, 2, b'P', b'N', b'G']);
        assert_eq!(&preview_frame("image/jpeg", b"J").expect("jpeg")[4..8], &[0, 0, 0, 1]);
        assert!(preview_frame("image/webp", b"W").is_none());
    }
}

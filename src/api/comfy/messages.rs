//! ComfyUI's execution messages, shared by the WebSocket (live) and `/history` (after the
//! fact), built from a prompt's record and its job.

use serde_json::{Value, json};

use super::files::image_ref;
use super::prompts::PromptMeta;
use crate::store::records::{Artifact, Job, Millis, StageStatus};

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

/// `progress` of the running node's steps (the sampler's, the upscale's tiles).
pub fn progress(p: &PromptMeta, node: &str, value: u64, max: u64) -> Message {
    ("progress", json!({"value": value, "max": max, "prompt_id": p.prompt_id, "node": node}))
}

/// The `{images: [...]}` output of one output node: of a job's final `images`, those of the
/// stage it shows (the sampler's or the upscale's).
pub fn node_output(p: &PromptMeta, node: &str, images: &[Artifact]) -> Value {
    let out = p.roles.outputs.iter().find(|o| o.id == node);
    let (prefix, folder) = out.map_or(("ComfyUI", "output"), |o| (o.filename_prefix.as_str(), o.folder.as_str()));
    let stage = out.and_then(|o| o.stage);
    let shown = images.iter().filter(|a| stage.is_none_or(|s| a.stage.as_deref() == Some(s.as_str())));
    json!({"images": shown.map(|a| image_ref(prefix, folder, a)).collect::<Vec<_>>()})
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

/// `execution_error`, attributed to the node (id, class type) that was running: the
/// sampler, the upscale or the scale node, as [`stopped_node`] finds it.
pub fn execution_error(p: &PromptMeta, node: Option<(&str, &str)>, error: &str, at: Millis) -> Message {
    let (node_id, node_type) = node.unzip();
    (
        "execution_error",
        json!({
            "prompt_id": p.prompt_id,
            "node_id": node_id,
            "node_type": node_type,
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
/// that ran is attributed to the node that was running; one that never started, to none.
pub fn execution_interrupted(p: &PromptMeta, reason: Option<&str>, at: Millis, node: Option<(&str, &str)>) -> Message {
    let (node, node_type) = node.unzip();
    let mut data =
        json!({"prompt_id": p.prompt_id, "node_id": node, "node_type": node_type, "executed": [], "timestamp": at});
    if let Some(why) = reason {
        data["reason"] = json!(why);
    }
    ("execution_interrupted", data)
}

/// The node (id, class type) that was running when `job` stopped: the one of its first
/// stage not done (the stage that failed or was stopped); its first stage's when none is.
pub fn stopped_node<'p>(p: &'p PromptMeta, job: &Job) -> Option<(&'p str, &'p str)> {
    let stopped = job.stages.iter().find(|s| s.state.status() != StageStatus::Done);
    stopped.and_then(|s| p.roles.node_of(s.name)).or_else(|| p.roles.first_node())
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

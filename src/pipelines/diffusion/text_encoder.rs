//! The text encoder's interface: where the hidden states the UNet is conditioned on are
//! among its outputs, and every layer's, which clip skip picks from; and the inputs an
//! embedding's vectors go in by, where reelbox's converter made them.

use super::DiffusionError;
use super::model::Family;
use super::onnx::{Part, TensorInfo};

/// `skip` refused for this model's text encoder `part`, which exports `layers` layers, or
/// only the one it conditions on (none).
pub(super) fn clip_skip_refused(part: &str, skip: u32, layers: Option<u32>) -> DiffusionError {
    let message = match layers {
        None => format!(
            "this model's {part} gives the layer it reads prompts at only (an export from the hub, or an import \
             from before clip skip): import its checkpoint or diffusers folder with `reelbox models import` to \
             read them at another"
        ),
        Some(depth) => format!("{skip} is past this model's {part}, which has {depth} layers"),
    };
    DiffusionError::Request { field: "clip_skip", message }
}

/// Where the text encoder's useful outputs are.
pub struct TextEncoder {
    pub part: Part,
    pub ids: TensorInfo,
    /// `embedding_mask` (bool `[batch, seq]`) and `embedding_vectors` (`[batch, seq, width]`):
    /// where true, a vector in place of the token's embedding (reelbox's converter exports
    /// them; none for exports from the hub).
    pub embedding_inputs: Option<(TensorInfo, TensorInfo)>,
    /// Whether it is SDXL's second encoder (which an embedding's `clip_g` goes to).
    pub second: bool,
    /// Index of the hidden states the UNet is conditioned on.
    pub hidden: usize,
    /// Index of the pooled projection (SDXL's second encoder).
    pub pooled: Option<usize>,
    /// Indices of every layer's output, from the embeddings' (0) to the last layer's, as
    /// clip skip takes them: SDXL's `hidden_states.N` as they are, SD 1.x/2.x's
    /// `normed_hidden_states.N` (through the final layer norm, which reelbox's converter
    /// exports); empty where the export has none (hub exports of SD 1.x/2.x).
    layers: Vec<usize>,
    /// The clip skip the model conditions on by its own: 1 (the last layer) for SD 1.x/2.x,
    /// 2 (the penultimate) for SDXL.
    own_skip: u32,
}

impl TextEncoder {
    pub(super) fn new(part: Part, family: Family, second: bool) -> Result<Self, DiffusionError> {
        let bad = |reason: String| DiffusionError::Interface { part: part.name, reason };
        let ids = part
            .input("input_ids")
            .or_else(|| part.inputs.first())
            .cloned()
            .ok_or_else(|| bad("has no inputs".into()))?;
        let position = |name: &str| part.outputs.iter().position(|o| o.name == name);
        let prefix = if family == Family::Sdxl { "hidden_states." } else { "normed_hidden_states." };
        let mut numbered: Vec<(usize, usize)> = (part.outputs.iter().enumerate())
            .filter_map(|(i, o)| o.name.strip_prefix(prefix).and_then(|n| n.parse().ok()).map(|n| (n, i)))
            .collect();
        numbered.sort_unstable();
        // Layers 0..=L with none missing, or none at all.
        let layers: Vec<usize> = if numbered.iter().enumerate().all(|(k, (n, _))| k == *n) {
            numbered.iter().map(|(_, i)| *i).collect()
        } else {
            Vec::new()
        };
        let hidden = if family == Family::Sdxl {
            // SDXL conditions on the penultimate layer of both encoders.
            let penultimate = layers.len().checked_sub(2).and_then(|l| layers.get(l).copied());
            penultimate.ok_or_else(|| bad("SDXL text encoder exports no hidden_states.N outputs".into()))?
        } else {
            position("last_hidden_state")
                .or_else(|| part.outputs.iter().position(|o| o.shape.len() == 3))
                .ok_or_else(|| bad("no last_hidden_state output".into()))?
        };
        let own_skip = family.own_clip_skip();
        let pooled = if second {
            Some(
                position("text_embeds")
                    .or_else(|| part.outputs.iter().position(|o| o.shape.len() == 2))
                    .ok_or_else(|| bad("no pooled text_embeds output".into()))?,
            )
        } else {
            None
        };
        let embedding_inputs = part.input("embedding_mask").cloned().zip(part.input("embedding_vectors").cloned());
        Ok(Self { part, ids, embedding_inputs, second, hidden, pooled, layers, own_skip })
    }

    /// Index of the hidden states for `clip_skip`: the output of the text encoder's
    /// `clip_skip`-th layer from its end (1: the last), as A1111's "Clip skip" and ComfyUI's
    /// CLIPSetLastLayer at `-clip_skip` take it; none, the model's own.
    pub fn hidden_for(&self, clip_skip: Option<u32>) -> Result<usize, DiffusionError> {
        let skip = match clip_skip {
            Some(s) if s != self.own_skip => s,
            _ => return Ok(self.hidden),
        };
        let Some(depth) = self.layers.len().checked_sub(1) else {
            return Err(clip_skip_refused(self.part.name, skip, None));
        };
        usize::try_from(skip)
            .ok()
            .filter(|&s| (1..=depth).contains(&s))
            .map(|s| self.layers[depth + 1 - s])
            .ok_or_else(|| clip_skip_refused(self.part.name, skip, u32::try_from(depth).ok()))
    }

    /// The width of the vectors an embedding gives it, where it takes them.
    pub fn embedding_width(&self) -> Option<usize> {
        self.embedding_inputs.as_ref().and_then(|(_, v)| v.fixed(2))
    }

    /// The width of its hidden states, as an embedding's vectors for it must be: the
    /// embedding input's, else its conditioning output's, where the export fixes it.
    pub fn width(&self) -> Option<usize> {
        self.embedding_width().or_else(|| self.part.outputs.get(self.hidden).and_then(|o| o.fixed(2)))
    }

    /// Largest batch one run takes.
    pub fn max_batch(&self) -> usize {
        self.ids.fixed(0).unwrap_or(usize::MAX)
    }
}

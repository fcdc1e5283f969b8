//! Running a Piper (VITS) model: tensor names and element types are read from the session,
//! so exports with int32 ids or without `input_lengths` work too. Batches pad with 0 (PAD)
//! and use `input_lengths`; splitting a batched output needs the per-phoneme durations, so
//! batches larger than one are only run when the model exposes them (see `align`).

use std::borrow::Cow;
use std::path::Path;

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use super::TtsError;
use crate::engine::{self, EngineError, Want};

/// The noise and length scales of one synthesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    pub noise_scale: f32,
    pub length_scale: f32,
    pub noise_w: f32,
}

/// Where the model's inputs and outputs are, found by name with fall-backs by position.
#[derive(Debug, Clone)]
pub struct ModelIo {
    pub ids: (String, TensorElementType),
    pub lengths: Option<(String, TensorElementType)>,
    pub scales: Option<String>,
    pub sid: Option<(String, TensorElementType)>,
    pub audio: String,
    /// Per-phoneme-id frame counts (Piper's alignment output), when the model has it.
    pub durations: Option<String>,
    /// True when the ids input has a dynamic batch axis.
    pub dynamic_batch: bool,
}

fn tensor_info(v: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match v {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

impl ModelIo {
    /// Reads the interface of a loaded voice model.
    pub fn inspect(session: &Session, model: &Path) -> Result<Self, TtsError> {
        let bad = |tensor: &str, reason: String| TtsError::Tensor {
            model: model.to_path_buf(),
            tensor: tensor.to_string(),
            reason,
        };
        let inputs: Vec<(String, TensorElementType, Vec<i64>)> = session
            .inputs()
            .iter()
            .filter_map(|o| tensor_info(o.dtype()).map(|(t, s)| (o.name().to_string(), t, s)))
            .collect();
        let find = |name: &str| inputs.iter().find(|i| i.0 == name).cloned();
        let is_int = |t: TensorElementType| matches!(t, TensorElementType::Int64 | TensorElementType::Int32);
        let ids = find("input")
            .or_else(|| inputs.iter().find(|i| is_int(i.1) && i.2.len() == 2).cloned())
            .ok_or_else(|| bad("input", "no int64 [batch, phonemes] input; is this a Piper voice?".into()))?;
        if !is_int(ids.1) {
            return Err(bad(&ids.0, format!("expected int64 phoneme ids, found {:?}", ids.1)));
        }
        let lengths = find("input_lengths").map(|i| (i.0, i.1));
        let scales = find("scales").map(|i| i.0);
        let sid = find("sid").map(|i| (i.0, i.1));
        let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let audio = outputs
            .iter()
            .find(|n| n.as_str() == "output")
            .or_else(|| outputs.first())
            .cloned()
            .ok_or_else(|| bad("output", "the model has no outputs".into()))?;
        let durations = outputs.iter().find(|n| **n != audio).cloned();
        let dynamic_batch = ids.2.first().is_none_or(|d| *d < 0);
        Ok(Self { ids: (ids.0, ids.1), lengths, scales, sid, audio, durations, dynamic_batch })
    }

    /// Most sentences one run may carry.
    pub fn max_batch(&self) -> usize {
        if self.dynamic_batch && self.lengths.is_some() && self.durations.is_some() { usize::MAX } else { 1 }
    }
}

fn int_tensor(shape: Vec<usize>, data: Vec<i64>, ty: TensorElementType) -> Result<DynValue, ort::Error> {
    Ok(match ty {
        TensorElementType::Int32 => {
            Tensor::from_array((shape, data.into_iter().map(|v| v as i32).collect::<Vec<_>>()))?.into_dyn()
        }
        _ => Tensor::from_array((shape, data))?.into_dyn(),
    })
}

/// Runs one batch of id sequences and returns each sentence's raw float audio.
pub fn run_batch(
    session: &mut Session,
    io: &ModelIo,
    model: &Path,
    batch: &[&[i64]],
    scales: Scales,
    sid: Option<i64>,
    hop_length: u32,
) -> Result<Vec<Vec<f32>>, TtsError> {
    let label = model.display().to_string();
    let n = batch.len();
    let max_len = batch.iter().map(|s| s.len()).max().unwrap_or(0);
    // PAD is id 0 in every Piper voice; padded positions are masked by input_lengths.
    let mut ids = vec![0i64; n * max_len];
    for (row, s) in batch.iter().enumerate() {
        ids[row * max_len..row * max_len + s.len()].copy_from_slice(s);
    }
    let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(4);
    let value = int_tensor(vec![n, max_len], ids, io.ids.1).map_err(EngineError::input(&label, &io.ids.0))?;
    inputs.push((io.ids.0.clone().into(), value.into()));
    if let Some((name, ty)) = &io.lengths {
        let lens: Vec<i64> = batch.iter().map(|s| s.len() as i64).collect();
        inputs.push((
            name.clone().into(),
            int_tensor(vec![n], lens, *ty).map_err(EngineError::input(&label, name))?.into(),
        ));
    }
    if let Some(name) = &io.scales {
        let s = vec![scales.noise_scale, scales.length_scale, scales.noise_w];
        let value = Tensor::from_array((vec![3usize], s)).map_err(EngineError::input(&label, name))?.into_dyn();
        inputs.push((name.clone().into(), value.into()));
    }
    if let (Some((name, ty)), Some(sid)) = (&io.sid, sid) {
        inputs.push((
            name.clone().into(),
            int_tensor(vec![n], vec![sid; n], *ty).map_err(EngineError::input(&label, name))?.into(),
        ));
    }
    // A single sentence needs no durations: its audio is all of the output.
    let durations_name = match (n, io.durations.as_deref()) {
        (1, _) => None,
        (_, Some(name)) => Some(name),
        (_, None) => return Err(TtsError::Unbatchable { model: model.to_path_buf() }),
    };
    let mut wants = vec![Want::any(&io.audio)];
    wants.extend(durations_name.map(Want::any));
    let outs = engine::run_locked(session, &label, inputs, &wants)?.tensors;
    let (shape, data) = (&outs[0].shape, &outs[0].data);
    // Shapes differ between exports ([B,1,1,T], [B,1,T], [B,T]): T is the last axis.
    let t = shape.last().copied().unwrap_or(0);
    let Some(durations) = outs.get(1) else {
        return Ok(vec![data[..t.min(data.len())].to_vec()]);
    };
    let (dshape, dur) = (&durations.shape, &durations.data);
    let per_row = dshape.last().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for (row, s) in batch.iter().enumerate() {
        let frames: f32 = dur[row * per_row..row * per_row + s.len().min(per_row)].iter().sum();
        let len = (frames.max(0.0) as usize * hop_length as usize).min(t);
        out.push(data[row * t..row * t + len].to_vec());
    }
    Ok(out)
}

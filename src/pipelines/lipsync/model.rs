//! A loaded Wav2Lip ONNX model. Exports name their tensors differently, so inputs are
//! matched by shape: the mel is the rank-4 input with 1 channel and 80 bands, the face the
//! one with 6 channels; the output is the rank-4 one with 3 channels.

use std::path::{Path, PathBuf};

use ort::value::{Tensor, TensorElementType, ValueType};

use crate::engine::{self, Engine, EngineError, SharedSession, Want, dims_text};
use crate::gpu::DeviceId;
use crate::media::mel::{MEL_STEP, N_MELS};

use super::LipsyncError;
use super::face::FACE_SIZE;

/// How many items one run of the model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAxis {
    /// Any batch size.
    Dynamic,
    /// Exactly this many; shorter batches are padded.
    Fixed(usize),
}

/// A Wav2Lip session with its tensors identified.
pub struct Wav2Lip {
    session: SharedSession,
    path: PathBuf,
    mel_input: String,
    face_input: String,
    output: String,
    batch: BatchAxis,
}

/// Rank-4 float32 tensor description: (name, dims).
fn describe(outlets: &[ort::value::Outlet]) -> Vec<(String, Vec<i64>, Option<TensorElementType>)> {
    outlets
        .iter()
        .map(|o| {
            let (dims, ty) = match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => (shape.iter().copied().collect(), Some(*ty)),
                _ => (Vec::new(), None),
            };
            (o.name().to_string(), dims, ty)
        })
        .collect()
}

/// Whether a declared dimension is `want` or dynamic.
fn fits(dim: Option<&i64>, want: i64) -> bool {
    dim.is_some_and(|&d| d == want || d < 0)
}

impl Wav2Lip {
    /// Loads `model` (a `.onnx` file, or a directory holding `model.onnx`) on `device`.
    pub fn load(engine: &Engine, device: DeviceId, model: &Path) -> Result<Self, LipsyncError> {
        let path = if model.is_dir() { model.join("model.onnx") } else { model.to_path_buf() };
        let session = engine.session(&path, device)?;
        let (inputs, outputs) = {
            let s = engine::lock(&session, &path.display().to_string())?;
            (describe(s.inputs()), describe(s.outputs()))
        };
        let bad = |reason: String| LipsyncError::Interface { model: path.clone(), reason };
        let listing = || inputs.iter().map(|(n, d, _)| format!("{n} {}", dims_text(d))).collect::<Vec<_>>().join(", ");
        let mel = inputs
            .iter()
            .find(|(_, d, _)| d.len() == 4 && fits(d.get(1), 1) && d.get(2) == Some(&(N_MELS as i64)))
            .ok_or_else(|| bad(format!("no mel input shaped [B,1,80,16] among: {}", listing())))?;
        let face = inputs
            .iter()
            .find(|(_, d, _)| d.len() == 4 && d.get(1) == Some(&6))
            .ok_or_else(|| bad(format!("no face input shaped [B,6,96,96] among: {}", listing())))?;
        if inputs.len() != 2 {
            return Err(bad(format!("expected 2 inputs (mel, face), found {}: {}", inputs.len(), listing())));
        }
        let out = outputs
            .iter()
            .find(|(_, d, _)| d.len() == 4 && fits(d.get(1), 3))
            .ok_or_else(|| bad("no output shaped [B,3,96,96]".into()))?;
        let face_side = FACE_SIZE as i64;
        let expected =
            [(mel, (N_MELS as i64, MEL_STEP as i64)), (face, (face_side, face_side)), (out, (face_side, face_side))];
        for ((name, dims, ty), (h, w)) in expected {
            if *ty != Some(TensorElementType::Float32) {
                return Err(bad(format!("tensor {name} is {ty:?}; only float32 exports are supported")));
            }
            if !fits(dims.get(2), h) || !fits(dims.get(3), w) {
                return Err(bad(format!("tensor {name} is {}, expected spatial size {h}x{w}", dims_text(dims))));
            }
        }
        let batch = match (mel.1[0], face.1[0]) {
            (m, f) if m < 0 && f < 0 => BatchAxis::Dynamic,
            (m, f) if m > 0 && (f == m || f < 0) => BatchAxis::Fixed(m as usize),
            (m, f) if f > 0 && m < 0 => BatchAxis::Fixed(f as usize),
            (m, f) => return Err(bad(format!("batch axes disagree: mel {m}, face {f}"))),
        };
        tracing::info!(model = %path.display(), mel = mel.0, face = face.0, output = out.0, ?batch, "loaded Wav2Lip");
        Ok(Self { session, mel_input: mel.0.clone(), face_input: face.0.clone(), output: out.0.clone(), batch, path })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's batch axis.
    pub fn batch_axis(&self) -> BatchAxis {
        self.batch
    }

    /// Items per run for a wanted batch size: the wanted size on dynamic models, the
    /// model's own on fixed ones.
    pub fn run_batch(&self, wanted: usize) -> usize {
        match self.batch {
            BatchAxis::Dynamic => wanted.max(1),
            BatchAxis::Fixed(n) => n,
        }
    }

    /// Runs `n` items: `mels` holds `n·80·16` floats, `faces` `n·6·96·96`. Returns `n·3·96·96`
    /// floats (BGR faces in [0, 1]). Fixed-batch models get the batch padded and trimmed.
    pub fn infer(&self, n: usize, mut mels: Vec<f32>, mut faces: Vec<f32>) -> Result<Vec<f32>, LipsyncError> {
        let mel_len = N_MELS * MEL_STEP;
        let face_len = 6 * FACE_SIZE * FACE_SIZE;
        let out_len = 3 * FACE_SIZE * FACE_SIZE;
        let run_n = match self.batch {
            BatchAxis::Dynamic => n,
            BatchAxis::Fixed(b) if n <= b => b,
            BatchAxis::Fixed(b) => {
                let mut out = Vec::with_capacity(n * out_len);
                for start in (0..n).step_by(b) {
                    let k = b.min(n - start);
                    let m = mels[start * mel_len..(start + k) * mel_len].to_vec();
                    let f = faces[start * face_len..(start + k) * face_len].to_vec();
                    out.extend(self.infer(k, m, f)?);
                }
                return Ok(out);
            }
        };
        // Pad a short batch with copies of its last item.
        for _ in n..run_n {
            mels.extend_from_within((n - 1) * mel_len..n * mel_len);
            faces.extend_from_within((n - 1) * face_len..n * face_len);
        }
        let model = self.path.display().to_string();
        let mel = Tensor::from_array(([run_n, 1, N_MELS, MEL_STEP], mels))
            .map_err(EngineError::input(&model, &self.mel_input))?;
        let face = Tensor::from_array(([run_n, 6, FACE_SIZE, FACE_SIZE], faces))
            .map_err(EngineError::input(&model, &self.face_input))?;
        let inputs = ort::inputs![self.mel_input.as_str() => mel, self.face_input.as_str() => face];
        let side = FACE_SIZE as i64;
        let shape = [run_n as i64, 3, side, side];
        let mut data = engine::run(&self.session, &model, inputs, &[Want::shaped(&self.output, &shape)])?
            .tensors
            .swap_remove(0)
            .data;
        data.truncate(n * out_len);
        Ok(data)
    }
}

//! A face detector from an ONNX model with the UltraFace interface (the ONNX Model Zoo's
//! `version-RFB-320.onnx` / `-640`): one `[1, 3, H, W]` RGB input normalised as
//! (pixel − 127) / 128, outputs `scores` `[1, N, 2]` (background, face) and `boxes`
//! `[1, N, 4]` (x1, y1, x2, y2 as fractions of the image). Tensors are matched by shape,
//! not name. With a face detector installed (the face kind's default model), lip-sync finds
//! the face itself when a request gives no box.

use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops::{FilterType, resize};
use ort::value::{Tensor, ValueType};

use super::LipsyncError;
use super::face::{FaceBox, FaceDetector};
use crate::engine::{self, Engine, EngineError, SharedSession, Want};
use crate::gpu::DeviceId;

/// Face probability a box needs to count.
pub const MIN_SCORE: f32 = 0.7;

/// A loaded UltraFace-style detector.
pub struct OnnxFaceDetector {
    session: SharedSession,
    path: PathBuf,
    input: String,
    scores: String,
    boxes: String,
    /// Model input (height, width).
    size: (u32, u32),
}

impl OnnxFaceDetector {
    /// Loads `model` (a `.onnx` file or a directory holding `model.onnx`) on `device`.
    pub fn load(engine: &Engine, device: DeviceId, model: &Path) -> Result<Self, LipsyncError> {
        let path = if model.is_dir() { model.join("model.onnx") } else { model.to_path_buf() };
        let session = engine.session(&path, device)?;
        let bad = |reason: String| LipsyncError::DetectorInterface { model: path.clone(), reason };
        let dims = |t: &ValueType| match t {
            ValueType::Tensor { shape, .. } => shape.iter().copied().collect::<Vec<i64>>(),
            _ => Vec::new(),
        };
        let (input, size, scores, boxes) = {
            let s = engine::lock(&session, &path.display().to_string())?;
            let [inp] = s.inputs() else { return Err(bad(format!("{} inputs, expected 1", s.inputs().len()))) };
            let d = dims(inp.dtype());
            if d.len() != 4 || d[1] != 3 || d[2] <= 0 || d[3] <= 0 {
                return Err(bad(format!("input {} is {d:?}, expected [1, 3, H, W] with a fixed size", inp.name())));
            }
            let last =
                |n: i64| s.outputs().iter().find(|o| dims(o.dtype()).last() == Some(&n)).map(|o| o.name().to_string());
            let scores = last(2).ok_or_else(|| bad("no [1, N, 2] scores output".into()))?;
            let boxes = last(4).ok_or_else(|| bad("no [1, N, 4] boxes output".into()))?;
            (inp.name().to_string(), (d[2] as u32, d[3] as u32), scores, boxes)
        };
        Ok(Self { session, path, input, scores, boxes, size })
    }
}

impl FaceDetector for OnnxFaceDetector {
    fn detect(&self, frame: &RgbImage) -> Result<Option<FaceBox>, LipsyncError> {
        let (h, w) = self.size;
        let small = resize(frame, w, h, FilterType::Triangle);
        let plane = (w * h) as usize;
        let mut chw = vec![0f32; 3 * plane];
        for (i, px) in small.pixels().enumerate() {
            for c in 0..3 {
                chw[c * plane + i] = (f32::from(px.0[c]) - 127.0) / 128.0;
            }
        }
        let model = self.path.display().to_string();
        let tensor = Tensor::from_array(([1usize, 3, h as usize, w as usize], chw))
            .map_err(EngineError::input(&model, &self.input))?;
        let inputs = ort::inputs![self.input.as_str() => tensor];
        let outs = engine::run(&self.session, &model, inputs, &[Want::any(&self.scores), Want::any(&self.boxes)])?;
        let [scores, boxes] = [&outs.tensors[0].data, &outs.tensors[1].data];
        if scores.len() / 2 != boxes.len() / 4 {
            return Err(LipsyncError::DetectorOutput {
                model: self.path.clone(),
                scores: scores.len() / 2,
                boxes: boxes.len() / 4,
            });
        }
        let best = (0..scores.len() / 2)
            .map(|i| (scores[2 * i + 1], i))
            .filter(|(s, _)| *s >= MIN_SCORE)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, i)) = best else { return Ok(None) };
        let (fw, fh) = (frame.width() as f32, frame.height() as f32);
        let b = &boxes[4 * i..4 * i + 4];
        let x1 = (b[0].clamp(0.0, 1.0) * fw).round() as u32;
        let y1 = (b[1].clamp(0.0, 1.0) * fh).round() as u32;
        let x2 = (b[2].clamp(0.0, 1.0) * fw).round() as u32;
        let y2 = (b[3].clamp(0.0, 1.0) * fh).round() as u32;
        Ok((x2 > x1 && y2 > y1).then(|| FaceBox::new(x1, y1, x2 - x1, y2 - y1)))
    }
}

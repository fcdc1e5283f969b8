//! Super-resolution with Real-ESRGAN-style ONNX models: NCHW float RGB in [0, 1] in, the
//! same ×scale out. The scale is read from the model (static shapes, or one probe run);
//! images are tiled with context padding, which also lets fixed-size exports (the
//! official one is 1×3×64×64) upscale images of any size. Videos go frame by frame
//! through ffmpeg and keep their sound.

use std::path::{Path, PathBuf};

use image::RgbImage;
use ort::value::{Tensor, TensorElementType, ValueType};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Engine, EngineError, Output, SharedSession, Want};
use crate::gpu::DeviceId;
use crate::media::ffmpeg::{FfmpegError, FrameRate, H264Encoder, VideoOptions, VideoReader, VideoWriter};
use crate::pipelines::{Canceled, Progress, ProgressFn, check_cancel};
pub use layout::Layout;

pub mod layout;
pub mod tiling;

use tiling::plan_tiles;

/// Real-ESRGAN's default context around each tile.
pub const DEFAULT_TILE_PAD: u32 = 10;
/// Tile size used on dynamic models when the image is larger than this (pixels per side).
pub const DEFAULT_TILE: u32 = 512;

/// Why upscaling failed.
#[derive(Debug, thiserror::Error)]
pub enum UpscaleError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("model {model} does not have the Real-ESRGAN interface: {reason}")]
    Interface { model: PathBuf, reason: String },
    #[error("inference failed in {model}: a {w}x{h} tile came out {got_w}x{got_h}, expected ×{scale}")]
    TileSize { model: PathBuf, w: u32, h: u32, got_w: u32, got_h: u32, scale: u32 },
    #[error(transparent)]
    Video(#[from] FfmpegError),
    #[error("canceled")]
    Canceled,
}

impl From<Canceled> for UpscaleError {
    fn from(_: Canceled) -> Self {
        UpscaleError::Canceled
    }
}

/// How images are cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileOptions {
    /// Tile side in input pixels for dynamic models; 0 picks [`DEFAULT_TILE`] for large
    /// images and no tiling for small ones. Fixed-size models use their own size.
    pub tile: u32,
    /// Context pixels read around each tile and thrown away after.
    pub pad: u32,
}

impl Default for TileOptions {
    fn default() -> Self {
        Self { tile: 0, pad: DEFAULT_TILE_PAD }
    }
}

/// A loaded super-resolution model.
pub struct Upscaler {
    session: SharedSession,
    path: PathBuf,
    input: String,
    output: String,
    scale: u32,
    /// (height, width) when the model only takes one size.
    fixed: Option<(u32, u32)>,
    /// Channel-first or channel-last, as the session's input says (outputs follow it).
    layout: Layout,
}

fn tensor_dims(o: &ort::value::Outlet) -> (Vec<i64>, Option<TensorElementType>) {
    match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => (shape.iter().copied().collect(), Some(*ty)),
        _ => (Vec::new(), None),
    }
}

impl Upscaler {
    /// Loads `model` (a `.onnx` file, or a directory holding `model.onnx`) on `device` and
    /// works out its scale and size constraints.
    pub fn load(engine: &Engine, device: DeviceId, model: &Path) -> Result<Self, UpscaleError> {
        let path = if model.is_dir() { model.join("model.onnx") } else { model.to_path_buf() };
        let session = engine.session(&path, device)?;
        let bad = |reason: String| UpscaleError::Interface { model: path.clone(), reason };
        let (input, in_dims, output, out_dims) = {
            let s = engine::lock(&session, &path.display().to_string())?;
            let [inp] = s.inputs() else {
                return Err(bad(format!("expected one image input, found {}", s.inputs().len())));
            };
            let out = s.outputs().first().ok_or_else(|| bad("no outputs".into()))?;
            let (in_dims, in_ty) = tensor_dims(inp);
            let (out_dims, out_ty) = tensor_dims(out);
            for (name, ty) in [(inp.name(), in_ty), (out.name(), out_ty)] {
                if ty != Some(TensorElementType::Float32) {
                    return Err(bad(format!("tensor {name} is {ty:?}; only float32 exports are supported")));
                }
            }
            (inp.name().to_string(), in_dims, out.name().to_string(), out_dims)
        };
        let layout = Layout::of(&in_dims).filter(|l| Layout::of(&out_dims).is_none_or(|o| o == *l));
        let Some(layout) = layout.filter(|_| out_dims.len() == 4) else {
            return Err(bad(format!(
                "expected RGB image tensors, NCHW or NHWC, got input {in_dims:?} and output {out_dims:?}"
            )));
        };
        let (ya, xa) = layout.spatial_axes();
        let fixed = (in_dims[ya] > 0 && in_dims[xa] > 0).then(|| (in_dims[ya] as u32, in_dims[xa] as u32));
        let mut this = Self { session, path: path.clone(), input, output, scale: 1, fixed, layout };
        this.scale = match (fixed, out_dims[ya], out_dims[xa]) {
            (Some((h, w)), oh, ow) if oh > 0 && ow > 0 => {
                if oh as u32 % h != 0 || ow as u32 / w != oh as u32 / h {
                    return Err(bad(format!("output {oh}x{ow} is not a whole multiple of input {h}x{w}")));
                }
                oh as u32 / h
            }
            _ => this.probe_scale()?,
        };
        if this.scale == 0 {
            return Err(bad("output is smaller than the input".into()));
        }
        tracing::info!(model = %path.display(), scale = this.scale, fixed = ?this.fixed, ?layout, "loaded upscaler");
        Ok(this)
    }

    /// One run on a small blank image to learn the scale of a dynamic model.
    fn probe_scale(&self) -> Result<u32, UpscaleError> {
        let (h, w) = self.fixed.unwrap_or((16, 16));
        let (data, (oh, ow)) = self.run_tile(vec![0.0; 3 * (h * w) as usize], h, w)?;
        drop(data);
        if oh % h != 0 || ow / w != oh / h {
            return Err(UpscaleError::Interface {
                model: self.path.clone(),
                reason: format!("probe {h}x{w} gave {oh}x{ow}, not a whole-number scale"),
            });
        }
        Ok(oh / h)
    }

    /// Output pixels per input pixel.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The only input size the model accepts, as (height, width), if it is fixed.
    pub fn fixed_size(&self) -> Option<(u32, u32)> {
        self.fixed
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one CHW tile; returns the output CHW data and its (height, width). Public for
    /// the import self-check, which compares one raw tile with PyTorch.
    pub fn run_tile(&self, chw: Vec<f32>, h: u32, w: u32) -> Result<(Vec<f32>, (u32, u32)), UpscaleError> {
        let model = format!("{} on a {w}x{h} tile", self.path.display());
        let (h, w) = (h as usize, w as usize);
        let data = self.layout.from_chw(chw, h, w);
        let tensor =
            Tensor::from_array((self.layout.shape(h, w), data)).map_err(EngineError::input(&model, &self.input))?;
        let inputs = ort::inputs![self.input.as_str() => tensor];
        let any_size = self.layout.any_size();
        let want = [Want::shaped(&self.output, &any_size)];
        let mut out = engine::run(&self.session, &model, inputs, &want)?;
        let Output { shape, data, .. } = out.tensors.swap_remove(0);
        let (ya, xa) = self.layout.spatial_axes();
        let (oh, ow) = (shape[ya], shape[xa]);
        Ok((self.layout.to_chw(data, oh, ow), (oh as u32, ow as u32)))
    }

    /// Upscales one image, tile by tile; `progress` counts tiles.
    pub fn upscale_image(
        &self,
        image: &RgbImage,
        opts: TileOptions,
        cancel: &CancellationToken,
        progress: ProgressFn,
    ) -> Result<RgbImage, UpscaleError> {
        let (w, h) = image.dimensions();
        let s = self.scale;
        let core = match opts.tile {
            0 if w.max(h) <= DEFAULT_TILE => w.max(h),
            0 => DEFAULT_TILE,
            t => t,
        };
        let tiles = plan_tiles(w, h, core, opts.pad, self.fixed);
        let mut out = RgbImage::new(w * s, h * s);
        let (src, out_w) = (image.as_raw(), (w * s) as usize);
        for (i, t) in tiles.iter().enumerate() {
            check_cancel(cancel)?;
            let (mw, mh) = (t.x.model_len, t.y.model_len);
            let mut chw = vec![0.0f32; 3 * (mw * mh) as usize];
            let plane = (mw * mh) as usize;
            for yy in 0..mh {
                // Rows and columns past the real pixels repeat the last one (edge padding).
                let sy = (t.y.read_start + yy.min(t.y.read_len - 1)) as usize;
                let row = &src[sy * w as usize * 3..(sy + 1) * w as usize * 3];
                for xx in 0..mw {
                    let sx = (t.x.read_start + xx.min(t.x.read_len - 1)) as usize;
                    let k = (yy * mw + xx) as usize;
                    for c in 0..3 {
                        chw[c * plane + k] = f32::from(row[sx * 3 + c]) * (1.0 / 255.0);
                    }
                }
            }
            let (data, (oh, ow)) = self.run_tile(chw, mh, mw)?;
            if oh != mh * s || ow != mw * s {
                return Err(UpscaleError::TileSize {
                    model: self.path.clone(),
                    w: mw,
                    h: mh,
                    got_w: ow,
                    got_h: oh,
                    scale: s,
                });
            }
            let oplane = (oh * ow) as usize;
            // +0.5 and truncation is round() for the non-negative values clamp leaves.
            let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            let dst: &mut [u8] = &mut out;
            for y in t.y.core_start * s..t.y.core_end * s {
                let ty = y - t.y.read_start * s;
                for x in t.x.core_start * s..t.x.core_end * s {
                    let k = (ty * ow + (x - t.x.read_start * s)) as usize;
                    let o = (y as usize * out_w + x as usize) * 3;
                    dst[o..o + 3].copy_from_slice(&[
                        to_u8(data[k]),
                        to_u8(data[oplane + k]),
                        to_u8(data[2 * oplane + k]),
                    ]);
                }
            }
            progress(Progress { step: i as u64 + 1, total: tiles.len() as u64, message: None });
        }
        Ok(out)
    }

    /// Upscales a video frame by frame into an MP4 at `output`, keeping the input's audio.
    /// `progress` counts frames (the total is estimated from the duration).
    pub fn upscale_video(
        &self,
        input: &Path,
        output: &Path,
        opts: TileOptions,
        encoder: H264Encoder,
        cancel: &CancellationToken,
        progress: ProgressFn,
    ) -> Result<u64, UpscaleError> {
        let mut reader = VideoReader::open(input)?;
        let info = reader.info();
        let total = info.duration_s.map_or(0, |d| (d * info.fps).round() as u64);
        let mut vopts =
            VideoOptions::new(info.width * self.scale, info.height * self.scale, FrameRate::from_f64(info.fps));
        vopts.encoder = encoder;
        if info.has_audio {
            vopts.audio = Some(input.to_path_buf());
        }
        let mut writer = VideoWriter::create(output, &vopts)?;
        let quiet = |_: Progress| {};
        while let Some(frame) = reader.next_frame()? {
            check_cancel(cancel)?;
            writer.push(&self.upscale_image(&frame, opts, cancel, &quiet)?)?;
            let done = writer.frames();
            progress(Progress { step: done, total: total.max(done), message: None });
        }
        Ok(writer.finish()?.frames)
    }
}

//! Opening a picture input that may be a still image or a video, with errors that name
//! the input (a portrait upload can be anything a user picked).

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::ffmpeg::{FfmpegError, VideoInfo, read_video_frames};
use super::ffprobe::probe;
use super::picture::{self, PictureError};

/// Errors from opening a picture input.
#[derive(Debug, thiserror::Error)]
pub enum VisualError {
    #[error("cannot read {input}: {source}")]
    Read { input: String, source: std::io::Error },
    #[error("{input} is empty (0 bytes)")]
    Empty { input: String },
    #[error("{input} is neither an image (PNG, JPEG, WebP) nor a video: {reason}")]
    NotVisual { input: String, reason: String },
    /// A picture in a format reelbox cannot read (HEIC, AVIF, ...), with what to send.
    #[error("{input} {source}")]
    Picture { input: String, source: PictureError },
    #[error("{input}: {source}")]
    Video { input: String, source: FfmpegError },
}

/// A picture input: one still image, or a video to be read through ffmpeg.
#[derive(Debug, Clone)]
pub enum Visual {
    Image(RgbImage),
    Video { path: PathBuf, info: VideoInfo },
}

/// Opens `path` as an image, else as a video. `input` names it in errors; `media_type`,
/// when known, skips the guess (`video/*` goes straight to ffmpeg).
pub fn open_visual(path: &Path, input: &str, media_type: Option<&str>) -> Result<Visual, VisualError> {
    let is_video_type = media_type.is_some_and(|m| m.starts_with("video/"));
    let mut image_reason = String::new();
    let read_err = |source| VisualError::Read { input: input.to_string(), source };
    if std::fs::metadata(path).map_err(read_err)?.len() == 0 {
        return Err(VisualError::Empty { input: input.to_string() });
    }
    if !is_video_type {
        // The header is sniffed first, so a large video is not read into memory as an image.
        match picture::open(path) {
            Ok(img) => return Ok(Visual::Image(img)),
            // A picture in a format reelbox cannot read is not tried as a video: what to send
            // instead is the answer, not ffmpeg's view of it.
            Err(e @ (PictureError::Heic | PictureError::Unsupported(_))) => {
                return Err(VisualError::Picture { input: input.to_string(), source: e });
            }
            Err(e) => image_reason = e.to_string(),
        }
    }
    let info = probe(path).map_err(|e| not_visual(input, &image_reason, &e.to_string()))?;
    let video = info
        .video()
        .filter(|v| v.width.is_some() && (info.duration_s.is_some() || v.frames.is_some()))
        .ok_or_else(|| not_visual(input, &image_reason, "no video stream"))?;
    let (width, height) = video.display_size().ok_or_else(|| not_visual(input, &image_reason, "no frame size"))?;
    Ok(Visual::Video {
        path: path.to_path_buf(),
        info: VideoInfo {
            width,
            height,
            fps: video.fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(25.0),
            duration_s: video.duration_s.or(info.duration_s),
            has_audio: info.audio().is_some(),
        },
    })
}

fn not_visual(input: &str, image_reason: &str, video_reason: &str) -> VisualError {
    let reason = if image_reason.is_empty() {
        format!("as a video: {video_reason}")
    } else {
        format!("as an image: {image_reason}; as a video: {video_reason}")
    };
    VisualError::NotVisual { input: input.to_string(), reason }
}

impl Visual {
    /// Frame size.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Visual::Image(img) => img.dimensions(),
            Visual::Video { info, .. } => (info.width, info.height),
        }
    }

    /// A video's frames, at most `max_frames`, decoded into memory at `size` (width,
    /// height); an image is its one frame as it is.
    pub fn frames(&self, input: &str, max_frames: usize, size: (u32, u32)) -> Result<Vec<RgbImage>, VisualError> {
        match self {
            Visual::Image(img) => Ok(vec![img.clone()]),
            Visual::Video { path, info } => {
                let size = (size != (info.width, info.height)).then_some(size);
                let (_, frames) = read_video_frames(path, max_frames, size)
                    .map_err(|source| VisualError::Video { input: input.to_string(), source })?;
                if frames.is_empty() {
                    return Err(VisualError::NotVisual {
                        input: input.to_string(),
                        reason: "the video has no frames".into(),
                    });
                }
                Ok(frames)
            }
        }
    }
}

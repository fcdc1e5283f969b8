//! Decoding: any video ffmpeg reads, as RGB frames one at a time.

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use image::RgbImage;

use super::{FfmpegError, capture, ffmpeg_program, status_text};
use crate::busy::{self, Busy};
use crate::media::ffprobe::probe;

/// Geometry and timing of a video being decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Average frame rate (25 when the file does not say).
    pub fps: f64,
    /// Duration in seconds, when known.
    pub duration_s: Option<f64>,
    /// Whether the file also has an audio stream.
    pub has_audio: bool,
}

/// A video decoded to RGB frames by ffmpeg, one frame at a time.
pub struct VideoReader {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    input: String,
    info: VideoInfo,
    done: bool,
}

impl VideoReader {
    /// Opens `path` (anything ffmpeg decodes) for frame-by-frame reading.
    pub fn open(path: &Path) -> Result<Self, FfmpegError> {
        Self::open_scaled(path, None)
    }

    /// [`VideoReader::open`], with frames scaled by ffmpeg to `size` (width, height) when
    /// given: a 4K phone video read at the size it is used costs a quarter of the memory.
    pub fn open_scaled(path: &Path, size: Option<(u32, u32)>) -> Result<Self, FfmpegError> {
        let input = path.display().to_string();
        let media = probe(path)?;
        let video = media.video().ok_or_else(|| FfmpegError::NoVideo { input: input.clone() })?;
        let (width, height) = video.display_size().ok_or_else(|| FfmpegError::NoVideo { input: input.clone() })?;
        let (width, height) = size.unwrap_or((width, height));
        let info = VideoInfo {
            width,
            height,
            fps: video.fps.filter(|f| f.is_finite() && *f > 0.0).unwrap_or(25.0),
            duration_s: video.duration_s.or(media.duration_s),
            has_audio: media.audio().is_some(),
        };
        let program = ffmpeg_program();
        let mut child = Command::new(&program)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
            .args(super::LOCAL_INPUT)
            .arg("-i")
            .arg(path)
            .args(["-map", "0:v:0"])
            // After ffmpeg's autorotation, so the size is the upright one `display_size` gave.
            .args(size.map(|(w, h)| ["-vf".to_string(), format!("scale={w}:{h}:flags=area")]).into_iter().flatten())
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| FfmpegError::Spawn { program: program.display().to_string(), source })?;
        let stderr = child.stderr.take().map(capture);
        let stdout = child.stdout.take().ok_or_else(|| FfmpegError::Decode {
            input: input.clone(),
            status: "no output pipe".into(),
            stderr: String::new(),
        })?;
        Ok(Self { child, stdout: BufReader::with_capacity(1 << 20, stdout), stderr, input, info, done: false })
    }

    /// The video's size, rate and duration.
    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// The next frame, or `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>, FfmpegError> {
        if self.done {
            return Ok(None);
        }
        let mut buf = vec![0u8; self.info.width as usize * self.info.height as usize * 3];
        let stdout = &mut self.stdout;
        let (filled, failed) = busy::timed(Busy::Ffmpeg, || {
            let mut filled = 0;
            while filled < buf.len() {
                match stdout.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return (filled, Some(e)),
                }
            }
            (filled, None)
        });
        if let Some(e) = failed {
            return Err(self.fail(Some(e.to_string())));
        }
        if filled < buf.len() {
            self.done = true;
            let status = busy::timed(Busy::Ffmpeg, || self.child.wait()).ok();
            let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
            if !status.is_some_and(|s| s.success()) || filled != 0 {
                return Err(FfmpegError::Decode { input: self.input.clone(), status: status_text(status), stderr });
            }
            return Ok(None);
        }
        Ok(RgbImage::from_raw(self.info.width, self.info.height, buf))
    }

    fn fail(&mut self, reason: Option<String>) -> FfmpegError {
        self.done = true;
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        FfmpegError::Decode {
            input: self.input.clone(),
            status: status_text(status),
            stderr: reason.map_or(stderr.clone(), |r| format!("{r}; {stderr}")),
        }
    }
}

impl Iterator for VideoReader {
    type Item = Result<RgbImage, FfmpegError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Decodes at most `max_frames` frames of a (short) video into memory, scaled to `size`
/// when given.
pub fn read_video_frames(
    path: &Path,
    max_frames: usize,
    size: Option<(u32, u32)>,
) -> Result<(VideoInfo, Vec<RgbImage>), FfmpegError> {
    let mut reader = VideoReader::open_scaled(path, size)?;
    let info = reader.info();
    let mut frames = Vec::new();
    while frames.len() < max_frames {
        match reader.next_frame()? {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    Ok((info, frames))
}

//! What ffprobe says about a media file: streams, codecs, sizes, rates and durations.
//! The tests check encoded output with it; `visual` and the video reader use it to size
//! frames before decoding.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use super::ffmpeg::{FfmpegError, ffprobe_program};
use crate::busy::{self, Busy};

/// A media file as ffprobe sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// Container duration in seconds.
    pub duration_s: Option<f64>,
    /// Container format names (`mov,mp4,m4a,3gp,3g2,mj2`, `wav`, ...).
    pub format_name: String,
    /// The file's `title` tag (a render's film has its first sentence).
    pub title: Option<String>,
    pub streams: Vec<StreamInfo>,
}

/// One stream of a media file.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub index: u32,
    /// `video`, `audio`, `subtitle` or `data`.
    pub codec_type: String,
    /// `h264`, `aac`, `mov_text`, ...
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Average frame rate.
    pub fps: Option<f64>,
    pub duration_s: Option<f64>,
    /// Frame count as the container declares it.
    pub frames: Option<u64>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    /// Display rotation in degrees (phone videos); frames decode already rotated.
    pub rotation: i32,
    pub pix_fmt: Option<String>,
}

impl MediaInfo {
    /// The first video stream.
    pub fn video(&self) -> Option<&StreamInfo> {
        self.first("video")
    }

    /// The first audio stream.
    pub fn audio(&self) -> Option<&StreamInfo> {
        self.first("audio")
    }

    /// The first subtitle stream.
    pub fn subtitle(&self) -> Option<&StreamInfo> {
        self.first("subtitle")
    }

    fn first(&self, kind: &str) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.codec_type == kind)
    }
}

impl StreamInfo {
    /// Width and height of decoded frames, after the display rotation.
    pub fn display_size(&self) -> Option<(u32, u32)> {
        let (w, h) = (self.width?, self.height?);
        Some(if self.rotation.rem_euclid(180) == 90 { (h, w) } else { (w, h) })
    }
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    duration: Option<String>,
    format_name: Option<String>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    nb_frames: Option<String>,
    nb_read_frames: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    pix_fmt: Option<String>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
}

/// Parses ffprobe's `num/den` rates; `0/0` means unknown.
fn parse_rate(rate: Option<&str>) -> Option<f64> {
    let (n, d) = rate?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d != 0.0 && n != 0.0).then(|| n / d)
}

fn parse_num<T: std::str::FromStr>(v: Option<&String>) -> Option<T> {
    v.and_then(|s| s.parse().ok())
}

/// Runs ffprobe on `path`. With `count_frames`, every frame is decoded and counted (slow,
/// exact: `frames` then holds the real count).
pub fn probe_with(path: &Path, count_frames: bool) -> Result<MediaInfo, FfmpegError> {
    let input = path.display().to_string();
    let program = ffprobe_program();
    let mut cmd = Command::new(&program);
    cmd.args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .args(super::ffmpeg::LOCAL_INPUT);
    if count_frames {
        cmd.arg("-count_frames");
    }
    let out = busy::timed(Busy::Ffmpeg, || cmd.arg(path).output())
        .map_err(|source| FfmpegError::Spawn { program: program.display().to_string(), source })?;
    if !out.status.success() {
        return Err(FfmpegError::Probe { input, reason: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    let raw: RawProbe = serde_json::from_slice(&out.stdout)
        .map_err(|e| FfmpegError::Probe { input: input.clone(), reason: format!("unreadable ffprobe output: {e}") })?;
    let streams = raw
        .streams
        .into_iter()
        .map(|s| {
            let rotation = s
                .side_data_list
                .iter()
                .find_map(|d| d.get("rotation").and_then(serde_json::Value::as_i64))
                .or_else(|| s.tags.get("rotate").and_then(|v| v.as_str()).and_then(|v| v.parse().ok()))
                .unwrap_or(0) as i32;
            let frames = if count_frames { parse_num(s.nb_read_frames.as_ref()) } else { None }
                .or_else(|| parse_num(s.nb_frames.as_ref()));
            StreamInfo {
                index: s.index,
                codec_type: s.codec_type.unwrap_or_default(),
                codec_name: s.codec_name.unwrap_or_default(),
                width: s.width,
                height: s.height,
                fps: parse_rate(s.avg_frame_rate.as_deref()).or_else(|| parse_rate(s.r_frame_rate.as_deref())),
                duration_s: parse_num(s.duration.as_ref()),
                frames,
                sample_rate: parse_num(s.sample_rate.as_ref()),
                channels: s.channels,
                rotation,
                pix_fmt: s.pix_fmt,
            }
        })
        .collect();
    let format = raw.format;
    Ok(MediaInfo {
        duration_s: format.as_ref().and_then(|f| parse_num(f.duration.as_ref())),
        title: format.as_ref().and_then(|f| f.tags.get("title")).and_then(|t| t.as_str()).map(str::to_string),
        format_name: format.and_then(|f| f.format_name).unwrap_or_default(),
        streams,
    })
}

/// Runs ffprobe on `path` (container metadata only; fast).
pub fn probe(path: &Path) -> Result<MediaInfo, FfmpegError> {
    probe_with(path, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_ffprobe_writes_them() {
        assert_eq!(parse_rate(Some("25/1")), Some(25.0));
        assert_eq!(parse_rate(Some("30000/1001")), Some(30000.0 / 1001.0));
        assert_eq!(parse_rate(Some("0/0")), None);
    }
}

//! Video through the system ffmpeg binary: raw RGB frames piped in for H.264 + AAC MP4s
//! (with optional soft or burned-in subtitles), and videos decoded back to RGB frames.
//! ffmpeg's stderr is always captured so a failure says what ffmpeg said.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use crate::gpu::DeviceId;

mod decode;
mod encode;
pub mod loudness;

pub use decode::{VideoInfo, VideoReader, read_video_frames};
pub use encode::{FrameRate, VideoOptions, VideoWriter, WrittenVideo, encode_args, write_video};

/// Most stderr bytes kept from one ffmpeg run (the tail, where the reason is).
const STDERR_KEEP: usize = 16 * 1024;

/// Errors from running ffmpeg or ffprobe.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error(
        "cannot start {program}: {source}. Fix: install ffmpeg (e.g. `apt install ffmpeg`) or set REELBOX_FFMPEG / REELBOX_FFPROBE"
    )]
    Spawn { program: String, source: std::io::Error },
    #[error("ffmpeg failed writing {output} ({status}): {stderr}")]
    Encode { output: PathBuf, status: String, stderr: String },
    #[error("ffmpeg failed reading {input} ({status}): {stderr}")]
    Decode { input: String, status: String, stderr: String },
    #[error("ffprobe cannot read {input}: {reason}")]
    Probe { input: String, reason: String },
    #[error("{input} has no video stream")]
    NoVideo { input: String },
    #[error("frame {index} is {got_w}x{got_h} but the video is {width}x{height}")]
    FrameSize { index: u64, got_w: u32, got_h: u32, width: u32, height: u32 },
    #[error("invalid video options: {0}")]
    Options(String),
}

/// The ffmpeg binary: `REELBOX_FFMPEG` or `ffmpeg` on `PATH`.
pub fn ffmpeg_program() -> PathBuf {
    crate::config::env::ffmpeg().unwrap_or_else(|| PathBuf::from("ffmpeg"))
}

/// Input options that keep ffmpeg and ffprobe to local files and pipes: an uploaded "video"
/// can be a playlist naming `http://` or `tcp://` addresses, which would make them fetch
/// from (and so probe) the network on the box's behalf. Goes before each file's `-i`.
pub const LOCAL_INPUT: [&str; 2] = ["-protocol_whitelist", "file,pipe"];

/// The ffprobe binary: `REELBOX_FFPROBE` or `ffprobe` on `PATH`.
pub fn ffprobe_program() -> PathBuf {
    crate::config::env::ffprobe().unwrap_or_else(|| PathBuf::from("ffprobe"))
}

/// The H.264 encoder ffmpeg uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Encoder {
    /// libx264 on the CPU; always there in distro ffmpeg builds.
    Libx264,
    /// NVIDIA's hardware encoder.
    Nvenc,
}

impl H264Encoder {
    /// The encoder for frames made on `device`: NVENC on an NVIDIA GPU when this ffmpeg
    /// lists `h264_nvenc` and can open it, libx264 otherwise.
    pub fn for_device(device: DeviceId) -> Self {
        match device {
            DeviceId::Cuda(_) if nvenc_usable() => H264Encoder::Nvenc,
            _ => H264Encoder::Libx264,
        }
    }

    pub(crate) fn codec(self) -> &'static str {
        match self {
            H264Encoder::Libx264 => "libx264",
            H264Encoder::Nvenc => "h264_nvenc",
        }
    }
}

/// Whether `h264_nvenc` is listed by `ffmpeg -encoders` and opens on this machine (a
/// listed encoder still fails without a driver); checked once per process.
pub fn nvenc_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let listed = Command::new(ffmpeg_program())
            .args(["-hide_banner", "-encoders"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("h264_nvenc"))
            .unwrap_or(false);
        listed
            && Command::new(ffmpeg_program())
                .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "color=s=256x256:d=0.1"])
                .args(["-c:v", "h264_nvenc", "-f", "null", "-"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    })
}

/// Collects a child's stderr on a thread, keeping the tail.
pub(crate) fn capture(mut stderr: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > 2 * STDERR_KEEP {
                kept.drain(..kept.len() - STDERR_KEEP);
            }
        }
        let start = kept.len().saturating_sub(STDERR_KEEP);
        String::from_utf8_lossy(&kept[start..]).trim().to_string()
    })
}

pub(crate) fn status_text(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "did not exit".to_string(), |s| s.to_string())
}

//! Audio formats OpenAI clients ask for, made from the speech job's WAV by the system
//! `ffmpeg` (WAV itself is returned as stored).

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Sample rate of `pcm` output, as OpenAI's (raw signed 16-bit little-endian mono).
pub const PCM_RATE: u32 = 24_000;

/// An output format of `/v1/audio/speech`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechFormat {
    Mp3,
    Opus,
    Aac,
    Flac,
    Wav,
    Pcm,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("ffmpeg is not installed (needed for {format} output); install it (apt install ffmpeg) or ask for wav")]
    NoFfmpeg { format: &'static str },
    #[error("ffmpeg could not make {format} from {input}: {reason}")]
    Failed { format: &'static str, input: String, reason: String },
}

impl SpeechFormat {
    /// Parses OpenAI's `response_format`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "mp3" => Self::Mp3,
            "opus" => Self::Opus,
            "aac" => Self::Aac,
            "flac" => Self::Flac,
            "wav" => Self::Wav,
            "pcm" => Self::Pcm,
            _ => return None,
        })
    }

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
            Self::Aac => "aac",
            Self::Flac => "flac",
            Self::Wav => "wav",
            Self::Pcm => "pcm",
        }
    }

    /// `Content-Type` of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Mp3 => "audio/mpeg",
            Self::Opus => "audio/ogg",
            Self::Aac => "audio/aac",
            Self::Flac => "audio/flac",
            Self::Wav => "audio/wav",
            Self::Pcm => "audio/pcm",
        }
    }

    /// ffmpeg output arguments (after the input), writing to stdout.
    pub fn ffmpeg_args(self) -> &'static [&'static str] {
        match self {
            Self::Mp3 => &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
            // Ogg Opus, as OpenAI sends it; libopus resamples to 48 kHz.
            Self::Opus => &["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"],
            Self::Aac => &["-c:a", "aac", "-b:a", "128k", "-f", "adts"],
            Self::Flac => &["-c:a", "flac", "-f", "flac"],
            Self::Wav => &["-c:a", "pcm_s16le", "-f", "wav"],
            Self::Pcm => &["-c:a", "pcm_s16le", "-ar", "24000", "-ac", "1", "-f", "s16le"],
        }
    }
}

/// Converts a WAV file to `format`; the ffmpeg process dies with the future.
pub async fn transcode(wav: &Path, format: SpeechFormat) -> Result<Vec<u8>, TranscodeError> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(wav)
        .args(["-map_metadata", "-1", "-vn"])
        .args(format.ffmpeg_args())
        .arg("pipe:1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let failed =
        |reason: String| TranscodeError::Failed { format: format.name(), input: wav.display().to_string(), reason };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TranscodeError::NoFfmpeg { format: format.name() });
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    let mut stdout = child.stdout.take().ok_or_else(|| failed("no stdout pipe".into()))?;
    let mut stderr = child.stderr.take().ok_or_else(|| failed("no stderr pipe".into()))?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (read_out, read_err) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    read_out.map_err(|e| failed(e.to_string()))?;
    read_err.map_err(|e| failed(e.to_string()))?;
    let status = child.wait().await.map_err(|e| failed(e.to_string()))?;
    if !status.success() || out.is_empty() {
        let msg = String::from_utf8_lossy(&err).trim().to_string();
        return Err(failed(if msg.is_empty() { format!("exit status {status}") } else { msg }));
    }
    Ok(out)
}

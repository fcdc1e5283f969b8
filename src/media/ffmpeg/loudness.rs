//! A film's sound at one loudness: narration is peak-normalised sentence by sentence (as
//! Piper does, and its parity tests compare it), so films came out between about −17 and
//! −21 LUFS with peaks at full scale, which the AAC then decoded above 0 dBFS. The mux
//! brings the sound to [`TARGET_LUFS`] under a limiter at [`CEILING_DB`].
//!
//! The gain is measured (EBU R128 integrated loudness, ffmpeg's `ebur128`), applied, the
//! limited result measured once more and the gain corrected for what the limiter took:
//! two passes over the audio alone, far cheaper than `loudnorm`'s dynamic mode (which
//! works at 192 kHz and leaves a short clip 20 LU too quiet).

use std::path::Path;
use std::process::Command;

use super::{FfmpegError, LOCAL_INPUT, ffmpeg_program};

/// Integrated loudness a film's sound is brought to, LUFS (streaming platforms' −14 to
/// −16; a phone's speaker and a living-room TV both play it without reaching for the volume).
pub const TARGET_LUFS: f64 = -16.0;
/// The limiter's ceiling, dBFS: 1.5 dB under full scale leaves room for AAC's overshoot.
pub const CEILING_DB: f64 = -1.5;
/// Most gain applied, dB: a near-silent track is not pumped up into noise.
const MAX_GAIN_DB: f64 = 20.0;
/// Below this a track is silence (ebur128 reports −70 for digital silence): left as it is.
const SILENCE_LUFS: f64 = -60.0;

/// The audio filter that brings `audio` to [`TARGET_LUFS`] with peaks under
/// [`CEILING_DB`], or `None` for a silent track.
pub fn normalising_filter(audio: &Path) -> Result<Option<String>, FfmpegError> {
    let measured = integrated_loudness(audio, None)?;
    if measured < SILENCE_LUFS {
        return Ok(None);
    }
    let first = (TARGET_LUFS - measured).min(MAX_GAIN_DB);
    // The limiter takes off the loudest peaks, and with them some loudness: measure what
    // is left and make it up once (the second correction is a fraction of a dB).
    let limited = integrated_loudness(audio, Some(&filter(first)))?;
    let gain = (first + TARGET_LUFS - limited).min(MAX_GAIN_DB);
    Ok(Some(filter(gain)))
}

fn filter(gain_db: f64) -> String {
    let ceiling = 10f64.powf(CEILING_DB / 20.0);
    // A look-ahead limiter (5 ms attack) so no peak passes, released over 50 ms like speech.
    format!("volume={gain_db:.2}dB,alimiter=limit={ceiling:.4}:attack=5:release=50:level=false")
}

/// EBU R128 integrated loudness of `audio` (after `filter`, when given), LUFS.
fn integrated_loudness(audio: &Path, filter: Option<&str>) -> Result<f64, FfmpegError> {
    let graph = filter.map_or_else(|| "ebur128".to_string(), |f| format!("{f},ebur128"));
    let out = Command::new(ffmpeg_program())
        .args(["-hide_banner", "-nostdin", "-nostats"])
        .args(LOCAL_INPUT)
        .arg("-i")
        .arg(audio)
        .args(["-vn", "-af", &graph, "-f", "null", "-"])
        .output()
        .map_err(|source| FfmpegError::Spawn { program: ffmpeg_program().display().to_string(), source })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = || FfmpegError::Decode {
        input: audio.display().to_string(),
        status: out.status.to_string(),
        stderr: stderr.lines().rev().take(5).collect::<Vec<_>>().join("\n"),
    };
    if !out.status.success() {
        return Err(failed());
    }
    summary_loudness(&stderr).ok_or_else(failed)
}

/// The integrated loudness in ebur128's summary (`I:  -20.3 LUFS` after "Integrated loudness").
fn summary_loudness(log: &str) -> Option<f64> {
    let summary = &log[log.rfind("Integrated loudness")?..];
    let line = summary.lines().find(|l| l.trim_start().starts_with("I:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_s_integrated_loudness_is_read() {
        let log = "[Parsed_ebur128_0 @ 0x1] t: 0.4 M: -20 S: -120 I: -19.0 LUFS\n\
                   [Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -20.3 LUFS\n    \
                   Threshold: -30.6 LUFS\n";
        assert_eq!(summary_loudness(log), Some(-20.3));
        assert_eq!(summary_loudness("no summary"), None);
    }

    #[test]
    fn the_limiter_s_ceiling_is_under_full_scale() {
        assert_eq!(filter(4.0), "volume=4.00dB,alimiter=limit=0.8414:attack=5:release=50:level=false");
    }
}

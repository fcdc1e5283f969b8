//! How much audio and video one job may make: `limits.max_audio_seconds` and
//! `limits.max_frames`, checked at submission where the length can be known or estimated,
//! and again while running once it is known (an estimate can be short).

use crate::config::LimitsConfig;

/// Media longer than the limits allow; the message describes the media ("about N s of
/// …") and names the config key, so callers prefix what it is ("the input is …").
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MediaTooLong {
    /// More sound than `limits.max_audio_seconds`.
    #[error("about {seconds:.0} s of audio; the limit is {limit} s (limits.max_audio_seconds)")]
    Audio { seconds: f64, limit: f64 },
    /// More frames than `limits.max_frames`.
    #[error(
        "a video of about {frames} frames ({seconds:.0} s at {fps} fps); the limit is {limit} frames (limits.max_frames)"
    )]
    Frames { frames: u64, seconds: f64, fps: f64, limit: u32 },
}

impl MediaTooLong {
    /// What a film's maker can do about it, said after the refusal of a render.
    pub fn film_remedy(&self) -> &'static str {
        match self {
            MediaTooLong::Audio { .. } => "; shorten the script, or the box's owner raises limits.max_audio_seconds",
            MediaTooLong::Frames { .. } => {
                "; make fewer or shorter scenes, a lower fps (--fps / \"fps\"), or the box's owner raises \
                 limits.max_frames"
            }
        }
    }
}

/// Whether sound of `seconds`, and a video as long at `fps`, fit the limits.
pub fn media_fits(seconds: f64, fps: f64, limits: &LimitsConfig) -> Result<(), MediaTooLong> {
    if seconds > limits.max_audio_seconds {
        return Err(MediaTooLong::Audio { seconds, limit: limits.max_audio_seconds });
    }
    let frames = (seconds * fps).ceil() as u64;
    if frames > u64::from(limits.max_frames) {
        return Err(MediaTooLong::Frames { frames, seconds, fps, limit: limits.max_frames });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_and_frames_are_held_to_their_own_keys() {
        let limits = LimitsConfig { max_audio_seconds: 600.0, max_frames: 2000, ..LimitsConfig::default() };
        let frames = media_fits(100.0, 25.0, &limits).expect_err("many frames");
        assert!(frames.film_remedy().contains("a lower fps"), "{}", frames.film_remedy());
        assert!(media_fits(60.0, 25.0, &limits).is_ok());
        assert!(media_fits(601.0, 1.0, &limits).expect_err("long").to_string().contains("limits.max_audio_seconds"));
        assert!(media_fits(100.0, 25.0, &limits).expect_err("many frames").to_string().contains("limits.max_frames"));
    }

    #[test]
    fn the_default_limits_fit_the_longest_narration_at_the_default_fps() {
        let limits = LimitsConfig::default();
        let fps = f64::from(crate::pipelines::lipsync::DEFAULT_FPS);
        assert!(media_fits(limits.max_audio_seconds, fps, &limits).is_ok(), "{limits:?}");
    }
}

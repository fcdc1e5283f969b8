//! Subtitle files from timed cues: SubRip (`.srt`) and WebVTT (`.vtt`).

/// One subtitle: shown from `start_s` to `end_s` (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start_s: f64,
    pub end_s: f64,
    pub text: String,
}

impl Cue {
    /// A cue from seconds and text.
    pub fn new(start_s: f64, end_s: f64, text: impl Into<String>) -> Self {
        Self { start_s, end_s, text: text.into() }
    }
}

/// Splits a time into (hours, minutes, seconds, milliseconds), rounding to the millisecond.
fn hmsm(seconds: f64) -> (u64, u64, u64, u64) {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// `HH:MM:SS,mmm`, the SubRip timestamp.
pub fn srt_time(seconds: f64) -> String {
    let (h, m, s, ms) = hmsm(seconds);
    format!("{h:02}:{m:02}:{s:02},{ms:03}")
}

/// `HH:MM:SS.mmm`, the WebVTT timestamp.
pub fn vtt_time(seconds: f64) -> String {
    let (h, m, s, ms) = hmsm(seconds);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// Cue text with blank lines removed: a blank line ends a cue in both formats.
fn cue_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty())
}

/// Cues that can be shown: non-empty text and a positive duration.
fn shown(cues: &[Cue]) -> impl Iterator<Item = &Cue> {
    cues.iter().filter(|c| c.end_s > c.start_s && cue_lines(&c.text).next().is_some())
}

/// Renders cues as a SubRip file.
pub fn to_srt(cues: &[Cue]) -> String {
    let mut out = String::new();
    for (i, cue) in shown(cues).enumerate() {
        out.push_str(&format!("{}\n{} --> {}\n", i + 1, srt_time(cue.start_s), srt_time(cue.end_s)));
        for line in cue_lines(&cue.text) {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Renders cues as a WebVTT file; `&`, `<`, `>` are escaped as the format requires.
pub fn to_webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in shown(cues) {
        out.push_str(&format!("{} --> {}\n", vtt_time(cue.start_s), vtt_time(cue.end_s)));
        for line in cue_lines(&cue.text) {
            out.push_str(&line.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"));
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_numbers_cues_and_uses_commas() {
        let cues = [Cue::new(0.0, 1.5, "Hello"), Cue::new(3661.25, 3662.0, "two\n\nlines")];
        assert_eq!(
            to_srt(&cues),
            "1\n00:00:00,000 --> 00:00:01,500\nHello\n\n2\n01:01:01,250 --> 01:01:02,000\ntwo\nlines\n\n"
        );
    }

    #[test]
    fn webvtt_has_header_dots_and_escapes() {
        let cues = [Cue::new(0.5, 2.0, "a <b> & c"), Cue::new(2.0, 2.0, "zero length is dropped")];
        assert_eq!(to_webvtt(&cues), "WEBVTT\n\n00:00:00.500 --> 00:00:02.000\na &lt;b&gt; &amp; c\n\n");
    }
}

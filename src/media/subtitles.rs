//! Subtitle files from timed cues: SubRip (`.srt`) and WebVTT (`.vtt`), and cues cut to
//! what a viewer can read at once ([`fit_cue`]).

use crate::text::stops::stop_continues_in_any;

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

/// Lines a cue shows at most: more covers the picture and cannot be read in time.
pub const MAX_CUE_LINES: usize = 2;

/// Longest subtitle line, in columns, whatever the film's width (the usual broadcast rule).
const MAX_LINE_COLUMNS: usize = 42;

/// Columns a line of burned-in subtitles holds on a `width`×`height` film. ffmpeg's
/// subtitles filter draws SubRip at 16/288 of the film's height (DejaVu Sans, about half a
/// font size a character) between margins of 10/384 of its width: some 26 characters
/// across a square film, fewer on a tall one, at most [`MAX_LINE_COLUMNS`].
pub fn line_columns(width: u32, height: u32) -> usize {
    let columns = u64::from(width) * 26 / u64::from(height.max(1));
    (columns as usize).clamp(8, MAX_LINE_COLUMNS)
}

/// Columns a character takes on screen: two for the wide scripts (CJK, Hangul, full-width
/// forms, emoji), one for the rest.
fn columns_of(c: char) -> usize {
    let wide = matches!(u32::from(c),
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1FAFF | 0x20000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

fn columns(s: &str) -> usize {
    s.chars().map(columns_of).sum()
}

/// Cuts a word wider than `max` columns into pieces that fit, with a hyphen where it is
/// cut between two letters or digits (scripts without spaces, such as Chinese, take none).
fn break_word(word: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let (mut end, mut used) = (start, 0);
        while end < chars.len() && used + columns_of(chars[end]) <= max {
            used += columns_of(chars[end]);
            end += 1;
        }
        end = end.max(start + 1);
        let hyphen = |at: usize| {
            at < chars.len()
                && chars[at - 1].is_alphanumeric()
                && chars[at].is_alphanumeric()
                && columns_of(chars[at]) == 1
        };
        if hyphen(end) && end - start > 1 {
            end -= 1;
            pieces.push(chars[start..end].iter().collect::<String>() + "-");
        } else {
            pieces.push(chars[start..end].iter().collect());
        }
        start = end;
    }
    pieces
}

/// Lines of at most `max` columns, broken between words (a word too wide is cut).
pub fn wrap_lines(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        for piece in if columns(word) > max { break_word(word, max) } else { vec![word.to_string()] } {
            if !line.is_empty() && columns(&line) + 1 + columns(&piece) > max {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&piece);
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The words of `pieces` in `turns` runs of about equal width, so a sentence of three
/// lines is shown as two of one and a half rather than two and a stray "own box.".
///
/// A turn never ends on a title or an initial the sentence reads on from ("the owner, Mr." |
/// "José Muñoz-García"): the turn is cut before it instead, or after the name when the
/// title opens the turn.
fn balanced(pieces: &[String], turns: usize) -> Vec<String> {
    let total: usize = pieces.iter().map(|p| columns(p) + 1).sum();
    let target = total.div_ceil(turns.max(1));
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    let mut width = 0;
    for piece in pieces {
        let next = columns(piece) + 1;
        if width > 0 && width + next / 2 > target && out.len() < turns {
            // Back to the nearest space the sentence may be cut at, keeping a word; the
            // words after it open the next turn.
            let mut carried: Vec<&str> = Vec::new();
            let mut cut = false;
            if let Some(last) = out.last_mut() {
                while let Some(word) = last.last() {
                    if may_cut_after(word, carried.last().copied().unwrap_or(piece)) {
                        cut = true;
                        break;
                    }
                    if last.len() == 1 {
                        break;
                    }
                    carried.extend(last.pop());
                }
            }
            carried.reverse();
            if cut {
                width = carried.iter().map(|p| columns(p) + 1).sum();
                out.push(carried);
            } else if let Some(last) = out.last_mut() {
                last.extend(carried);
            }
        }
        if let Some(last) = out.last_mut() {
            last.push(piece);
        }
        width += next;
    }
    out.into_iter().map(|turn| turn.join(" ")).collect()
}

/// Whether a turn may end after `word` when `next` follows: not after a full stop a
/// sentence reads on from in any language (the voice's own rule, [`stop_continues_in_any`]).
fn may_cut_after(word: &str, next: &str) -> bool {
    !word.strip_suffix('.').is_some_and(|w| stop_continues_in_any(w, next))
}

/// A cue as a viewer can read it on a film whose lines hold `max_columns`: one cue of at
/// most [`MAX_CUE_LINES`] lines' worth of words (a word too wide for a line cut), or
/// several of about equal length in turn, each shown for its share of the cue's time by
/// the characters it holds, so the words on screen are the ones being said.
pub fn fit_cue(cue: &Cue, max_columns: usize) -> Vec<Cue> {
    // The words, those wider than a line already cut: lines are wrapped from these.
    let wrapped = wrap_lines(&cue.text, max_columns);
    let lines = wrapped.len();
    let pieces: Vec<String> =
        wrapped.iter().flat_map(|line| line.split(' ').map(str::to_string).collect::<Vec<_>>()).collect();
    // As few turns as the lines need, more only when balancing left one too long. Lines
    // are joined with spaces, not breaks: the player (or the burning filter) wraps them
    // at its own width, which a track shown larger than the film may have.
    let mut turns = lines.div_ceil(MAX_CUE_LINES).max(1);
    let chunks = loop {
        let chunks = balanced(&pieces, turns);
        let fits = chunks.iter().all(|c| wrap_lines(c, max_columns).len() <= MAX_CUE_LINES);
        if fits || turns >= pieces.len() {
            break chunks;
        }
        turns += 1;
    };
    let weight = |s: &str| s.chars().filter(|c| !c.is_whitespace()).map(columns_of).sum::<usize>().max(1) as f64;
    let total: f64 = chunks.iter().map(|c| weight(c)).sum();
    let span = cue.end_s - cue.start_s;
    let mut at = cue.start_s;
    let mut done = 0.0;
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            done += weight(&text);
            let end = if i + 1 == n { cue.end_s } else { cue.start_s + span * done / total };
            let out = Cue::new(at, end, text);
            at = end;
            out
        })
        .collect()
}

/// The ISO 639-2 code an MP4 track's language is written in, from a voice's language
/// ("en-us", "de", "pt_BR": the part before `-`/`_`); `None` for one this table lacks
/// (ffmpeg writes a two-letter code as no language at all).
pub fn iso639_2(language: &str) -> Option<&'static str> {
    let family = language.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    const CODES: [(&str, &str); 40] = [
        ("ar", "ara"),
        ("ca", "cat"),
        ("cs", "ces"),
        ("cy", "cym"),
        ("da", "dan"),
        ("de", "deu"),
        ("el", "ell"),
        ("en", "eng"),
        ("es", "spa"),
        ("fa", "fas"),
        ("fi", "fin"),
        ("fr", "fra"),
        ("hi", "hin"),
        ("hu", "hun"),
        ("id", "ind"),
        ("is", "isl"),
        ("it", "ita"),
        ("ja", "jpn"),
        ("ka", "kat"),
        ("kk", "kaz"),
        ("ko", "kor"),
        ("lb", "ltz"),
        ("lv", "lav"),
        ("ml", "mal"),
        ("ne", "nep"),
        ("nl", "nld"),
        ("no", "nor"),
        ("pl", "pol"),
        ("pt", "por"),
        ("ro", "ron"),
        ("ru", "rus"),
        ("sk", "slk"),
        ("sl", "slv"),
        ("sr", "srp"),
        ("sv", "swe"),
        ("sw", "swa"),
        ("te", "tel"),
        ("tr", "tur"),
        ("uk", "ukr"),
        ("vi", "vie"),
    ];
    let code = CODES.iter().find(|(two, _)| *two == family).map(|(_, three)| *three);
    code.or_else(|| [("zh", "zho"), ("cmn", "zho")].iter().find(|(k, _)| *k == family).map(|(_, v)| *v))
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
    fn a_title_stays_with_the_name_it_goes_before() {
        let texts = [
            // A film's cue ended "…the owner, Mr." and the next began "José Muñoz-García…".
            "At the Café Zoë, the owner, Mr. José Muñoz-García, poured her a coffee that was far too strong.",
            "Then she asked Dr. J. Smith, who sat by the window of the café, about the weather in the hills.",
        ];
        // From the widest word on: a word wider than a line is cut (a test of its own).
        for (text, width) in texts.iter().flat_map(|t| (18..60).map(move |w| (t, w))) {
            let cues = fit_cue(&Cue::new(0.0, 9.0, *text), width);
            let joined: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
            assert_eq!(joined.join(" "), *text, "every word once, in order");
            for c in &cues {
                let last = c.text.rsplit(' ').next().unwrap_or_default();
                assert!(!["Mr.", "Dr.", "J."].contains(&last), "width {width}: {cues:?}");
            }
        }
    }

    #[test]
    fn a_long_sentence_becomes_cues_of_two_lines_timed_by_their_characters() {
        let text = "This is a rather long sentence that should wrap onto several lines on a narrow film.";
        let cues = fit_cue(&Cue::new(1.0, 9.0, text), 14);
        assert!(cues.len() > 1, "{cues:?}");
        for c in &cues {
            assert!(wrap_lines(&c.text, 14).len() <= MAX_CUE_LINES, "{c:?}");
        }
        let joined: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined.join(" "), text, "every word once, in order");
        assert_eq!((cues[0].start_s, cues.last().map(|c| c.end_s)), (1.0, Some(9.0)));
        for pair in cues.windows(2) {
            assert_eq!(pair[0].end_s, pair[1].start_s, "one after the other, no gap");
        }
        let short = fit_cue(&Cue::new(0.0, 1.0, "Short one."), 14);
        assert_eq!(short, vec![Cue::new(0.0, 1.0, "Short one.")]);
        // Three lines' worth is two turns of about equal length, not two lines and a stray.
        let demo = fit_cue(&Cue::new(0.0, 4.0, "Welcome to reelbox, a film studio that lives in your own box."), 26);
        let texts: Vec<&str> = demo.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Welcome to reelbox, a film studio", "that lives in your own box."]);
    }

    #[test]
    fn words_wider_than_a_line_are_cut_and_wide_scripts_count_double() {
        assert_eq!(wrap_lines("Supercalifragilistic is long", 8), ["Superca-", "lifragi-", "listic", "is long"]);
        assert_eq!(wrap_lines("你好世界你好世界", 8), ["你好世界", "你好世界"]);
        assert_eq!(line_columns(128, 256), 13);
        assert_eq!(line_columns(512, 512), 26);
        assert_eq!(line_columns(1920, 1080), 42);
    }

    #[test]
    fn voice_languages_become_three_letter_codes() {
        assert_eq!(iso639_2("en-us"), Some("eng"));
        assert_eq!(iso639_2("de"), Some("deu"));
        assert_eq!(iso639_2("pt_BR"), Some("por"));
        assert_eq!(iso639_2("cmn"), Some("zho"));
        assert_eq!(iso639_2("xx"), None);
    }

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

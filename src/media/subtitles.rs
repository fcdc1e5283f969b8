//! Subtitle files from timed cues: SubRip (`.srt`) and WebVTT (`.vtt`), and cues cut to
//! what a viewer can read at once ([`fit_cue`]).

use crate::text::stops::stop_continues_in_any;
use unicode_width::UnicodeWidthChar;

use super::hyphenation::Hyphenation;
use super::lines::{Line, Unit, joined, layout, units};

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

/// The units of `pieces` in `turns` runs of about equal width, so a sentence of three
/// lines is shown as two of one and a half rather than two and a stray "own box.".
///
/// A turn ends only where a line may (between words, or between the characters of a
/// script written without spaces), and never on a title or an initial the sentence reads
/// on from ("the owner, Mr." | "José Muñoz-García"): the turn is cut before it instead, or
/// after the name when the title opens the turn.
fn balanced<'a>(pieces: &[Unit<'a>], turns: usize) -> Vec<Vec<Unit<'a>>> {
    let width = |u: &Unit| u.columns() + usize::from(u.spaced);
    let total: usize = pieces.iter().map(width).sum();
    let target = total.div_ceil(turns.max(1));
    let mut out: Vec<Vec<Unit>> = vec![Vec::new()];
    let mut used = 0;
    for piece in pieces {
        let next = width(piece);
        if used > 0 && used + next / 2 > target && out.len() < turns {
            // Back to the nearest place the sentence may be cut at, keeping a unit; the
            // units after it open the next turn.
            let mut carried: Vec<Unit> = Vec::new();
            let mut cut = false;
            if let Some(last) = out.last_mut() {
                while let Some(unit) = last.last() {
                    if may_cut_after(unit, carried.last().unwrap_or(piece)) {
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
                used = carried.iter().map(width).sum();
                out.push(carried);
            } else if let Some(last) = out.last_mut() {
                last.extend(carried);
            }
        }
        if let Some(last) = out.last_mut() {
            last.push(*piece);
        }
        used += next;
    }
    out
}

/// Whether a turn may end after `unit` when `next` follows: where a line may end, and not
/// after a full stop the sentence reads on from in any language (the voice's own rule, [`stop_continues_in_any`]).
fn may_cut_after(unit: &Unit, next: &Unit) -> bool {
    (unit.spaced || unit.wide_edge(next))
        && !unit.text.strip_suffix('.').is_some_and(|w| stop_continues_in_any(w, next.text))
}

/// A cue as a viewer can read it on a film whose lines hold `max_columns`: one cue of at
/// most [`MAX_CUE_LINES`] lines, or several of about equal length in turn, each shown for
/// its share of the cue's time by the columns it holds, so the words on screen are the
/// ones being said. A word wider than a line is cut where its line ends (the room left on
/// it filled first), between syllables as `hyphenation` knows them, and its pieces stay in
/// one cue when they fit.
///
/// A cue's lines are joined by a space where the text had one: the player (or the burning
/// filter) wraps them at its own width, which a track shown larger than the film may have.
/// Where the text had none (CJK, a cut word) the cue keeps a line break.
pub fn fit_cue(cue: &Cue, max_columns: usize, hyphenation: Hyphenation) -> Vec<Cue> {
    let pieces = units(&cue.text);
    let lines = layout(&pieces, max_columns, hyphenation);
    let chunks: Vec<String> = if pieces.iter().any(|u| u.columns() > max_columns) {
        // A word is cut: the lines as filled, two to a cue.
        lines.chunks(MAX_CUE_LINES).map(joined).collect()
    } else {
        // As few turns as the lines need, more only when balancing left one too long.
        let mut turns = lines.len().div_ceil(MAX_CUE_LINES).max(1);
        loop {
            let laid: Vec<Vec<Line>> =
                balanced(&pieces, turns).iter().map(|c| layout(c, max_columns, hyphenation)).collect();
            if laid.iter().all(|l| l.len() <= MAX_CUE_LINES) || turns >= pieces.len() {
                break laid.iter().map(|l| joined(l)).collect();
            }
            turns += 1;
        }
    };
    let weight =
        |s: &str| s.chars().filter(|c| !c.is_whitespace()).map(|c| c.width().unwrap_or(0)).sum::<usize>().max(1) as f64;
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

/// The cues of one scene's timed sentences, each fitted by [`fit_cue`]. A sentence the
/// voice ended where the writer's goes on ("„Komm her!“," | "rief Oma.", "« Bonjour, Zoë !
/// »" | "dit-il…": Piper ends a sentence at every `!` and `?`) is shown with the next one
/// as one cue, from the first's start to the second's end, when both fit one cue's lines.
pub fn sentence_cues(sentences: &[Cue], max_columns: usize, hyphenation: Hyphenation) -> Vec<Cue> {
    let mut kept: Vec<Cue> = Vec::with_capacity(sentences.len());
    for s in sentences {
        match kept.last_mut() {
            Some(last) if goes_on(&last.text, &s.text) => {
                let both = format!("{} {}", last.text, s.text);
                if layout(&units(&both), max_columns, hyphenation).len() <= MAX_CUE_LINES {
                    *last = Cue::new(last.start_s, s.end_s, both);
                } else {
                    kept.push(s.clone());
                }
            }
            _ => kept.push(s.clone()),
        }
    }
    kept.iter().flat_map(|c| fit_cue(c, max_columns, hyphenation)).collect()
}

/// Whether the sentence after `text` continues it: `text` ends with a comma, colon,
/// semicolon or dash (closing quotes aside), or `next` opens with a small letter.
fn goes_on(text: &str, next: &str) -> bool {
    let end = text.trim_end_matches(|c: char| "\"'»›“”‘’)]".contains(c)).chars().last();
    let first = next.chars().find(|c| c.is_alphanumeric());
    end.is_some_and(|c| ",;:–—".contains(c)) || first.is_some_and(char::is_lowercase)
}

/// The ISO 639-2 code an MP4 track's language is written in, from a voice's language
/// ("en-us", "de", "pt_BR": the part before `-`/`_`); `None` for one this table lacks
/// (ffmpeg writes a two-letter code as no language at all).
pub fn iso639_2(language: &str) -> Option<&'static str> {
    let family = language.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
    CODES.iter().find(|(two, _)| *two == family).map(|(_, three)| *three)
}

/// The two-letter code of a track's ISO 639-2 language ("deu" → "de"; "zho" → "zh"), as
/// [`iso639_2`] wrote it; `None` for one its table lacks.
pub fn iso639_1(code: &str) -> Option<&'static str> {
    CODES.iter().find(|(_, three)| *three == code).map(|(two, _)| *two)
}

/// Voices' language families and their ISO 639-2 codes (Chinese by two names).
const CODES: [(&str, &str); 42] = [
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
    ("zh", "zho"),
    ("cmn", "zho"),
];

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
    use crate::media::lines::{columns, wrap_lines};

    #[test]
    fn a_title_stays_with_the_name_it_goes_before() {
        let texts = [
            // A film's cue ended "…the owner, Mr." and the next began "José Muñoz-García…".
            "At the Café Zoë, the owner, Mr. José Muñoz-García, poured her a coffee that was far too strong.",
            "Then she asked Dr. J. Smith, who sat by the window of the café, about the weather in the hills.",
        ];
        // From the widest word on: a word wider than a line is cut (a test of its own).
        for (text, width) in texts.iter().flat_map(|t| (18..60).map(move |w| (t, w))) {
            let cues = fit_cue(&Cue::new(0.0, 9.0, *text), width, Hyphenation::of("en"));
            let joined: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
            // A line break after the hyphen of "Muñoz-García" is kept as one.
            assert_eq!(joined.join(" ").replace('\n', ""), *text, "every word once, in order");
            for c in &cues {
                let last = c.text.rsplit(' ').next().unwrap_or_default();
                assert!(!["Mr.", "Dr.", "J."].contains(&last), "width {width}: {cues:?}");
            }
        }
    }

    #[test]
    fn a_long_sentence_becomes_cues_of_two_lines_timed_by_their_characters() {
        let text = "This is a rather long sentence that should wrap onto several lines on a narrow film.";
        let cues = fit_cue(&Cue::new(1.0, 9.0, text), 14, Hyphenation::of("en"));
        assert!(cues.len() > 1, "{cues:?}");
        for c in &cues {
            assert!(wrap_lines(&c.text, 14, Hyphenation::of("en")).len() <= MAX_CUE_LINES, "{c:?}");
        }
        let joined: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined.join(" "), text, "every word once, in order");
        assert_eq!((cues[0].start_s, cues.last().map(|c| c.end_s)), (1.0, Some(9.0)));
        for pair in cues.windows(2) {
            assert_eq!(pair[0].end_s, pair[1].start_s, "one after the other, no gap");
        }
        let short = fit_cue(&Cue::new(0.0, 1.0, "Short one."), 14, Hyphenation::of("en"));
        assert_eq!(short, vec![Cue::new(0.0, 1.0, "Short one.")]);
        // Three lines' worth is two turns of about equal length, not two lines and a stray.
        let demo = fit_cue(
            &Cue::new(0.0, 4.0, "Welcome to reelbox, a film studio that lives in your own box."),
            26,
            Hyphenation::of("en"),
        );
        let texts: Vec<&str> = demo.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Welcome to reelbox, a film studio", "that lives in your own box."]);
    }

    #[test]
    fn a_quotation_the_voice_cut_is_one_cue_with_the_words_that_go_on() {
        let cue = |a: f64, b: f64, t: &str| Cue::new(a, b, t);
        let german = [cue(0.0, 1.0, "„Komm her!“,"), cue(1.2, 2.0, "rief Oma."), cue(2.0, 3.0, "Dann ging sie.")];
        assert_eq!(
            sentence_cues(&german, 42, Hyphenation::of("de")),
            [cue(0.0, 2.0, "„Komm her!“, rief Oma."), cue(2.0, 3.0, "Dann ging sie.")]
        );
        let french = [cue(0.0, 1.0, "« Bonjour, Zoë ! »"), cue(1.0, 2.0, "dit-il… Puis — plus rien.")];
        assert_eq!(
            sentence_cues(&french, 42, Hyphenation::of("fr")),
            [cue(0.0, 2.0, "« Bonjour, Zoë ! » dit-il… Puis — plus rien.")]
        );
        // Two sentences of their own stay two cues; one that does not fit beside the quote
        // is shown after it.
        let two = [cue(0.0, 1.0, "Quelle journée !"), cue(1.0, 2.0, "Rien.")];
        assert_eq!(sentence_cues(&two, 42, Hyphenation::of("fr")), two);
        let long = [cue(0.0, 1.0, "«¡Qué calor!»,"), cue(1.0, 5.0, &"dijo ella, y luego otra vez ".repeat(3))];
        let cues = sentence_cues(&long, 42, Hyphenation::of("es"));
        assert_eq!(cues[0], cue(0.0, 1.0, "«¡Qué calor!»,"));
        assert!(cues.iter().all(|c| !c.text.starts_with([',', '»', '.', '!'])), "{cues:?}");
    }

    #[test]
    fn text_without_spaces_is_cut_between_characters_and_joined_without_spaces() {
        let text = "今日はとても良い天気ですね、おばあちゃんと一緒に京都の古いお寺を見に行きました。";
        let cues = fit_cue(&Cue::new(0.0, 4.0, text), 26, Hyphenation::of("ja"));
        let shown: String = cues.iter().map(|c| c.text.replace('\n', "")).collect();
        assert_eq!(shown, text, "no space added: {cues:?}");
        for c in &cues {
            let lines: Vec<&str> = c.text.lines().collect();
            assert!(lines.len() <= MAX_CUE_LINES, "{c:?}");
            assert!(lines.iter().all(|l| columns(l) <= 26 && !l.starts_with(['、', '。'])), "{c:?}");
        }
        // Three lines' worth: two turns of a line and a half.
        assert_eq!(cues[0].text, "今日はとても良い天気です\nね、おばあちゃん");
    }

    #[test]
    fn a_long_compound_fills_its_line_and_its_pieces_stay_in_one_cue() {
        let de = Hyphenation::of("de");
        let cues = fit_cue(&Cue::new(0.0, 2.0, "Die Donaudampfschifffahrtsgesellschaft grüßt Zoë."), 26, de);
        // It was `Die Donaudampfschifffahrt-` | `sgesellschaft grüßt Zoë.`, cut by width.
        let texts: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Die Donaudampfschiff-\nfahrtsgesellschaft grüßt", "Zoë."]);
        let text = "Die Donaudampfschifffahrtsgesellschaftskapitänsmütze lag auf dem Tisch, ca. 300 m vom \
                    Bahnhof entfernt, d. h. gleich um die Ecke.";
        let cues = fit_cue(&Cue::new(0.0, 9.0, text), 26, de);
        let first: Vec<&str> = cues[0].text.lines().collect();
        assert_eq!(first, ["Die Donaudampfschiff-", "fahrtsgesellschaftskapi-"], "{cues:?}");
        for c in &cues {
            assert!(wrap_lines(&c.text, 26, de).len() <= MAX_CUE_LINES, "{c:?}");
        }
        // Cut only where a line ends: within a cue and, for what does not fit two lines, between cues.
        let shown: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(shown.join("\n").replace("-\n", "").replace('\n', " "), text);
    }

    #[test]
    fn line_columns_follow_the_burned_in_font() {
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
        assert_eq!((iso639_1("deu"), iso639_1("zho"), iso639_1("xxx")), (Some("de"), Some("zh"), None));
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

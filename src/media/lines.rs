//! Where a line of text may end and how wide it is on screen, for subtitles and for the
//! voice's sentences mapped back onto the script. Breaks are UAX #14's (`unicode-linebreak`:
//! between words, between the characters of a script written without spaces, never before
//! `、。」!?` nor at a no-break space U+00A0/U+202F); widths are display columns
//! (`unicode-width`: two for CJK, none for a combining mark). A word wider than a line is
//! cut where the line ends as a typesetter cuts it: after a hyphen it has, else between two
//! syllables in the film's language ([`Hyphenation`]), else by width, with a hyphen between
//! two letters.

use unicode_linebreak::linebreaks;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::hyphenation::Hyphenation;

/// Columns `s` takes on screen.
pub fn columns(s: &str) -> usize {
    s.width()
}

/// Whether `c` closes what comes before it, so that no line, cue or sentence a reader sees
/// starts with it: `, . ; : ! ? ) ]`, CJK closing marks, and a quotation mark that no letter
/// or digit follows (`“,` in German, `» dit-il` in French), which opens a quotation when one
/// does (`“Yes”`, `»Ja«`). `«` `‹` `„` never close: French opens with `« ` before a space.
pub fn closes(c: char, next: Option<char>) -> bool {
    const MARKS: &str = ",.;:!?)]}…、。，．！？：；」』）】〉》〕";
    const QUOTES: &str = "\"'»›“”‘’";
    MARKS.contains(c) || (QUOTES.contains(c) && !next.is_some_and(char::is_alphanumeric))
}

/// A space a line may end at: an ordinary one, not a no-break space (U+00A0, U+202F, U+2007).
pub fn breaks_here(c: char) -> bool {
    c.is_whitespace() && !matches!(c, '\u{a0}' | '\u{202f}' | '\u{2007}')
}

/// `text` with each run of spaces a line may end at (newlines, tabs) made one space and
/// none at either end; a no-break space is kept as written (French `crié\u{a0}:`).
pub fn collapse_spaces(text: &str) -> String {
    text.split(breaks_here).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A piece of text a line may end after: a word with the marks that stick to it, or one
/// character of a script written without spaces (with the `、` after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit<'a> {
    /// The text as written, without the spaces after it (a no-break space stays inside).
    pub text: &'a str,
    /// True when a space follows in the text: a line ending here drops it.
    pub spaced: bool,
}

impl Unit<'_> {
    /// Columns the unit takes, without the space after it.
    pub fn columns(&self) -> usize {
        columns(self.text)
    }

    /// True when the unit is, or meets `next` with, a character of a wide script: text
    /// written without spaces may be cut there.
    pub fn wide_edge(&self, next: &Unit) -> bool {
        let wide = |c: Option<char>| c.is_some_and(|c| c.width().unwrap_or(0) > 1);
        wide(self.text.chars().last()) || wide(next.text.chars().next())
    }
}

/// `text` as the units a line may end after. UAX #14 lets a line end before a quotation
/// mark after a space (`Zoë ! »`) and after an opening one (`« Bonjour`); both stay with
/// their word here.
pub fn units(text: &str) -> Vec<Unit<'_>> {
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    let mut from = 0;
    for (at, _) in linebreaks(text) {
        let piece = &text[from..at];
        let content = piece.trim_end_matches(breaks_here);
        let spaced = content.len() < piece.len();
        if content.is_empty() {
            if let Some(last) = out.last_mut() {
                last.2 |= spaced;
            }
        } else {
            out.push((from, from + content.len(), spaced));
        }
        from = at;
    }
    // A closing quotation mark after a space goes with the word before it.
    let mut merged: Vec<(usize, usize, bool)> = Vec::with_capacity(out.len());
    for unit in out {
        let mut chars = text[unit.0..unit.1].chars();
        let first = chars.next();
        match merged.last_mut() {
            Some(last) if first.is_some_and(|c| closes(c, chars.next())) => *last = (last.0, unit.1, unit.2),
            _ => merged.push(unit),
        }
    }
    // An opening one alone (`«`, `„`, `(` before a space) goes with the word after it.
    let mut units: Vec<(usize, usize, bool)> = Vec::with_capacity(merged.len());
    let mut opening: Option<usize> = None;
    for unit in merged {
        let start = opening.take().unwrap_or(unit.0);
        let lone = text[unit.0..unit.1].chars().all(|c| "«‹„“‘\"'([{¿¡".contains(c));
        if lone && unit.2 {
            opening = Some(start);
        } else {
            units.push((start, unit.1, unit.2));
        }
    }
    if let Some(start) = opening {
        // Nothing after it: it ends the text, so it stays with what came before (if any).
        let end = text.trim_end_matches(breaks_here).len().max(start);
        match units.last_mut() {
            Some(last) => *last = (last.0, end, false),
            None => units.push((start, end, false)),
        }
    }
    units.into_iter().map(|(a, b, spaced)| Unit { text: &text[a..b], spaced }).collect()
}

/// One line of a layout and how it meets the next: `spaced` where the text had a space
/// (a player may move the break), else the break is between letters or characters that
/// are written together and must be kept as a line break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub spaced: bool,
}

/// The fewest columns a word's first piece may have at the end of a line (letters and
/// hyphen); less is left for the next line.
const MIN_PIECE: usize = 4;

/// Cuts `word` (wider than `room`) to at most `room` columns where a reader finds it
/// easiest to follow on the next line: after the last hyphen it has that fits, else at the
/// last of `syllables` that fits (byte offsets in `word` between two syllables), else by
/// width where the room ends. A hyphen is added where the cut falls between two letters or
/// digits, leaving at least two of them on each side; `None` when no cut fits. A combining
/// mark stays with its letter.
fn cut<'a>(word: &'a str, syllables: &[usize], room: usize) -> Option<(String, &'a str)> {
    let letter = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() && c.width() == Some(1));
    let shown = |s: &str| s.chars().filter(|c| c.width() != Some(0)).count();
    // Each place the word may be cut (before a character that is not a combining mark),
    // with the columns before it, last first.
    let mut stops = Vec::new();
    let mut used = 0;
    for (at, c) in word.char_indices() {
        let w = c.width().unwrap_or(0);
        if w > 0 && at > 0 {
            stops.push((at, used));
        }
        used += w;
    }
    stops.reverse();
    let piece = |&(at, before): &(usize, usize)| {
        let (head, tail) = word.split_at(at);
        let hyphen = letter(head.chars().last()) && letter(tail.chars().next());
        if before + usize::from(hyphen) > room || (hyphen && (shown(head) < 2 || shown(tail) < 2)) {
            return None;
        }
        Some((if hyphen { format!("{head}-") } else { head.to_string() }, tail))
    };
    let after_hyphen = |&&(at, _): &&(usize, usize)| word[..at].ends_with(['-', '\u{2010}']);
    let syllable = |&&(at, _): &&(usize, usize)| syllables.binary_search(&at).is_ok();
    (stops.iter().filter(after_hyphen).find_map(piece))
        .or_else(|| stops.iter().filter(syllable).find_map(piece))
        .or_else(|| stops.iter().find_map(piece))
}

/// `units` laid out in lines of at most `max` columns, filled in turn: a unit that does not
/// fit starts the next line, and one wider than a whole line is cut ([`cut`], between
/// syllables as `hyphenation` knows them), its first piece filling the room left on the
/// current line.
pub fn layout(units: &[Unit], max: usize, hyphenation: Hyphenation) -> Vec<Line> {
    let max = max.max(2);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    let mut gap = false;
    for u in units {
        let sep = usize::from(!line.is_empty() && gap);
        let w = u.columns();
        if used + sep + w <= max {
            if sep == 1 {
                line.push(' ');
            }
            line.push_str(u.text);
            used += sep + w;
            gap = u.spaced;
            continue;
        }
        let mut rest = u.text;
        // Syllables of the whole word, as each piece's own edges would read differently to
        // the patterns; each piece sees those after its start.
        let syllables = if w > max { hyphenation.syllable_breaks(u.text) } else { Vec::new() };
        let from = |rest: &str| {
            let start = u.text.len() - rest.len();
            syllables.iter().filter_map(|at| at.checked_sub(start)).collect::<Vec<_>>()
        };
        if w > max && !line.is_empty() && max.saturating_sub(used + sep) >= MIN_PIECE {
            // A first piece shorter than MIN_PIECE (a syllable as short as "Do-") is left
            // for the next line with the rest of its word.
            let first = cut(rest, &from(rest), max - used - sep).filter(|(piece, _)| columns(piece) >= MIN_PIECE);
            if let Some((piece, after)) = first {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&piece);
                lines.push(Line { text: std::mem::take(&mut line), spaced: false });
                rest = after;
            }
        }
        if !line.is_empty() {
            lines.push(Line { text: std::mem::take(&mut line), spaced: gap });
        }
        while columns(rest) > max {
            let Some((piece, after)) = cut(rest, &from(rest), max) else { break };
            lines.push(Line { text: piece, spaced: false });
            rest = after;
        }
        line.push_str(rest);
        used = columns(rest);
        gap = u.spaced;
    }
    if !line.is_empty() {
        lines.push(Line { text: line, spaced: false });
    }
    lines
}

/// Lines of at most `max` columns, broken where UAX #14 allows (a word too wide is cut,
/// between syllables as `hyphenation` knows them).
pub fn wrap_lines(text: &str, max: usize, hyphenation: Hyphenation) -> Vec<String> {
    layout(&units(text), max, hyphenation).into_iter().map(|l| l.text).collect()
}

/// Lines as one text: a space where the text had one (a player may wrap it elsewhere at
/// its own width), a line break where it had none (between CJK characters, in a cut word).
pub fn joined(lines: &[Line]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push(if lines[i - 1].spaced { ' ' } else { '\n' });
        }
        out.push_str(&l.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_wider_than_a_line_are_cut_and_wide_scripts_count_double() {
        // With no language known, by width: English cuts it `Super-` | `cal-` | `ifrag-` | `ilistic`.
        let by_width = wrap_lines("Supercalifragilistic is long", 8, Hyphenation::NONE);
        assert_eq!(by_width, ["Superca-", "lifragi-", "listic", "is long"]);
        assert_eq!(wrap_lines("你好世界你好世界", 8, Hyphenation::of("zh")), ["你好世界", "你好世界"]);
        assert_eq!(columns("京都の思い出"), 12);
        assert_eq!(columns("Zoe\u{308}"), 3, "a combining mark takes no column");
    }

    #[test]
    fn a_long_compound_fills_the_line_it_starts_on() {
        // 26 columns, a square film: "Die " leaves 22 for the word's first piece.
        // It was `Die Donaudampfschifffahrt-` | `sgesellschaft grüßt Zoë.`, cut by width.
        let lines = wrap_lines("Die Donaudampfschifffahrtsgesellschaft grüßt Zoë.", 26, Hyphenation::of("de"));
        assert_eq!(lines, ["Die Donaudampfschiff-", "fahrtsgesellschaft grüßt", "Zoë."]);
        assert!(lines.iter().all(|l| columns(l) <= 26));
        // Too little room left (three columns) starts the word on a line of its own.
        assert_eq!(
            wrap_lines("Es war Donaudampfschiff", 10, Hyphenation::of("de")),
            ["Es war", "Donau-", "dampf-", "schiff"]
        );
        // So does a first syllable narrower than MIN_PIECE: it was `Ja, Dona-` | `udampfsc-`.
        assert_eq!(wrap_lines("Ja, Donaudampfschiff", 9, Hyphenation::of("de")), ["Ja,", "Donau-", "dampf-", "schiff"]);
    }

    #[test]
    fn long_words_are_cut_between_syllables_in_the_film_s_language() {
        let wrap = |language: &str, text: &str, max: usize| wrap_lines(text, max, Hyphenation::of(language));
        // By width they were `Donaudampfsch-` | `ifffahrt`, `interna-` | `tionali-` |
        // `zation`, `anticonstit-` | `utionnellem-` | `ent`, `electroenc-` | `efalografi-` | `sta`.
        assert_eq!(wrap("de", "Donaudampfschifffahrt", 14), ["Donaudampf-", "schifffahrt"]);
        assert_eq!(wrap("en", "internationalization", 8), ["interna-", "tional-", "ization"]);
        assert_eq!(wrap("fr", "anticonstitutionnellement", 12), ["anticonsti-", "tutionnelle-", "ment"]);
        assert_eq!(wrap("es", "electroencefalografista", 11), ["electroen-", "cefalogra-", "fista"]);
        // The room left on a line takes the last syllable that fits there.
        assert_eq!(wrap("de", "Die Donaudampfschifffahrt", 18), ["Die Donaudampf-", "schifffahrt"]);
        // Where no syllable fits, or the language has no patterns or is not known, the
        // word is cut by width.
        assert_eq!(wrap("de", "Schifffahrt", 6), ["Schif-", "ffahrt"]);
        assert_eq!(wrap("ja", "Donaudampfschifffahrt", 14), ["Donaudampfsch-", "ifffahrt"]);
        assert_eq!(wrap_lines("Donaudampfschifffahrt", 14, Hyphenation::NONE), ["Donaudampfsch-", "ifffahrt"]);
    }

    #[test]
    fn a_word_is_cut_after_its_own_hyphen_first() {
        // UAX #14 keeps a hyphen before a digit inside its word: it was `COVID-2-` | `019`.
        assert_eq!(wrap_lines("COVID-2019", 8, Hyphenation::of("en")), ["COVID-", "2019"]);
        // A line may end after a hyphen between letters anyway, the words on either side of
        // it cut at their syllables.
        let compound = wrap_lines("Donaudampfschifffahrts-Gesellschaft", 14, Hyphenation::of("de"));
        assert_eq!(compound, ["Donaudampf-", "schifffahrts-", "Gesellschaft"]);
    }

    #[test]
    fn text_without_spaces_breaks_between_characters_never_before_closing_marks() {
        let text = "今日はとても良い天気ですね、おばあちゃんと一緒に京都の古いお寺を見に行きました。";
        let lines = wrap_lines(text, 26, Hyphenation::of("ja"));
        assert_eq!(lines.concat(), text, "no space is added");
        assert!(lines.iter().all(|l| columns(l) <= 26), "{lines:?}");
        assert!(lines.iter().all(|l| !l.starts_with(['、', '。'])), "{lines:?}");
        assert_eq!(lines[0], "今日はとても良い天気です", "13 characters: 26 columns");
        assert_eq!(lines[1], "ね、おばあちゃんと一緒に京", "`、` stays after `ね`, 12½ characters");
    }

    #[test]
    fn no_break_spaces_are_kept_and_never_broken_at() {
        let text = "Elle a crié\u{a0}: «\u{202f}Attention, mon petit Zoë\u{202f}!\u{a0}» Mais";
        for max in 14..40 {
            let lines = wrap_lines(text, max, Hyphenation::of("fr"));
            assert_eq!(lines.join(" "), text, "width {max}");
            assert!(lines.iter().all(|l| !l.starts_with([':', '!', '»'])), "width {max}: {lines:?}");
        }
    }

    #[test]
    fn a_french_closing_quote_after_a_space_stays_on_its_line() {
        for max in 10..30 {
            for l in wrap_lines("« Bonjour, Zoë ! » dit-il. Puis « rien » du tout.", max, Hyphenation::of("fr")) {
                assert!(!l.starts_with('»') && !l.ends_with('«'), "width {max}: {l:?}");
            }
        }
        assert!(closes('“', Some(',')) && !closes('“', Some('Y')) && !closes('«', Some(' ')));
        assert_eq!(wrap_lines("« ", 10, Hyphenation::of("fr")), ["«"], "a lone mark is kept");
        assert_eq!(wrap_lines("Er sagte „ ", 20, Hyphenation::of("de")), ["Er sagte „"]);
    }
}

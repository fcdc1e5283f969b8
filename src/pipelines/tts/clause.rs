//! Recovering each clause's terminator from the text espeak-ng consumed. espeak-ng ≥ 1.52
//! hands the terminator out (`espeak_TextToPhonemesWithTerminator`); Debian 12's 1.51 only
//! advances the text pointer. It advances past the clause's punctuation, the spaces after
//! it and a look-ahead of the next clause (usually one character, sometimes a word), so
//! the terminator is the last clause punctuation before that look-ahead.
//!
//! The result follows Piper: `.` `?` `!` end a sentence, `,` `:` `;` are followed by a
//! space, and punctuation espeak-ng flags specially (ellipsis, CJK full-width marks) adds
//! nothing, because Piper compares the masked terminator for equality.

/// How a clause ended, as Piper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terminator {
    /// Text appended to the clause's phonemes (`"."`, `", "`, or nothing).
    pub punctuation: &'static str,
    /// True when the clause ends a sentence.
    pub ends_sentence: bool,
}

impl Terminator {
    /// A clause cut without punctuation (length limit, or the end of the text).
    pub const NONE: Terminator = Terminator { punctuation: "", ends_sentence: false };
}

// espeak-ng's clause bits (speech.h): the low 12 bits are the pause, then intonation,
// the "no space needed after" flag and the clause type.
const INTONATION_FULL_STOP: u32 = 0x0000;
const INTONATION_COMMA: u32 = 0x1000;
const INTONATION_QUESTION: u32 = 0x2000;
const INTONATION_EXCLAMATION: u32 = 0x3000;
const OPTIONAL_SPACE_AFTER: u32 = 0x8000;
const TYPE_CLAUSE: u32 = 0x4_0000;
const TYPE_SENTENCE: u32 = 0x8_0000;
const SPEAK_PUNCTUATION_NAME: u32 = 0x20_0000;

const CLAUSE_PERIOD: u32 = 40 | INTONATION_FULL_STOP | TYPE_SENTENCE;
const CLAUSE_COMMA: u32 = 20 | INTONATION_COMMA | TYPE_CLAUSE;
const CLAUSE_QUESTION: u32 = 40 | INTONATION_QUESTION | TYPE_SENTENCE;
const CLAUSE_EXCLAMATION: u32 = 45 | INTONATION_EXCLAMATION | TYPE_SENTENCE;
const CLAUSE_COLON: u32 = 30 | INTONATION_FULL_STOP | TYPE_CLAUSE;
const CLAUSE_SEMICOLON: u32 = 30 | INTONATION_COMMA | TYPE_CLAUSE;
const CLAUSE_PARAGRAPH: u32 = 70 | INTONATION_FULL_STOP | TYPE_SENTENCE;
const CLAUSE_ELLIPSIS: u32 = CLAUSE_SEMICOLON | SPEAK_PUNCTUATION_NAME | OPTIONAL_SPACE_AFTER;

/// espeak-ng's clause value for a punctuation character (its `punct_attributes` table).
fn clause_value(c: char) -> Option<u32> {
    Some(match c {
        ',' => CLAUSE_COMMA,
        '.' => CLAUSE_PERIOD,
        '?' => CLAUSE_QUESTION,
        '!' => CLAUSE_EXCLAMATION,
        ':' => CLAUSE_COLON,
        ';' => CLAUSE_SEMICOLON,
        '\u{2013}' | '\u{2014}' => CLAUSE_SEMICOLON, // en and em dash
        '\u{2026}' => CLAUSE_ELLIPSIS,
        '\u{037e}' => CLAUSE_QUESTION,                      // Greek question mark
        '\u{0387}' => CLAUSE_SEMICOLON,                     // Greek ano teleia
        '\u{0964}' => CLAUSE_PERIOD | OPTIONAL_SPACE_AFTER, // Devanagari danda
        '\u{060c}' => CLAUSE_COMMA,                         // Arabic comma
        '\u{061b}' => CLAUSE_SEMICOLON,                     // Arabic semicolon
        '\u{061f}' => CLAUSE_QUESTION,                      // Arabic question mark
        '\u{06d4}' => CLAUSE_PERIOD,                        // Arabic full stop
        '\u{3001}' | '\u{ff0c}' => CLAUSE_COMMA | OPTIONAL_SPACE_AFTER,
        '\u{3002}' | '\u{ff0e}' => CLAUSE_PERIOD | OPTIONAL_SPACE_AFTER,
        '\u{ff01}' => CLAUSE_EXCLAMATION | OPTIONAL_SPACE_AFTER,
        '\u{ff1a}' => CLAUSE_COLON | OPTIONAL_SPACE_AFTER,
        '\u{ff1b}' => CLAUSE_SEMICOLON | OPTIONAL_SPACE_AFTER,
        '\u{ff1f}' => CLAUSE_QUESTION | OPTIONAL_SPACE_AFTER,
        _ => return None,
    })
}

/// Piper's reading of an espeak-ng terminator value (`piper/espeakbridge.c`).
pub fn from_clause_value(value: u32) -> Terminator {
    let punctuation = match value & 0x000F_FFFF {
        CLAUSE_PERIOD => ".",
        CLAUSE_QUESTION => "?",
        CLAUSE_EXCLAMATION => "!",
        CLAUSE_COMMA => ", ",
        CLAUSE_COLON => ": ",
        CLAUSE_SEMICOLON => "; ",
        _ => "",
    };
    Terminator { punctuation, ends_sentence: value & TYPE_SENTENCE == TYPE_SENTENCE }
}

/// Quotes and brackets espeak-ng lets stand between punctuation and the next clause.
fn is_bracket(c: char) -> bool {
    matches!(c, '"' | '\'' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '«' | '»' | '‹' | '›' | '`')
        || ('\u{2018}'..='\u{201f}').contains(&c)
}

/// Opening marks (Spanish `¡` `¿`) that start the next clause: like quotes, they stand
/// between a clause's punctuation and the look-ahead.
fn is_opening_mark(c: char) -> bool {
    matches!(c, '¡' | '¿')
}

/// Splits text espeak-ng consumed for one clause into the clause's own text and the
/// look-ahead that belongs to the next clause, and says how the clause ended.
/// `at_end` is true when espeak-ng reported the end of the input (no look-ahead).
pub fn split_consumed(consumed: &str, at_end: bool) -> (usize, Terminator) {
    let chars: Vec<(usize, char)> = consumed.char_indices().collect();
    let mut i = chars.len();
    // The look-ahead: part of a word espeak-ng peeked at before deciding the clause ended.
    if !at_end {
        while i > 0 && chars[i - 1].1.is_alphanumeric() {
            i -= 1;
        }
        if i == 0 {
            // A clause cut without punctuation in the middle of text; nothing to peel off.
            i = chars.len();
        }
    }
    let mut newlines = 0;
    let mut j = i;
    while j > 0 && (chars[j - 1].1.is_whitespace() || is_bracket(chars[j - 1].1) || is_opening_mark(chars[j - 1].1)) {
        if chars[j - 1].1 == '\n' {
            newlines += 1;
        }
        j -= 1;
    }
    let end_of = |k: usize| chars.get(k).map_or(consumed.len(), |c| c.0);
    if j == 0 {
        return (end_of(i), Terminator::NONE);
    }
    let last = chars[j - 1].1;
    // Three dots are read as one ellipsis.
    let value = if last == '.' && j >= 3 && chars[j - 2].1 == '.' && chars[j - 3].1 == '.' {
        Some(CLAUSE_ELLIPSIS)
    } else {
        clause_value(last)
    };
    match value {
        Some(v) => {
            // The clause keeps its punctuation and any closing quotes right after it.
            let mut k = j;
            while k < i && is_bracket(chars[k].1) {
                k += 1;
            }
            (end_of(k), from_clause_value(v))
        }
        None if newlines >= 2 => (end_of(j), from_clause_value(CLAUSE_PARAGRAPH)),
        None => (end_of(i), Terminator::NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(consumed: &str, at_end: bool) -> (&str, &'static str, bool) {
        let (end, t) = split_consumed(consumed, at_end);
        (&consumed[..end], t.punctuation, t.ends_sentence)
    }

    // The consumed strings below are what espeak-ng 1.51 actually advanced over.
    #[test]
    fn period_before_one_character_look_ahead() {
        assert_eq!(term("Test 1. T", false), ("Test 1.", ".", true));
        assert_eq!(term("This is a test.", true), ("This is a test.", ".", true));
    }

    #[test]
    fn comma_colon_semicolon_are_followed_by_a_space_and_do_not_end_sentences() {
        assert_eq!(term("Hello, w", false), ("Hello,", ", ", false));
        assert_eq!(term("ine: t", false).1, ": ");
        assert_eq!(term("hanks; b", false).1, "; ");
    }

    #[test]
    fn look_ahead_can_be_a_whole_word() {
        assert_eq!(term("a,b, c", false), ("a,b,", ", ", false));
    }

    #[test]
    fn closing_quotes_stay_with_their_clause() {
        assert_eq!(term("She said “yes.”", false), ("She said “yes.”", ".", true));
        assert_eq!(term("Done!\"", false), ("Done!\"", "!", true));
        assert_eq!(term("(See above.)", false), ("(See above.)", ".", true));
    }

    #[test]
    fn ellipsis_adds_nothing_and_does_not_end_the_sentence() {
        assert_eq!(term("Wait... w", false), ("Wait...", "", false));
        assert_eq!(term("Wait…w", false), ("Wait…", "", false));
    }

    #[test]
    fn spanish_opening_marks_belong_to_the_next_clause() {
        // espeak-ng 1.52 advanced over "¡Qué bien! ¿D" for "¡Qué bien! ¿De verdad?".
        assert_eq!(term("¡Qué bien! ¿D", false), ("¡Qué bien!", "!", true));
    }

    #[test]
    fn dashes_read_as_semicolons() {
        assert_eq!(term("Hi— t", false).1, "; ");
    }

    #[test]
    fn paragraph_break_ends_a_sentence_without_punctuation() {
        assert_eq!(term("End here\n\nN", false), ("End here", "", true));
    }

    #[test]
    fn text_without_punctuation_has_no_terminator() {
        assert_eq!(term("No punctuation at end", true), ("No punctuation at end", "", false));
    }

    #[test]
    fn full_width_marks_end_sentences_silently() {
        let t = from_clause_value(CLAUSE_PERIOD | OPTIONAL_SPACE_AFTER);
        assert_eq!((t.punctuation, t.ends_sentence), ("", true));
    }
}

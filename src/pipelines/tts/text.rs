//! The text a voice is given: what a reader sees (emoji, "Dr.") is not all what a voice
//! should say. espeak-ng reads a pictograph by its Unicode name ("smiling face with
//! smiling eyes"), and ends a sentence at a title's full stop before a capital ("Dr." |
//! "Smith"), closing it with a falling tone and a pause. Both are prepared away here, and
//! the sentence texts the voice reports are mapped back onto the text as written, so
//! subtitles still show the emoji and the title's full stop.

/// Where a full stop does not end a sentence: one rule for the voice, the render's plan and
/// the subtitles' cues, kept in `media` (the lower of the two folders).
pub use crate::media::titles::stop_continues;

use crate::media::lines::closes;

/// A pictograph, emoji part or emoji modifier: spoken by its name, so never given to a voice.
/// Letters, digits, punctuation, currency, maths and ° © ® ™ stay (a voice says them well).
pub fn is_pictograph(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF   // emoji, pictographs, playing cards, flags (regional indicators), skin tones
        | 0x2600..=0x27BF   // miscellaneous symbols and dingbats (☀ ★ ✨ ❤)
        | 0x2B00..=0x2BFF   // symbols and arrows (⭐ ⬆)
        | 0x25A0..=0x25FF   // geometric shapes (▶ ●)
        | 0x2300..=0x23FF   // technical symbols (⌚ ⏰)
        | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0xFE00..=0xFE0F   // variation selectors
        | 0x200D            // zero-width joiner
        | 0x20E3            // keycap
        | 0xE0000..=0xE007F // emoji tags
    )
}

/// Text prepared for a voice, with the way back to the text as written.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceText {
    /// What the voice reads.
    pub spoken: String,
    /// For each byte offset of `spoken` (and its end), the byte offset in the original.
    origin: Vec<usize>,
    original: String,
}

/// Drops pictographs from `text`; with `titles_run_on`, also the full stop after a title
/// or initial that continues its sentence (see [`stop_continues`]), which the voice says
/// the same without it.
pub fn for_voice(text: &str, titles_run_on: bool) -> VoiceText {
    let mut spoken = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if is_pictograph(c) {
            continue;
        }
        if c == '.' && titles_run_on && chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            let word = text[..at].rsplit(char::is_whitespace).next().unwrap_or_default();
            let next = text[at + 1..].split_whitespace().next().unwrap_or_default();
            if !word.is_empty() && stop_continues(word, next) {
                continue;
            }
        }
        spoken.push(c);
        origin.extend(std::iter::repeat_n(at, c.len_utf8()));
    }
    origin.push(text.len());
    VoiceText { spoken, origin, original: text.to_string() }
}

impl VoiceText {
    /// The sentences the voice found in [`VoiceText::spoken`], as written in the original:
    /// each runs from where the last ended to where the next spoken one starts, so a
    /// pictograph shows with the sentence before it and a title keeps its full stop.
    /// A sentence not found where expected is kept as the voice read it.
    pub fn written(&self, sentences: &[String]) -> Vec<String> {
        let (mut cursor, mut from) = (0usize, 0usize);
        let mut out = Vec::with_capacity(sentences.len());
        for (i, s) in sentences.iter().enumerate() {
            let Some(found) = self.spoken.get(cursor..).and_then(|rest| rest.find(s.as_str())) else {
                out.push(s.clone());
                continue;
            };
            let end = cursor + found + s.len();
            cursor = end;
            // Up to the next word spoken, so what was dropped in between (an emoji) shows
            // with this sentence, and so does the closing punctuation the voice starts its
            // next sentence with ("„Komm her!“" | ", rief Oma."); the last takes everything
            // to the text's end.
            let rest = &self.spoken[end..];
            let next = end + rest.len() - after_closing(rest).len();
            let to = if i + 1 == sentences.len() { self.original.len() } else { self.origin[next] };
            out.push(self.original.get(from..to).map_or_else(|| s.clone(), |w| w.trim().to_string()));
            from = to;
        }
        out
    }
}

/// `rest` from its first word on: past spaces and the marks that close the sentence
/// before it ([`closes`]: `,` `»` after a space).
fn after_closing(rest: &str) -> &str {
    let mut left = rest.trim_start();
    loop {
        let mut chars = left.chars();
        match chars.next() {
            Some(c) if closes(c, chars.clone().next()) => left = chars.as_str().trim_start(),
            _ => return left,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_not_spoken_but_stay_in_the_written_sentences() {
        let t = for_voice("Good night! 😊 See you 👨‍👩‍👧. ❤️", false);
        assert_eq!(t.spoken, "Good night!  See you . ");
        let written = t.written(&["Good night!".into(), "See you .".into()]);
        assert_eq!(written, ["Good night! 😊", "See you 👨‍👩‍👧. ❤️"]);
        assert_eq!(for_voice("25 °C, © 2024, $5 ™", false).spoken, "25 °C, © 2024, $5 ™");
        assert!(for_voice("😊 ✨", false).spoken.trim().is_empty());
    }

    #[test]
    fn a_title_before_a_word_keeps_its_sentence_going() {
        let t = for_voice("In 1987, Dr. Åsa arrived. Mr. and Mrs. Jones met J. Smith Jr. today. Done.", true);
        assert_eq!(t.spoken, "In 1987, Dr Åsa arrived. Mr and Mrs Jones met J Smith Jr today. Done.");
        let written = t.written(&["In 1987, Dr Åsa arrived.".into(), "Mr and Mrs Jones met J Smith Jr today.".into()]);
        assert_eq!(written, ["In 1987, Dr. Åsa arrived.", "Mr. and Mrs. Jones met J. Smith Jr. today. Done."]);
        // Off (Piper's own reading, which its parity tests compare), the stops stay.
        assert_eq!(for_voice("Dr. Åsa arrived.", false).spoken, "Dr. Åsa arrived.");
    }

    #[test]
    fn closing_punctuation_stays_with_the_sentence_it_closes() {
        // Piper ends a sentence at `!`; the voice's next one starts with what closes it.
        let t = for_voice("„Komm her!“, rief Oma. «¡Qué calor!», dijo ella.", true);
        let written =
            t.written(&["„Komm her!“".into(), ", rief Oma.".into(), "«¡Qué calor!»".into(), ", dijo ella.".into()]);
        assert_eq!(written, ["„Komm her!“,", "rief Oma.", "«¡Qué calor!»,", "dijo ella."]);
        let t = for_voice("« Bonjour, Zoë ! » dit-il. « Oui ! »", true);
        let written = t.written(&["« Bonjour, Zoë !".into(), "» dit-il.".into(), "« Oui !".into()]);
        assert_eq!(written, ["« Bonjour, Zoë ! »", "dit-il.", "« Oui ! »"]);
    }

    #[test]
    fn an_abbreviation_before_a_capital_still_ends_its_sentence() {
        assert_eq!(for_voice("It was Smith Jr. Then he left.", true).spoken, "It was Smith Jr. Then he left.");
    }
}

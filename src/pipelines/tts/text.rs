//! The text a voice is given: what a reader sees (emoji, "Dr.", "am 3. Oktober", a line of
//! Japanese) is not all what a voice should say. espeak-ng reads a pictograph by its Unicode
//! name ("smiling face with smiling eyes"), a character of a writing system its language
//! does not use by its name ("japanischer Buchstabe"), and ends a sentence at a title's full stop before a capital ("Dr." |
//! "Smith") or a German ordinal's before a month ("Am 3." | "Oktober"), closing it with a
//! falling tone and a pause. These are prepared away here, and the sentence texts the voice
//! reports are mapped back onto the text as written, so subtitles still show the emoji, the
//! Japanese and the title's full stop.

use crate::text::Language;
use crate::text::scripts::unspoken;
use crate::text::stops::{is_ordinal_stop, stop_continues};

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

/// Drops pictographs from `text`, and words in a writing system `language` does not use
/// (see [`unspoken`]: their sentence mark stays); with `titles_run_on`, also the full stop after a title
/// or initial that continues its sentence in `language` (see [`stop_continues`]), which the
/// voice says the same without it. An ordinal's full stop stays ("am 3. Oktober": without it
/// espeak-ng says "drei", not "dritte"), and the word after it is given in lower case, which
/// espeak-ng reads on into.
pub fn for_voice(text: &str, titles_run_on: bool, language: &Language) -> VoiceText {
    let mut spoken = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    let mut chars = text.char_indices().peekable();
    // Where the word after an ordinal's stop starts: given in lower case.
    let mut lower_at = None;
    let unspoken = unspoken(text, language);
    let mut skip = unspoken.iter().peekable();
    while let Some((at, c)) = chars.next() {
        if is_pictograph(c) {
            continue;
        }
        while skip.next_if(|u| u.range.end <= at).is_some() {}
        if let Some(u) = skip.peek().filter(|u| u.range.contains(&at)) {
            // A word the voice cannot say ends its sentence still, where it did.
            if let Some(mark) = u.ends_sentence.filter(|_| at + c.len_utf8() == u.range.end) {
                spoken.push(mark);
                origin.push(at);
            }
            continue;
        }
        if c == '.' && titles_run_on && chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            let before = &text[..at];
            let next = text[at + 1..].split_whitespace().next().unwrap_or_default();
            if stop_continues(before, next, language) {
                if !is_ordinal_stop(before) {
                    continue;
                }
                let rest = &text[at + 1..];
                lower_at = Some(at + 1 + rest.len() - rest.trim_start().len());
            }
        }
        if lower_at == Some(at) && c.is_uppercase() {
            for lower in c.to_lowercase() {
                spoken.push(lower);
                origin.extend(std::iter::repeat_n(at, lower.len_utf8()));
            }
            continue;
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

    fn english() -> &'static Language {
        Language::of("en")
    }

    #[test]
    fn emoji_are_not_spoken_but_stay_in_the_written_sentences() {
        let t = for_voice("Good night! 😊 See you 👨‍👩‍👧. ❤️", false, english());
        assert_eq!(t.spoken, "Good night!  See you . ");
        let written = t.written(&["Good night!".into(), "See you .".into()]);
        assert_eq!(written, ["Good night! 😊", "See you 👨‍👩‍👧. ❤️"]);
        assert_eq!(for_voice("25 °C, © 2024, $5 ™", false, english()).spoken, "25 °C, © 2024, $5 ™");
        assert!(for_voice("😊 ✨", false, english()).spoken.trim().is_empty());
    }

    #[test]
    fn a_title_before_a_word_keeps_its_sentence_going() {
        let t =
            for_voice("In 1987, Dr. Åsa arrived. Mr. and Mrs. Jones met J. Smith Jr. today. Done.", true, english());
        assert_eq!(t.spoken, "In 1987, Dr Åsa arrived. Mr and Mrs Jones met J Smith Jr today. Done.");
        let written = t.written(&["In 1987, Dr Åsa arrived.".into(), "Mr and Mrs Jones met J Smith Jr today.".into()]);
        assert_eq!(written, ["In 1987, Dr. Åsa arrived.", "Mr. and Mrs. Jones met J. Smith Jr. today. Done."]);
        // Off (Piper's own reading, which its parity tests compare), the stops stay.
        assert_eq!(for_voice("Dr. Åsa arrived.", false, english()).spoken, "Dr. Åsa arrived.");
    }

    #[test]
    fn closing_punctuation_stays_with_the_sentence_it_closes() {
        // Piper ends a sentence at `!`; the voice's next one starts with what closes it.
        let t = for_voice("„Komm her!“, rief Oma. «¡Qué calor!», dijo ella.", true, Language::of("de"));
        let written =
            t.written(&["„Komm her!“".into(), ", rief Oma.".into(), "«¡Qué calor!»".into(), ", dijo ella.".into()]);
        assert_eq!(written, ["„Komm her!“,", "rief Oma.", "«¡Qué calor!»,", "dijo ella."]);
        let t = for_voice("« Bonjour, Zoë ! » dit-il. « Oui ! »", true, Language::of("fr"));
        let written = t.written(&["« Bonjour, Zoë !".into(), "» dit-il.".into(), "« Oui !".into()]);
        assert_eq!(written, ["« Bonjour, Zoë ! »", "dit-il.", "« Oui ! »"]);
    }

    #[test]
    fn an_abbreviation_before_a_capital_still_ends_its_sentence() {
        assert_eq!(
            for_voice("It was Smith Jr. Then he left.", true, english()).spoken,
            "It was Smith Jr. Then he left."
        );
    }

    #[test]
    fn a_line_the_voice_cannot_say_is_shown_with_the_sentence_before_it() {
        let t =
            for_voice("Oma las vor: 今日は天気ですね。 Dann auf Arabisch: مرحبا بكم. Schön!", true, Language::of("de"));
        assert_eq!(t.spoken, "Oma las vor: . Dann auf Arabisch:  . Schön!");
        let written = t.written(&["Oma las vor: .".into(), "Dann auf Arabisch:  .".into(), "Schön!".into()]);
        assert_eq!(written, ["Oma las vor: 今日は天気ですね。", "Dann auf Arabisch: مرحبا بكم.", "Schön!"]);
    }

    #[test]
    fn a_german_ordinal_keeps_its_stop_and_reads_on_into_its_month() {
        let t = for_voice("Am 3. Oktober kam Dr. Müller – z. B. mit Nr. 5. Oma lachte.", true, Language::of("de"));
        assert_eq!(t.spoken, "Am 3. oktober kam Dr Müller – z B mit Nr 5. Oma lachte.");
        let written = t.written(&["Am 3. oktober kam Dr Müller – z B mit Nr 5.".into(), "Oma lachte.".into()]);
        assert_eq!(written, ["Am 3. Oktober kam Dr. Müller – z. B. mit Nr. 5.", "Oma lachte."]);
    }
}

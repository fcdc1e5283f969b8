//! Which words a voice can say: espeak-ng reads a character of a writing system its
//! language does not use by its name ("japanischer Buchstabe", "arabisch Mim"), seconds
//! of noise for a line of Japanese under a German voice. Such words are not given to the
//! voice (they stay in the subtitles, as emoji do); Latin is read by every voice (espeak-ng
//! spells it), and digits, punctuation and marks belong to none.

use std::collections::BTreeMap;
use std::ops::Range;

use unicode_script::{Script, UnicodeScript};

use super::Language;

/// A stretch of text the voice does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unspoken {
    /// Where it is, in bytes of the text.
    pub range: Range<usize>,
    /// The writing system it is in, in words ("Japanese", "Arabic", "Cyrillic").
    pub writing: &'static str,
    /// The sentence mark it ends with, as the voice still hears it (`.` for `。`), so the
    /// sentence it ended still ends there.
    pub ends_sentence: Option<char>,
}

/// Whether `c` is in a writing system `language`'s voice does not read.
fn foreign(c: char, language: &Language) -> bool {
    let Some(own) = language.scripts else { return false };
    let script = c.script();
    !matches!(script, Script::Common | Script::Inherited | Script::Unknown | Script::Latin) && !own.contains(&script)
}

/// A writing system in words: by the language it is most likely to be (kana are Japanese,
/// Hangul Korean, Han alone Chinese), else by its Unicode name.
fn writing_of(chars: impl Iterator<Item = char>) -> &'static str {
    let scripts: Vec<Script> = chars.map(|c| c.script()).collect();
    let has = |s: Script| scripts.contains(&s);
    if has(Script::Hiragana) || has(Script::Katakana) {
        "Japanese"
    } else if has(Script::Hangul) {
        "Korean"
    } else if has(Script::Han) {
        "Chinese"
    } else {
        scripts
            .iter()
            .find(|s| !matches!(s, Script::Common | Script::Inherited | Script::Unknown | Script::Latin))
            .map_or("foreign", |s| s.full_name())
    }
}

/// The sentence mark a voice hears for `c`, the last character of an unspoken word.
fn sentence_mark(c: char) -> Option<char> {
    match c {
        '.' | '。' | '．' | '।' | '۔' => Some('.'),
        '!' | '！' => Some('!'),
        '?' | '？' | '؟' => Some('?'),
        _ => None,
    }
}

/// The stretches of `text` that `language`'s voice does not say: a word with nothing it
/// can say whole (its punctuation too: a lone `。` is no sentence to speak), else each run
/// of foreign characters in it ("Tokyo(東京)" keeps "Tokyo()").
pub fn unspoken(text: &str, language: &Language) -> Vec<Unspoken> {
    let mut out = Vec::new();
    let mut at = 0;
    for word in text.split_inclusive(char::is_whitespace) {
        let start = at;
        at += word.len();
        let word = word.trim_end();
        if !word.chars().any(|c| foreign(c, language)) {
            continue;
        }
        if !word.chars().any(|c| c.is_alphanumeric() && !foreign(c, language)) {
            let ends_sentence = word.chars().next_back().and_then(sentence_mark);
            out.push(Unspoken { range: start..start + word.len(), writing: writing_of(word.chars()), ends_sentence });
            continue;
        }
        let mut run: Option<Range<usize>> = None;
        for (i, c) in word.char_indices().chain(std::iter::once((word.len(), ' '))) {
            match (&mut run, foreign(c, language)) {
                (Some(r), true) => r.end = i + c.len_utf8(),
                (None, true) => run = Some(i..i + c.len_utf8()),
                (Some(_), false) => {
                    if let Some(r) = run.take() {
                        let writing = writing_of(word[r.clone()].chars());
                        out.push(Unspoken { range: start + r.start..start + r.end, writing, ends_sentence: None });
                    }
                }
                (None, false) => {}
            }
        }
    }
    out
}

/// Whether `text` has a word `language`'s voice says: a letter or digit it reads.
pub fn has_words(text: &str, language: &Language) -> bool {
    text.chars().any(|c| c.is_alphanumeric() && !foreign(c, language))
}

/// What to tell a user of the text in `text` that the voice `voice` (of `language`) does
/// not say: a line per writing system, with the first of it (cut to a few words); each
/// caller says what became of it.
pub fn unspoken_notes(text: &str, language: &Language, voice: &str) -> Vec<String> {
    // The first line of each writing: its words together, as far as only spaces part them.
    let mut lines: Vec<(&str, Range<usize>)> = Vec::new();
    for u in unspoken(text, language) {
        match lines.last_mut() {
            Some((writing, line)) if *writing == u.writing && text[line.end..u.range.start].trim().is_empty() => {
                line.end = u.range.end;
            }
            _ => lines.push((u.writing, u.range)),
        }
    }
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for (writing, line) in lines {
        first.entry(writing).or_insert(&text[line]);
    }
    let whose = if language.name.is_empty() {
        format!("the voice {voice}")
    } else {
        format!("the {} voice {voice}", language.name)
    };
    first
        .into_iter()
        .map(|(writing, sample)| {
            let mut shown: String = sample.chars().take(24).collect();
            if shown.len() < sample.len() {
                shown.push('…');
            }
            format!(
                "{writing} text ({shown}) is not spoken by {whose} (espeak-ng would read out its characters' names)"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn german() -> &'static Language {
        Language::of("de")
    }

    #[test]
    fn a_german_voice_does_not_say_japanese_or_arabic_but_latin_is_read_by_all() {
        let text =
            "Oma las vor: 今日はとても良い天気ですね。明日は京都へ行きましょう。 Dann auf Arabisch: مرحبا بكم. Schön!";
        let found = unspoken(text, german());
        let shown: Vec<(&str, &str, Option<char>)> =
            found.iter().map(|u| (&text[u.range.clone()], u.writing, u.ends_sentence)).collect();
        assert_eq!(
            shown,
            [
                ("今日はとても良い天気ですね。明日は京都へ行きましょう。", "Japanese", Some('.')),
                ("مرحبا", "Arabic", None),
                ("بكم.", "Arabic", Some('.'))
            ]
        );
        assert!(
            unspoken("Tokyo(東京) и Ελλάδα", german()).iter().map(|u| u.writing).eq(["Chinese", "Cyrillic", "Greek"])
        );
        assert!(unspoken("Müller fährt nach Łódź, 25 °C – „ok“!", german()).is_empty());
        assert!(unspoken("Привет, мир.", Language::of("ru")).is_empty());
        assert!(unspoken("今日は", Language::of("ja")).is_empty());
        // A voice whose language is not known reads everything, as before.
        assert!(unspoken("今日は", Language::of("xx")).is_empty());
        assert!(!has_words("今日は。 مرحبا", german()));
        assert!(has_words("今日は Oma", german()));
    }

    #[test]
    fn the_note_names_the_writing_the_voice_and_the_text() {
        let notes = unspoken_notes("Oma: 今日はとても良い天気ですね。 مرحبا", german(), "de_DE-thorsten-medium");
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[1].starts_with(
            "Japanese text (今日はとても良い天気ですね。) is not spoken by the German voice de_DE-thorsten-medium"
        ));
        assert!(notes[0].starts_with("Arabic text (مرحبا)"), "{notes:?}");
    }
}

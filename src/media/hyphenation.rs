//! Where a word may be cut between two of its syllables in a film's language, as a
//! typesetter cuts one at a line's end: TeX's Knuth–Liang patterns, which the `hypher`
//! crate embeds for the languages of Piper's voices it has (Cargo.toml names them), each
//! with the crate's least letters before and after a cut (two and two in German, French,
//! Spanish and Italian; two and three in English, Portuguese and Slovak; never fewer than
//! two, as `lines` cuts no word closer to its edge).

use hypher::Lang;

use super::subtitles::iso639_1;

/// How one language's words are cut between syllables, or not at all: a language without
/// patterns (Chinese, Japanese, Arabic) or a voice whose language is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hyphenation(Option<Lang>);

impl Hyphenation {
    /// No syllables known: a word too wide is cut by width alone.
    pub const NONE: Self = Self(None);

    /// The hyphenation of `language` as a voice names it ("de", "en-us", "pt_BR") or as a
    /// film's timeline keeps it (ISO 639-2, "deu"); [`Self::NONE`] for one without patterns.
    pub fn of(language: &str) -> Self {
        let family = language.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        let two = if family.len() == 3 { iso639_1(&family).unwrap_or_default() } else { family.as_str() };
        Self(<[u8; 2]>::try_from(two.as_bytes()).ok().and_then(Lang::from_iso))
    }

    /// Byte offsets in `text` (a word with the marks that stick to it) between two of its
    /// syllables, in order. Each run of letters is a word of its own to the patterns, which
    /// know a word's edges: a mark or a digit parts them ("l'anticonstitutionnellement",
    /// "Muñoz-García").
    pub fn syllable_breaks(self, text: &str) -> Vec<usize> {
        let Some(lang) = self.0 else { return Vec::new() };
        let mut breaks = Vec::new();
        for (start, run) in letter_runs(text) {
            let mut at = start;
            let syllables = hypher::hyphenate(run, lang);
            let last = syllables.len().saturating_sub(1);
            for syllable in syllables.take(last) {
                at += syllable.len();
                breaks.push(at);
            }
        }
        breaks
    }
}

/// The runs of letters in `text`, each with its byte offset.
fn letter_runs(text: &str) -> Vec<(usize, &str)> {
    let mut runs = Vec::new();
    let mut start = None;
    // A space after the end closes the last run.
    for (at, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                runs.push((from, &text[from..at]));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_language_is_found_by_a_voice_s_name_for_it_or_its_track_s() {
        let german = Hyphenation::of("de");
        assert_ne!(german, Hyphenation::NONE);
        assert_eq!(Hyphenation::of("deu"), german);
        assert_eq!(Hyphenation::of("de_DE"), german);
        assert_eq!(Hyphenation::of("en-us"), Hyphenation::of("eng"));
        for none in ["", "zh", "cmn", "ja", "jpn", "xx", "xxx"] {
            assert_eq!(Hyphenation::of(none), Hyphenation::NONE, "{none}");
        }
    }

    #[test]
    fn breaks_fall_between_syllables_of_each_run_of_letters() {
        let cut = |lang: &str, text: &str| {
            let mut pieces = Vec::new();
            let mut from = 0;
            for at in Hyphenation::of(lang).syllable_breaks(text) {
                pieces.push(&text[from..at]);
                from = at;
            }
            pieces.push(&text[from..]);
            pieces.join("|")
        };
        assert_eq!(cut("de", "„Donaudampfschifffahrt,"), "„Do|nau|dampf|schiff|fahrt,");
        assert_eq!(cut("en", "extensive"), "ex|ten|sive");
        assert_eq!(cut("fr", "l'anticonstitutionnellement"), "l'an|ti|cons|ti|tu|tion|nel|le|ment");
        assert_eq!(cut("ja", "Donaudampfschifffahrt"), "Donaudampfschifffahrt");
    }
}

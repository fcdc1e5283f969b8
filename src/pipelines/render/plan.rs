//! The render's plan: a script becomes scenes (one per paragraph), each with its
//! sentences (narration lines and subtitle cues) and a keyframe prompt.

use serde::{Deserialize, Serialize};

use crate::media::lines::{breaks_here, collapse_spaces};
use crate::pipelines::diffusion::emphasis;
use crate::text::Language;
use crate::text::scripts::has_words;
use crate::text::stops::stop_continues;

/// One scene of a film.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Position in the film, from 0.
    pub index: usize,
    /// The scene's narration, sentence by sentence.
    pub sentences: Vec<String>,
    /// Prompt for the scene's keyframe: the style prefix and the scene's text.
    pub prompt: String,
    /// Seed for this scene's keyframe and camera move.
    pub seed: u64,
}

/// A film's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub scenes: Vec<Scene>,
}

/// Words a second a voice is assumed to speak when a narration's length is estimated from
/// its script (Piper voices speak about 2.5 to 3.5): the faster figure, so an honest script
/// is never refused for a length it will not have.
pub const WORDS_PER_SECOND: f64 = 3.0;

impl Plan {
    /// The title its film gets: its first sentence (see [`super::film_title`]), as the
    /// narration says it and the mux writes it.
    pub fn title(&self) -> Option<String> {
        super::film_title(self.scenes.first()?.sentences.first()?)
    }

    /// About how long the narration will be, seconds: the spoken words at
    /// [`WORDS_PER_SECOND`] stretched by `length_scale`, plus `gap_s` between scenes.
    pub fn estimated_seconds(&self, length_scale: f64, gap_s: f64) -> f64 {
        let words: usize = self.scenes.iter().flat_map(|s| &s.sentences).map(|t| spoken_words(t)).sum();
        words as f64 / WORDS_PER_SECOND * length_scale + gap_s * self.scenes.len().saturating_sub(1) as f64
    }
}

/// About how many words `text` takes to say: one a written word, and a number by its
/// digits, two to a word ("1999" is "nineteen ninety-nine", "$3.50" "three fifty"), which
/// is still no more than a voice says, so an honest script is not refused for it.
pub fn spoken_words(text: &str) -> usize {
    text.split_whitespace()
        .map(|token| {
            let digits = token.chars().filter(char::is_ascii_digit).count();
            digits.div_ceil(2).max(1)
        })
        .sum()
}

/// Splits `script` into scenes by blank-line paragraphs; a single line is a one-scene film.
/// Text in `[brackets]` is a screen direction: it becomes the keyframe prompt and is not
/// spoken (and read as a prompt: `(words:1.3)` weighs). Without one, the prompt is the
/// scene's text, its round brackets words (`\(`, no weight). `style` is prepended to every
/// prompt; seeds derive from `seed` and the index. Sentences end where they do in
/// `language`, the voice's (see [`sentences`]).
pub fn plan(script: &str, style: &str, seed: u64, language: &Language) -> Plan {
    let paragraphs = paragraphs(script);
    let scenes = paragraphs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let (direction, spoken) = split_directions(text);
            // Narration is words, not a prompt: its brackets are drawn as words, unweighed.
            let visual = if direction.is_empty() { emphasis::literal(&spoken) } else { direction };
            let prompt = styled_prompt(style, &visual);
            // Punctuation alone ("...", "!?") is nothing to say, nor words in a writing system
            // the voice does not read: such a scene is dropped too.
            let lines = if has_words(&spoken, language) { sentences(&spoken, language) } else { Vec::new() };
            Scene { index, sentences: lines, prompt, seed: seed.wrapping_add(index as u64 * 7919) }
        })
        .filter(|s| !s.sentences.is_empty())
        .collect();
    Plan { scenes }
}

/// The script's paragraphs, each on one line: a line that is empty or only spaces and
/// tabs (as editors leave them) ends one.
fn paragraphs(script: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for line in script.lines() {
        if line.trim().is_empty() {
            out.push(String::new());
        } else if let Some(last) = out.last_mut() {
            last.push(' ');
            last.push_str(line);
        }
    }
    out.iter().map(|p| collapse_spaces(p)).filter(|p| !p.is_empty()).collect()
}

/// A picture's prompt in a style: the style prefix, a comma, the picture's own words (the
/// words alone when the style is blank). Renders' keyframes and a profile's images share it.
pub fn styled_prompt(style: &str, picture: &str) -> String {
    match style.trim() {
        "" => picture.to_string(),
        s => format!("{s}, {picture}"),
    }
}

/// Separates `[directions]` from the spoken text of a paragraph.
fn split_directions(text: &str) -> (String, String) {
    let (mut direction, mut spoken, mut depth) = (String::new(), String::new(), 0usize);
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => {
                depth -= 1;
                direction.push(' ');
            }
            _ if depth > 0 => direction.push(c),
            _ => spoken.push(c),
        }
    }
    let tidy = |s: String| collapse_spaces(&s);
    (tidy(direction), tidy(spoken))
}

/// Splits text into sentences at `.`, `!`, `?` (keeping the mark) followed by a space or the end,
/// leaving decimals ("3.5") and a full stop the voice reads on from in `language` ("Dr.
/// Smith", "J. Smith", "Sr. García", "am 3. Oktober", see [`stop_continues`]) alone.
pub fn sentences(text: &str, language: &Language) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        if !matches!(chars[i], '.' | '!' | '?') {
            continue;
        }
        let at_end = i + 1 == chars.len();
        // Not before a no-break space: `Zoë\u{202f}!\u{a0}»` goes on to its closing quote.
        let next_is_space = chars.get(i + 1).is_some_and(|c| breaks_here(*c));
        if !(at_end || next_is_space) {
            continue;
        }
        if chars[i] == '.' && !at_end {
            let before: String = chars[start..i].iter().collect();
            let next: String =
                chars[i + 1..].iter().skip_while(|c| c.is_whitespace()).take_while(|c| !c.is_whitespace()).collect();
            if stop_continues(&before, &next, language) {
                continue;
            }
        }
        let s: String = chars[start..=i].iter().collect::<String>().trim().to_string();
        if !s.is_empty() {
            out.push(s);
        }
        start = i + 1;
    }
    let rest: String = chars[start.min(chars.len())..].iter().collect::<String>().trim().to_string();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn english() -> &'static Language {
        Language::of("en")
    }

    #[test]
    fn no_break_spaces_are_kept_and_no_sentence_ends_before_one() {
        let p = plan("Elle a crié\u{a0}: «\u{202f}Attention\u{202f}!\u{a0}» Mais\n  non.", "", 1, Language::of("fr"));
        assert_eq!(p.scenes[0].sentences, ["Elle a crié\u{a0}: «\u{202f}Attention\u{202f}!\u{a0}» Mais non."]);
    }

    #[test]
    fn paragraphs_become_scenes_and_sentences_split() {
        let p = plan("A red circle. It rolls!\n\nA blue square?  Yes.\n\n\n", "flat colours", 42, english());
        assert_eq!(p.scenes.len(), 2);
        assert_eq!(p.scenes[0].sentences, vec!["A red circle.", "It rolls!"]);
        assert_eq!(p.scenes[1].sentences, vec!["A blue square?", "Yes."]);
        assert_eq!(p.scenes[0].prompt, "flat colours, A red circle. It rolls!");
        assert_ne!(p.scenes[0].seed, p.scenes[1].seed);
    }

    #[test]
    fn a_blank_line_with_spaces_or_tabs_still_separates_scenes() {
        let p = plan("A red circle.\r\n  \t\r\nA blue square.\n \nA green one.\nStill green.", "", 1, english());
        let spoken: Vec<&[String]> = p.scenes.iter().map(|s| s.sentences.as_slice()).collect();
        assert_eq!(spoken, [&["A red circle."][..], &["A blue square."], &["A green one.", "Still green."]]);
    }

    #[test]
    fn a_single_prompt_makes_a_one_scene_film() {
        let p = plan("a yellow triangle on a green background", "", 1, english());
        assert_eq!(p.scenes.len(), 1);
        assert_eq!(p.scenes[0].sentences, vec!["a yellow triangle on a green background"]);
    }

    #[test]
    fn narration_as_a_prompt_weighs_no_bracketed_words() {
        let p = plan("The price (about 5: 5) is fair.\n\n[a (red:1.3) door] Hello.", "", 3, english());
        assert_eq!(p.scenes[0].prompt, "The price \\(about 5: 5\\) is fair.");
        assert_eq!(p.scenes[0].sentences, vec!["The price (about 5: 5) is fair."]);
        assert_eq!(p.scenes[1].prompt, "a (red:1.3) door", "a direction is a prompt");
    }

    #[test]
    fn bracketed_directions_become_the_prompt_and_are_not_spoken() {
        let p =
            plan("[a red circle on a blue background] Welcome. Enjoy!\n\n[only a picture]\n\n... !?", "", 3, english());
        assert_eq!(p.scenes.len(), 1, "a scene with nothing to say is dropped");
        assert_eq!(p.scenes[0].prompt, "a red circle on a blue background");
        assert_eq!(p.scenes[0].sentences, vec!["Welcome.", "Enjoy!"]);
    }

    #[test]
    fn numbers_count_by_their_digits_when_a_narration_is_estimated() {
        assert_eq!(spoken_words("They met in 1999 and paid $3.50."), 4 + 2 + 1 + 2);
        let p = plan("In 1876, 1999 and 2024.", "", 0, english());
        assert!((p.estimated_seconds(1.0, 0.35) - 8.0 / WORDS_PER_SECOND).abs() < 1e-9);
    }

    #[test]
    fn initials_and_decimals_do_not_end_sentences() {
        assert_eq!(
            sentences("J. Smith paid 3.5 dollars. Then left", english()),
            vec!["J. Smith paid 3.5 dollars.", "Then left"]
        );
    }

    #[test]
    fn a_title_before_a_name_does_not_end_a_sentence() {
        assert_eq!(
            sentences(
                "In 1987, Dr. Åsa Lindqvist arrived. At the Café Zoë, Mr. José Muñoz-García poured. Prof. Lee (vs. Mt. Fuji) said e.g. this. It was Smith Jr. Then he left.",
                english()
            ),
            vec![
                "In 1987, Dr. Åsa Lindqvist arrived.",
                "At the Café Zoë, Mr. José Muñoz-García poured.",
                "Prof. Lee (vs. Mt. Fuji) said e.g. this.",
                "It was Smith Jr.",
                "Then he left."
            ]
        );
    }

    #[test]
    fn german_and_spanish_titles_and_ordinals_do_not_end_sentences() {
        let de = "Am 3. Oktober 1987 kam Dr. Müller nach Ærø – z. B. mit der Fähre Nr. 5. Oma sagte: „Grüß Gott!“ \
                  Am 24. Dezember kam Nr. 7 zurück. Das war 1987. Dann nichts.";
        assert_eq!(
            sentences(de, Language::of("de")),
            [
                "Am 3. Oktober 1987 kam Dr. Müller nach Ærø – z. B. mit der Fähre Nr. 5.",
                "Oma sagte: „Grüß Gott!“ Am 24. Dezember kam Nr. 7 zurück.",
                "Das war 1987.",
                "Dann nichts."
            ]
        );
        let es =
            "El Sr. García y la Sra. López llegaron el 1.º de mayo, p. ej. en tren. Compraron pan, etc. Luego nada.";
        assert_eq!(
            sentences(es, Language::of("es")),
            [
                "El Sr. García y la Sra. López llegaron el 1.º de mayo, p. ej. en tren.",
                "Compraron pan, etc.",
                "Luego nada."
            ]
        );
        // In English "Sr." is "Senior", which may end a sentence.
        assert_eq!(sentences("It was Smith Sr. Then he left.", english()), ["It was Smith Sr.", "Then he left."]);
    }
}

//! Where a full stop ends a sentence and where it does not ("Dr. Åsa", "J. Smith"): the
//! voice, a render's plan and the subtitles' cues all cut sentences by this one rule.

/// Titles that stand before a name or word: a full stop after one followed by a word never
/// ends a sentence. Compared without case.
const BEFORE_A_WORD: &[&str] =
    &["dr", "mr", "mrs", "ms", "mx", "st", "prof", "mt", "rev", "fr", "gen", "capt", "lt", "sgt", "vs", "e.g", "i.e"];
/// Abbreviations that end a phrase ("Smith Jr.", "and so on, etc."): their full stop ends a
/// sentence only before a capital, as any other.
const ABBREVIATIONS: &[&str] = &["jr", "sr", "etc", "approx", "cf", "no", "vol", "ca"];

/// True when the full stop after `word` is not a sentence's end because `next` (the word
/// after it) continues the sentence: a title before a word ("Dr. Åsa"), an initial
/// ("J. Smith"), or an abbreviation before a lower-case word ("Jr. said").
pub fn stop_continues(word: &str, next: &str) -> bool {
    let word = word.trim_start_matches(|c: char| !c.is_alphanumeric());
    let Some(first) = next.trim_start_matches(|c: char| !c.is_alphanumeric()).chars().next() else { return false };
    let lower = word.to_lowercase();
    let initial = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
    initial
        || BEFORE_A_WORD.contains(&lower.as_str())
        || (ABBREVIATIONS.contains(&lower.as_str()) && !first.is_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abbreviation_before_a_capital_still_ends_its_sentence() {
        assert!(stop_continues("Dr", "Smith"));
        assert!(stop_continues("(vs", "Kramer"));
        assert!(stop_continues("Jr", "said"));
        assert!(!stop_continues("Jr", "Then"));
        assert!(!stop_continues("arrived", "Then"));
        assert!(!stop_continues("Dr", ""));
    }
}

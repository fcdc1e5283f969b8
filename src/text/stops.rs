//! Where a full stop ends a sentence and where it does not ("Dr. Åsa", "J. Smith", "Sr.
//! García", "z. B.", "am 3. Oktober"), in the script's language: the voice, a render's plan,
//! its title and the subtitles' cues all cut sentences by this one rule.

use super::Language;

/// True when the full stop after `before` (the text up to it; its last word is what
/// counts, and the one before that for a spaced abbreviation) is not a sentence's end in
/// `language` because `next` (the word after it) continues the sentence: a title or
/// abbreviation the language reads on from ("Dr. Åsa", "Sr. García", "z. B."), an initial
/// ("J. Smith"), a lower-case word or a number after it ("etc. and", "Nr. 5"), or in
/// German a month after a number ("3. Oktober", an ordinal).
pub fn stop_continues(before: &str, next: &str, language: &Language) -> bool {
    let mut words = before.split_whitespace().rev();
    let word = words.next().unwrap_or_default().trim_start_matches(|c: char| !c.is_alphanumeric());
    let next = next.trim_start_matches(|c: char| !c.is_alphanumeric());
    let Some(first) = next.chars().next() else { return false };
    if word.is_empty() {
        return false;
    }
    let titles = language.titles();
    let lower = word.to_lowercase();
    // "z. B.": the stop inside a spaced abbreviation ("z" before "B."), and after its last
    // part ("a" in "u. a.", whose first part is the word before).
    let next_part = next.split_once('.').map(|(part, _)| part).unwrap_or(next);
    let joined = format!("{lower}.{}", next_part.to_lowercase());
    let earlier = words.next().and_then(|w| w.strip_suffix('.')).map(|w| format!("{}.{lower}", w.to_lowercase()));
    let initial = word.chars().count() == 1 && word.chars().all(char::is_uppercase);
    let ordinal = word.chars().all(|c| c.is_ascii_digit())
        && language.months.contains(&next.trim_end_matches(|c: char| !c.is_alphanumeric()).to_lowercase().as_str());
    initial
        || titles.contains(&lower.as_str())
        || titles.contains(&joined.as_str())
        || earlier.is_some_and(|e| titles.contains(&e.as_str()))
        // A sentence starts with a capital: a lower-case word or a number after a full
        // stop goes on with the one before it ("etc. and so on", "Nr. 5", "am 3. geboren").
        || first.is_lowercase()
        || first.is_numeric()
        || ordinal
}

/// [`stop_continues`] in any language reelbox knows titles of: where a cue's turn may not
/// end, whatever the voice (not cutting after "Sr." in English too costs nothing there).
pub fn stop_continues_in_any(before: &str, next: &str) -> bool {
    Language::with_own_titles().any(|l| stop_continues(before, next, l))
}

/// True when the full stop after `before` makes an ordinal number: the voice keeps it
/// (espeak-ng reads "3." before a lower-case word as "dritte"), where it drops a title's.
pub fn is_ordinal_stop(before: &str) -> bool {
    before.split_whitespace().next_back().is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(language: &str, before: &str, next: &str) -> bool {
        !stop_continues(before, next, Language::of(language))
    }

    #[test]
    fn an_abbreviation_before_a_capital_still_ends_its_sentence() {
        assert!(!splits("en", "Dr", "Smith"));
        assert!(!splits("en", "(vs", "Kramer"));
        assert!(!splits("en", "Jr", "said"));
        assert!(splits("en", "Jr", "Then"));
        assert!(splits("en", "It was Smith Sr", "Then"));
        assert!(splits("en", "arrived", "Then"));
        assert!(splits("en", "Dr", ""));
        assert!(splits("es", "leche, etc", "Luego"));
        assert!(!splits("es", "leche, etc", "luego"));
    }

    #[test]
    fn each_language_reads_on_through_its_own_titles() {
        assert!(!splits("es", "El Sr", "García"));
        assert!(!splits("es", "la Sra", "López"));
        assert!(!splits("es", "Dña", "Ana"));
        assert!(!splits("es", "la Srta", "Gil"));
        assert!(!splits("es", "p", "ej."));
        assert!(!splits("fr", "M", "Dupont"));
        assert!(!splits("fr", "Mme", "Lefèvre"));
        assert!(!splits("fr", "p", "ex."));
        assert!(!splits("it", "il Sig", "Rossi"));
        assert!(!splits("pt", "o Sr", "Silva"));
        assert!(!splits("nl", "Mevr", "De Vries"));
        assert!(!splits("de", "Dr", "Müller"));
        assert!(!splits("de", "mit der Fähre Nr", "5."));
        assert!(!splits("de", "Hans bzw", "Grete"));
        assert!(!splits("de", "kam er u", "a."));
        // "Gen." is English's "General"; in German it is a word that may end a sentence.
        assert!(splits("de", "Das ist ein Gen", "Dann"));
    }

    #[test]
    fn a_spaced_abbreviation_reads_on_through_both_its_stops() {
        assert!(!splits("de", "Ærø – z", "B."));
        assert!(!splits("de", "z. B", "mit"));
        assert!(!splits("de", "Er kam u. a", "Grete"));
        assert!(!splits("en", "said e. g", "This"));
    }

    #[test]
    fn a_german_number_before_a_month_or_a_lower_case_word_is_an_ordinal() {
        assert!(!splits("de", "Am 3", "Oktober"));
        assert!(!splits("de", "am 24", "Dezember…"));
        assert!(!splits("de", "am 1", "März,"));
        assert!(!splits("de", "am 3", "geboren."));
        assert!(splits("de", "Fähre Nr. 5", "Oma"));
        assert!(splits("en", "in 1987", "October"));
        assert!(is_ordinal_stop("Am 3"));
        assert!(!is_ordinal_stop("Dr"));
    }

    #[test]
    fn a_turn_keeps_a_title_of_any_language_with_its_name() {
        assert!(stop_continues_in_any("Sr", "García"));
        assert!(stop_continues_in_any("3", "Oktober"));
        assert!(!stop_continues_in_any("arrived", "Then"));
    }
}

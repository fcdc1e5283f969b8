//! Phonemes → ids exactly as Piper does it: clause phonemes plus their punctuation, NFD,
//! split into codepoints, known vowel clusters merged, then `^ _ p1 _ p2 _ … pn _ $`.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

use super::clause::Terminator;

/// Beginning of sentence.
pub const BOS: &str = "^";
/// Padding between phonemes.
pub const PAD: &str = "_";
/// End of sentence.
pub const EOS: &str = "$";

/// One sentence's phonemes with the source text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SentencePhonemes {
    pub text: String,
    pub phonemes: Vec<String>,
}

/// A clause's phonemes and how it ended (from espeak-ng).
#[derive(Debug, Clone, PartialEq)]
pub struct ClausePhonemes<'a> {
    pub phonemes: &'a str,
    pub terminator: Terminator,
    pub text: &'a str,
}

/// Groups clauses into sentences the way Piper's `EspeakPhonemizer.phonemize` does.
pub fn sentences(clauses: &[ClausePhonemes], vowel_clusters: &[Vec<String>]) -> Vec<SentencePhonemes> {
    let mut out = Vec::new();
    let mut phonemes: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut finish = |phonemes: &mut Vec<String>, text: &mut String| {
        let merged = merge_vowel_clusters(std::mem::take(phonemes), vowel_clusters);
        out.push(SentencePhonemes { text: std::mem::take(text).trim().to_string(), phonemes: merged });
    };
    for c in clauses {
        let with_punct = format!("{}{}", c.phonemes, c.terminator.punctuation);
        phonemes.extend(with_punct.nfd().map(String::from));
        text.push_str(c.text);
        if c.terminator.ends_sentence {
            finish(&mut phonemes, &mut text);
        }
    }
    if !phonemes.is_empty() {
        finish(&mut phonemes, &mut text);
    }
    // Piper skips sentences that produced no phonemes (e.g. a lone closing quote).
    out.retain(|s| !s.phonemes.is_empty());
    out
}

/// Phonemes of a `phoneme_type = "text"` voice: the text's own NFD codepoints.
pub fn text_phonemes(text: &str) -> Vec<String> {
    text.nfd().map(String::from).collect()
}

/// Merges adjacent codepoints that form a known cluster, longest first (Piper's
/// `_merge_known_vowel_clusters`).
pub fn merge_vowel_clusters(phones: Vec<String>, clusters: &[Vec<String>]) -> Vec<String> {
    if clusters.is_empty() {
        return phones;
    }
    let max_len = clusters.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(phones.len());
    let mut i = 0;
    while i < phones.len() {
        let longest =
            (2..=max_len.min(phones.len() - i)).rev().find(|&n| clusters.iter().any(|c| c[..] == phones[i..i + n]));
        match longest {
            Some(n) => {
                out.push(phones[i..i + n].concat());
                i += n;
            }
            None => {
                out.push(phones[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// Applies a voice's `phoneme_map` (each phoneme → replacement phonemes).
pub fn apply_phoneme_map(phones: Vec<String>, map: &HashMap<String, Vec<String>>) -> Vec<String> {
    if map.is_empty() {
        return phones;
    }
    phones.into_iter().flat_map(|p| map.get(&p).cloned().unwrap_or_else(|| vec![p])).collect()
}

/// Sentence phonemes → ids: `^ _ p1 _ … pn _ $`. Phonemes missing from the map are
/// skipped and returned so the caller can warn, as Piper does.
pub fn to_ids(phonemes: &[String], id_map: &HashMap<String, Vec<i64>>) -> (Vec<i64>, Vec<String>) {
    let get = |key: &str, default: i64| id_map.get(key).cloned().unwrap_or_else(|| vec![default]);
    let (bos, pad, eos) = (get(BOS, 1), get(PAD, 0), get(EOS, 2));
    let mut ids = Vec::with_capacity(phonemes.len() * 2 + 3);
    let mut missing = Vec::new();
    ids.extend_from_slice(&bos);
    ids.extend_from_slice(&pad);
    for p in phonemes {
        match id_map.get(p) {
            Some(v) => {
                ids.extend_from_slice(v);
                ids.extend_from_slice(&pad);
            }
            None => missing.push(p.clone()),
        }
    }
    ids.extend_from_slice(&eos);
    (ids, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joe_like_map() -> HashMap<String, Vec<i64>> {
        // A subset of en_US-joe-medium's map, enough for the golden sentence.
        [
            ("_", 0),
            ("^", 1),
            ("$", 2),
            (" ", 3),
            (".", 10),
            ("ð", 41),
            ("ɪ", 74),
            ("s", 31),
            ("z", 38),
            ("ɐ", 50),
            ("t", 32),
            ("ˈ", 120),
            ("ɛ", 61),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v]))
        .collect()
    }

    #[test]
    fn this_is_a_test_gives_pipers_ids() {
        let clause = ClausePhonemes {
            phonemes: "ðɪs ɪz ɐ tˈɛst",
            terminator: Terminator { punctuation: ".", ends_sentence: true },
            text: "This is a test.",
        };
        let s = sentences(&[clause], &[]);
        assert_eq!(s.len(), 1);
        let (ids, missing) = to_ids(&s[0].phonemes, &joe_like_map());
        assert!(missing.is_empty());
        assert_eq!(
            ids,
            vec![
                1, 0, 41, 0, 74, 0, 31, 0, 3, 0, 74, 0, 38, 0, 3, 0, 50, 0, 3, 0, 32, 0, 120, 0, 61, 0, 31, 0, 32, 0,
                10, 0, 2
            ]
        );
    }

    #[test]
    fn unknown_phonemes_are_skipped_and_reported() {
        let (ids, missing) = to_ids(&["t".to_string(), "ʘ".to_string()], &joe_like_map());
        assert_eq!(ids, vec![1, 0, 32, 0, 2]);
        assert_eq!(missing, vec!["ʘ".to_string()]);
    }

    #[test]
    fn commas_keep_a_space_and_sentences_split_on_periods() {
        let clauses = [
            ClausePhonemes {
                phonemes: "a",
                terminator: Terminator { punctuation: ", ", ends_sentence: false },
                text: "A, ",
            },
            ClausePhonemes {
                phonemes: "b",
                terminator: Terminator { punctuation: ".", ends_sentence: true },
                text: "b.",
            },
            ClausePhonemes { phonemes: "c", terminator: Terminator::NONE, text: " c" },
        ];
        let s = sentences(&clauses, &[]);
        assert_eq!(s[0].phonemes.concat(), "a, b.");
        assert_eq!(s[0].text, "A, b.");
        assert_eq!(s[1].phonemes.concat(), "c");
        assert_eq!(s[1].text, "c");
    }

    #[test]
    fn accents_are_decomposed_into_separate_codepoints() {
        assert_eq!(text_phonemes("ç"), vec!["c".to_string(), "\u{327}".to_string()]);
    }

    #[test]
    fn multi_codepoint_keys_come_from_vowel_clusters() {
        let phones: Vec<String> = ["a", "ɪ", "t", "a"].iter().map(|s| s.to_string()).collect();
        let clusters = vec![vec!["a".to_string(), "ɪ".to_string()]];
        let merged = merge_vowel_clusters(phones, &clusters);
        assert_eq!(merged, vec!["aɪ", "t", "a"]);
        let map: HashMap<String, Vec<i64>> =
            [("aɪ", 161), ("t", 32), ("a", 14)].into_iter().map(|(k, v)| (k.to_string(), vec![v])).collect();
        assert_eq!(to_ids(&merged, &map).0, vec![1, 0, 161, 0, 32, 0, 14, 0, 2]);
    }

    #[test]
    fn phoneme_map_replaces_before_ids() {
        let map: HashMap<String, Vec<String>> = [("r".to_string(), vec!["ɹ".to_string()])].into_iter().collect();
        assert_eq!(apply_phoneme_map(vec!["r".into(), "a".into()], &map), vec!["ɹ", "a"]);
    }
}

//! The words of a script or a speech as reelbox reads them: which language's rules a voice
//! reads them by (`language.rs`), where a full stop ends a sentence in it (`stops.rs`), and
//! which words are in a writing system the voice does not read (`scripts.rs`); and text as
//! it enters reelbox ([`clean`]).
//! A leaf: every folder may use it.

pub mod language;
pub mod scripts;
pub mod stops;

pub use language::Language;

/// Text as it enters reelbox (a script or a speech, from a file, standard input or the API):
/// without the byte-order mark Windows Notepad starts a UTF-8 file with, which would
/// otherwise start the film's first cue, its title and its plan.
pub fn clean(text: &str) -> String {
    text.strip_prefix('\u{feff}').unwrap_or(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_text() {
        assert_eq!(clean("\u{feff}Oma erzählt.\r\n"), "Oma erzählt.\r\n");
        assert_eq!(clean("Oma \u{feff}"), "Oma \u{feff}");
    }
}

//! The words of a script or a speech as reelbox reads them: which language's rules a voice
//! reads them by (`language.rs`), where a full stop ends a sentence in it (`stops.rs`), and
//! which words are in a writing system the voice does not read (`scripts.rs`); and text as
//! it enters reelbox ([`clean`], [`decode`]).
//! A leaf: every folder may use it.

pub mod language;
pub mod markdown;
pub mod scripts;
pub mod stops;

pub use language::Language;

use unicode_normalization::UnicodeNormalization;

/// Text as it enters reelbox (a script or a speech, from a file, standard input or the API;
/// a profile's or a key's name): without the byte-order mark Windows Notepad starts a UTF-8
/// file with, which would otherwise start the film's first cue, its title and its plan, and
/// composed (NFC): text pasted from a Mac writes "ü" as "u" and a combining mark, which
/// espeak-ng reads as two sounds and a name compares unequal to the same name typed.
pub fn clean(text: &str) -> String {
    text.strip_prefix('\u{feff}').unwrap_or(text).nfc().collect()
}

/// Whether two names are the same as a reader sees them ("Müller" composed or not): how
/// names kept before they were composed ([`clean`]) are still found.
pub fn same(a: &str, b: &str) -> bool {
    a == b || a.nfc().eq(b.nfc())
}

/// Bytes that are not UTF-8 text: where the first byte that is not is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it is not UTF-8 text: byte {column} of line {line} is {byte:#04x}")]
pub struct NotUtf8 {
    /// The line it is on, from 1.
    pub line: usize,
    /// Its byte in that line, from 1 (an editor's column, for text before it in ASCII).
    pub column: usize,
    /// The byte itself (0xe4 is Latin-1's "ä").
    pub byte: u8,
}

/// A file's or standard input's bytes as text (see [`clean`]), or where they are not UTF-8.
pub fn decode(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(clean(&text)),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line_start = bytes[..at].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
            Err(NotUtf8 { line, column: at - line_start + 1, byte: bytes.get(at).copied().unwrap_or_default() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_text() {
        assert_eq!(clean("\u{feff}Oma erzählt.\r\n"), "Oma erzählt.\r\n");
        assert_eq!(clean("Oma \u{feff}"), "Oma \u{feff}");
    }

    #[test]
    fn text_pasted_from_a_mac_is_composed() {
        let nfd = "Mu\u{308}ller fa\u{308}hrt";
        assert_eq!(clean(nfd), "Müller fährt");
        assert!(same(nfd, "Müller fährt") && !same("Muller", "Müller"));
    }

    #[test]
    fn latin_1_is_refused_naming_the_line_and_byte() {
        let latin1 = b"Oma erz\xe4hlt.\nVon fr\xfcher.".to_vec();
        assert_eq!(decode(latin1), Err(NotUtf8 { line: 1, column: 8, byte: 0xe4 }));
        assert_eq!(decode(b"Ok.\r\nVon fr\xfcher.".to_vec()), Err(NotUtf8 { line: 2, column: 7, byte: 0xfc }));
        assert_eq!(decode("\u{feff}Oma.".as_bytes().to_vec()).as_deref(), Ok("Oma."));
    }
}

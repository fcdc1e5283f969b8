//! The words of a script or a speech as reelbox reads them: which language's rules a voice
//! reads them by (`language.rs`), where a full stop ends a sentence in it (`stops.rs`), and
//! which words are in a writing system the voice does not read (`scripts.rs`).
//! A leaf: every folder may use it.

pub mod language;
pub mod scripts;
pub mod stops;

pub use language::Language;

//! One line for an error and its causes, as the CLI prints it and as fetch failures are
//! recorded. Most messages in this crate already end with their source's text
//! (`"config file {path}: {source}"`, so `Display` alone is complete); the causes are
//! still chained for callers that walk them, and a plain join would say each one twice.

use std::error::Error;

/// `error: cause: cause…`, leaving out each cause whose text the line already holds.
pub fn chain_text(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// `word` as one shell word, quoted only where a shell would split or expand it (`shlex`):
/// the words of every command a message tells the user to run (a profile's name, a path).
pub fn shell_word(word: &str) -> String {
    shlex::try_quote(word).map_or_else(|_| word.to_string(), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("not found")]
    struct Missing;

    #[derive(Debug, thiserror::Error)]
    #[error("loading model x: {0}")]
    struct Says(#[source] Missing);

    #[derive(Debug, thiserror::Error)]
    #[error("the import failed")]
    struct Quiet(#[source] Says);

    #[test]
    fn each_cause_is_said_once() {
        assert_eq!(chain_text(&Says(Missing)), "loading model x: not found");
        assert_eq!(chain_text(&Quiet(Says(Missing))), "the import failed: loading model x: not found");
    }
}

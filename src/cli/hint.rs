//! The `reelbox …` commands a message tells the user to run next (`jobs retry ID -o FILE`,
//! `jobs watch ID`, ...), all built here: copied into the same shell, each reaches the daemon
//! this command reached, so a user who typed `--url http://box:8470` is not sent to another.

use std::path::Path;

use clap::ArgMatches;
use clap::parser::ValueSource;

use reelbox::error_text::shell_word;

use super::Global;

/// The global options a printed command repeats: `--url` when the daemon's URL was typed on
/// the command line (`--url`, or `--config` naming another bind) and a command without them
/// would reach another daemon (`REELBOX_URL` and the config are in the shell it is pasted
/// into anyway), and `--cacert` when typed. Never the key: a printed line is no place for it.
#[derive(Debug, Clone, Default)]
pub struct Hint {
    /// ` --url URL --cacert PATH`, each only when needed.
    daemon: String,
    /// ` --config PATH` when typed: what `reelbox serve` and a command after it need to find
    /// this box's data dir and address again.
    config: String,
}

impl Hint {
    /// The options `g` (parsed from `matches`) makes printed commands repeat.
    pub fn of(g: &Global, matches: &ArgMatches) -> Self {
        let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        let mut daemon = String::new();
        if (typed("url") || typed("config")) && bare_url().is_none_or(|bare| !same_url(&bare, &g.url)) {
            daemon.push_str(&format!(" --url {}", shell_word(&g.url)));
        }
        if let Some(ca) = g.cacert.as_deref().filter(|_| typed("cacert")) {
            daemon.push_str(&format!(" --cacert {}", shell_path(ca)));
        }
        let config = match g.config.as_deref().filter(|_| typed("config")) {
            Some(path) => format!(" --config {}", shell_path(path)),
            None => String::new(),
        };
        Self { daemon, config }
    }

    /// `reelbox ARGS`, talking to the daemon this command talked to.
    pub fn command(&self, args: &str) -> String {
        format!("{} {args}", self.reelbox())
    }

    /// How a command to the daemon this command talked to starts: `reelbox` and the global
    /// options it needs (for a message that builds the rest itself, as the library's do).
    pub fn reelbox(&self) -> String {
        format!("reelbox{}", self.daemon)
    }

    /// `reelbox ARGS` on this box's own config: `reelbox serve` and a command to the daemon
    /// it starts, for a job left in the data dir by a daemon this command ran itself (whose
    /// address is gone, so no `--url` is meant).
    pub fn on_this_box(&self, args: &str) -> String {
        format!("reelbox{} {args}", self.config)
    }
}

/// The URL a client command with no global option typed reaches: `REELBOX_URL`, else the
/// config's (`REELBOX_CONFIG`'s file), else the default, found by the same parse and the same
/// rule as the command itself. `None` when that cannot be told (the config is unreadable).
fn bare_url() -> Option<String> {
    let matches = <super::Cli as clap::CommandFactory>::command().try_get_matches_from(["reelbox", "version"]).ok()?;
    let mut cli = <super::Cli as clap::FromArgMatches>::from_arg_matches(&matches).ok()?;
    super::settle_url(&mut cli.global, &matches);
    cli.global.config_error.is_none().then_some(cli.global.url)
}

/// Whether two daemon URLs name the same place (`http://box:8470/` is `http://box:8470`).
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A path as one shell word.
fn shell_path(path: &Path) -> String {
    shell_word(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_the_shell_would_split_is_quoted() {
        assert_eq!(shell_word("http://box.lan:8470"), "http://box.lan:8470");
        // A bracket is a glob (zsh refuses the command when nothing matches), a space splits.
        for word in ["http://[::1]:8470", "certs/my ca.pem", "it's"] {
            let quoted = shell_word(word);
            assert_ne!(quoted, word);
            assert_eq!(shlex::split(&quoted), Some(vec![word.to_string()]), "{quoted}");
        }
        assert!(same_url("http://box:8470/", "http://box:8470"));
    }
}

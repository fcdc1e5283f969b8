//! The flags a user typed, and a refusal said in them: the daemon (and, with `--local`, the
//! same validation in this process) names the native field it refused (`refine.steps: must
//! be …`), which a user of `reelbox image` never typed; where a command has a long flag of
//! that name (`.` and `_` read as `-`: `--refine-steps`) and it was typed, the refusal names
//! the flag instead. Read from the command's own clap definition, so a flag added later is
//! covered without a list here.

use std::collections::BTreeSet;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command};
use reelbox::client::ClientError;
use reelbox::kinds::image::LocalImageError;
use reelbox::pipelines::diffusion::DiffusionError;

/// The ids of the arguments typed on the command line of the subcommand that runs.
#[derive(Debug, Clone, Default)]
pub struct TypedFlags {
    ids: BTreeSet<String>,
}

impl TypedFlags {
    /// Those of the innermost subcommand of `matches` (the one that runs).
    pub fn of(matches: &ArgMatches) -> Self {
        let mut m = matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        let ids = m
            .ids()
            .map(|id| id.as_str())
            .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
            .map(str::to_string)
            .collect();
        Self { ids }
    }

    /// `e` said with the flag of `A` (the command's arguments) that the refused field is, when
    /// `e` is the daemon's refusal `FIELD: rest` and that flag was typed (`--refine-steps:
    /// rest`); otherwise `e` as it is. Still a [`ClientError::Status`], so callers tell it apart
    /// as before.
    pub fn worded<A: Args>(&self, e: anyhow::Error) -> anyhow::Error {
        if let Some(ClientError::Status { status, message }) = e.downcast_ref::<ClientError>() {
            return match self.in_flags::<A>(message) {
                Some(message) => anyhow::Error::new(ClientError::Status { status: *status, message }),
                None => e,
            };
        }
        // The same refusal made in this process (`--local`), by the same validation or model.
        let refused = matches!(
            e.downcast_ref::<LocalImageError>(),
            Some(LocalImageError::Param(_) | LocalImageError::Diffusion(DiffusionError::Request { .. }))
        );
        match self.in_flags::<A>(&e.to_string()).filter(|_| refused) {
            Some(message) => anyhow::anyhow!(message),
            None => e,
        }
    }

    /// A refusal `FIELD: rest` said with the flag `FIELD` is, when it was typed.
    fn in_flags<A: Args>(&self, message: &str) -> Option<String> {
        let (field, rest) = message.split_once(": ")?;
        self.flag_of::<A>(field).map(|flag| format!("--{flag}: {rest}"))
    }

    /// The long flag of `A` named as `field` is, when it was typed.
    fn flag_of<A: Args>(&self, field: &str) -> Option<String> {
        // A field is a word of letters, digits, `_` and `.` (not a sentence that has a colon).
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return None;
        }
        let long = field.replace(['.', '_'], "-");
        let command = A::augment_args(Command::new("reelbox"));
        let arg = command.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?;
        self.ids.contains(arg.get_id().as_str()).then_some(long)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Cmd {
        #[arg(long)]
        steps: Option<u32>,
        #[arg(long)]
        refine_steps: Option<u32>,
        #[arg(long, default_value = "euler")]
        scheduler: String,
    }

    fn typed(args: &[&str]) -> TypedFlags {
        let matches = <Cmd as clap::CommandFactory>::command().get_matches_from(args);
        Cmd::from_arg_matches(&matches).expect("parses");
        TypedFlags::of(&matches)
    }

    fn said(t: &TypedFlags, message: &str) -> String {
        let status = reqwest::StatusCode::BAD_REQUEST;
        let e = anyhow::Error::new(ClientError::Status { status, message: message.to_string() });
        match t.worded::<Cmd>(e).downcast::<ClientError>() {
            Ok(ClientError::Status { message, .. }) => message,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn a_typed_flag_names_the_refused_field_and_nothing_else_does() {
        let t = typed(&["x", "--refine-steps", "900", "--steps", "4"]);
        assert_eq!(said(&t, "refine.steps: must be 1 to 150"), "--refine-steps: must be 1 to 150");
        assert_eq!(said(&t, "steps: too many"), "--steps: too many");
        // Not typed (its default), no such flag, or no field: the daemon's words.
        assert_eq!(said(&t, "scheduler: no such"), "scheduler: no such");
        assert_eq!(said(&t, "refine.model: no such"), "refine.model: no such");
        assert_eq!(said(&t, "the queue is full: try later"), "the queue is full: try later");
        let untyped = typed(&["x"]);
        assert_eq!(said(&untyped, "steps: too many"), "steps: too many");
    }
}

//! The `reelbox` binary: parse arguments, dispatch, report errors. Nothing else.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

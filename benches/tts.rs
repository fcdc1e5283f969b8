//! `cargo bench --bench tts -- --python /path/to/python [--threads N] [--runs N] [--cold-runs N]
//! [--models-dir DIR] [--onnxruntime LIB] [--spin]`: reelbox TTS against Python piper-tts (see
//! `reelbox::pipelines::tts::bench`). The Python needs `piper-tts`; the voice must be
//! installed (`reelbox pull en_US-joe-medium`, or the test provisioning's models dir).
//!
//! Invoked as `tts say TEXT -o FILE --local --voice V` it is the fresh process whose wall
//! time is reelbox's cold start.

use std::path::PathBuf;
use std::process::ExitCode;

use reelbox::config::Config;
use reelbox::kinds::speech::{SayRequest, say_local};
use reelbox::pipelines::tts::bench::{TtsBenchOptions, bench_tts, render};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn cold_say(args: &[String]) -> ExitCode {
    let (Some(text), Some(out)) = (args.get(2), arg(args, "-o")) else {
        eprintln!("usage: tts say TEXT -o FILE --local [--voice V]");
        return ExitCode::FAILURE;
    };
    let config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let req = SayRequest { text: text.clone(), voice: arg(args, "--voice"), ..SayRequest::default() };
    match say_local(&config, &req, &PathBuf::from(out)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("say") {
        return cold_say(&args);
    }
    let python = arg(&args, "--python")
        .or_else(|| std::env::var("REELBOX_BENCH_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let threads = arg(&args, "--threads")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = arg(&args, "--models-dir") {
        config.models_dir = Some(PathBuf::from(dir));
    }
    if args.iter().any(|a| a == "--spin") {
        // Let ONNX Runtime's threads spin as Python's defaults do (isolates that setting).
        config.runtime.spin = true;
    }
    if let Some(lib) = arg(&args, "--onnxruntime") {
        config.runtime.onnxruntime = Some(PathBuf::from(lib));
    }
    let mut opts = TtsBenchOptions::new(PathBuf::from(python), threads);
    if let Some(r) = arg(&args, "--runs").and_then(|r| r.parse().ok()) {
        opts.runs = r;
    }
    if let Some(r) = arg(&args, "--cold-runs").and_then(|r| r.parse().ok()) {
        opts.cold_runs = r;
    }
    opts.self_cmd = std::env::current_exe().ok().map(|exe| vec![exe.into_os_string()]);
    match bench_tts(&config, &opts) {
        Ok(report) => {
            print!("{}", render(&report));
            if let Ok(json) = serde_json::to_string(&report) {
                println!("{json}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

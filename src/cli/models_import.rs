//! `reelbox models import PATH`: brings a user's model in on this machine. Ready ONNX
//! layouts and Piper voices are copied; checkpoints are converted in the managed Python
//! environment and self-checked before they are installed (`kinds::model_import`, the same
//! code the `model_import` job runs). `--prepare-env` only creates that environment.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::model_import::{ImportRequest, import_model};
use reelbox::models::convert::PyEnv;
use reelbox::models::import::Via;

use super::Global;

/// `reelbox models import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A checkpoint (`.safetensors`, `.ckpt`, `.pth`), a diffusers folder, a Piper voice `.onnx`, or an ONNX folder.
    #[arg(required_unless_present = "prepare_env")]
    pub path: Option<PathBuf>,
    /// Name to install it under (default: from the file or directory name).
    #[arg(long)]
    pub name: Option<String>,
    /// tts, diffusion, lipsync, upscale, face or embedding (default: told from the files).
    #[arg(long)]
    pub kind: Option<String>,
    /// A LoRA to fuse into a Stable Diffusion base, FILE[:SCALE] (repeatable).
    #[arg(long = "lora", value_name = "FILE[:SCALE]")]
    pub loras: Vec<String>,
    /// Store the weights as float16: half the size, still computed in float32 (self-check bound 2e-2).
    #[arg(long)]
    pub fp16: bool,
    /// A single-file Stable Diffusion's prediction type, epsilon or v (default: guessed).
    #[arg(long, value_name = "epsilon|v")]
    pub prediction: Option<String>,
    /// Only create the conversion environment (pinned PyTorch and friends) and exit.
    #[arg(long)]
    pub prepare_env: bool,
}

/// Runs `models import`.
pub fn run(g: &Global, config: &Config, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let log = |line: &str| {
        if !g.json {
            eprintln!("{line}");
        }
    };
    // Ctrl-C reaches pip and the converter too (one process group); caught here, it ends the
    // import the way a canceled job ends, removing the staging folder (gigabytes for a real
    // SD) or the half-made conversion environment. A second Ctrl-C ends reelbox at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("reelbox: interrupted; stopping the import (Ctrl-C again to quit at once)");
        }
    });
    let canceled = || interrupted.load(Ordering::SeqCst);
    if args.prepare_env {
        let env = PyEnv::for_config(config);
        env.ensure(&log, &canceled)?;
        println!("{}", env.dir().display());
        return Ok(ExitCode::SUCCESS);
    }
    // Absolute, so the model's conversion.json says where its source was.
    let absolute = |p: &str| std::path::absolute(p).map_or_else(|_| p.to_string(), |a| a.display().to_string());
    let request = ImportRequest {
        path: args.path.map(|p| absolute(&p.display().to_string())),
        name: args.name,
        kind: args.kind,
        loras: args.loras.iter().map(|l| absolute(l)).collect(),
        fp16: Some(args.fp16),
        prediction: args.prediction,
    };
    // Name the flag the user typed, not the API's field.
    let params = request.resolve().map_err(|e| match e.field.as_str() {
        "loras" => anyhow::anyhow!("--lora {}", e.message),
        "path" => anyhow::anyhow!("PATH {}", e.message),
        _ => anyhow::anyhow!("--{}", e),
    })?;
    let engine = Engine::new(config);
    let progress = |step: u64, total: u64, message: &str| {
        if total > 0 {
            log(&format!("[{step}/{total}] {message}"));
        } else {
            log(message);
        }
    };
    let report =
        import_model(config, &engine, DeviceId::Cpu, &params, Via::Cli, &progress, &canceled).map_err(|e| {
            // Most refusals name the file already; say it once.
            let path = params.path.display().to_string();
            if e.to_string().contains(&path) {
                anyhow::Error::new(e)
            } else {
                anyhow::Error::new(e).context(format!("cannot import {path}"))
            }
        })?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let how = match (&report.converted_from, &report.self_check) {
        (Some(format), Some(c)) => format!(
            ", converted from {format}; self-check: largest difference {:.2e} on {} (allowed {:.0e})",
            c.max_abs_diff, c.compared, c.tolerance
        ),
        _ => String::new(),
    };
    println!(
        "imported {} ({}, {} files) into {}{how}",
        report.name,
        report.kind.as_str(),
        report.files,
        report.dir.display()
    );
    if !report.left_out.is_empty() {
        println!("left out (not part of the model): {}", report.left_out.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

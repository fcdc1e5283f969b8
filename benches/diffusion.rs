//! `cargo bench --bench diffusion`: reelbox's diffusion pipeline on the tiny SD model at
//! 64×64 and 256×256 on the CPU, beside diffusers' OnnxStableDiffusionPipeline when
//! `REELBOX_BENCH_PYTHON` names a Python with diffusers and onnxruntime. ONNX Runtime
//! comes from `ORT_DYLIB_PATH` as everywhere else. `REELBOX_BENCH_THREADS`,
//! `REELBOX_BENCH_STEPS` and `REELBOX_BENCH_REPEAT` override the defaults.

use std::path::PathBuf;

use reelbox::config::Config;
use reelbox::pipelines::diffusion::bench::{BenchOptions, bench_diffusion};

fn env_num<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: do not bench then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("diffusion bench: skipped (run it with `cargo bench --bench diffusion`)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut opts = BenchOptions { model_dir: root.join("tests/fixtures/models/tiny-sd"), ..BenchOptions::default() };
    opts.threads = env_num("REELBOX_BENCH_THREADS").unwrap_or(opts.threads);
    opts.steps = env_num("REELBOX_BENCH_STEPS").unwrap_or(opts.steps);
    opts.repeat = env_num("REELBOX_BENCH_REPEAT").unwrap_or(opts.repeat);
    if let Some(python) = std::env::var_os("REELBOX_BENCH_PYTHON") {
        opts.reference = Some((PathBuf::from(python), root.join("benches/diffusion_reference.py")));
    }
    match bench_diffusion(&Config::default(), &opts) {
        Ok(report) => print!("{}", report.to_table()),
        Err(e) => {
            eprintln!("diffusion bench failed: {e}");
            std::process::exit(1);
        }
    }
}

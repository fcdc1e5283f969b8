//! `reelbox bench diffusion`: reelbox's pipeline side by side with diffusers'
//! `OnnxStableDiffusionPipeline` (run through `benches/diffusion_reference.py` with the same
//! ONNX Runtime, threads, steps, scheduler and guidance), plus reelbox's own overhead:
//! wall time over the time spent inside ONNX Runtime.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::{DiffusionError, GenerateRequest, Hooks, SchedulerChoice, SdModel, SeededNoise, generate};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A model directory in the SD ONNX layout (the tiny fixture by default).
    pub model_dir: PathBuf,
    /// Square output sides to measure.
    pub sizes: Vec<u32>,
    pub steps: u32,
    /// ONNX Runtime intra-op threads, on both sides.
    pub threads: usize,
    pub scheduler: String,
    pub guidance: f32,
    /// Timed runs per size (the median is reported) after `warmup` untimed ones.
    pub repeat: usize,
    pub warmup: usize,
    /// Python interpreter with diffusers + onnxruntime, and the reference script; `None`
    /// measures reelbox only.
    pub reference: Option<(PathBuf, PathBuf)>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::from("tests/fixtures/models/tiny-sd"),
            sizes: vec![64, 256],
            steps: 20,
            threads: 1,
            scheduler: "euler".into(),
            guidance: 7.5,
            repeat: 7,
            warmup: 2,
            reference: None,
        }
    }
}

/// Figures for one size.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub size: u32,
    /// Median wall time of one image, seconds.
    pub wall_s: f64,
    /// Median time inside ONNX Runtime, seconds.
    pub onnx_s: f64,
    /// Median of wall / ONNX time per run (1.0 = no pipeline overhead).
    pub overhead: f64,
    pub reference_wall_s: Option<f64>,
    pub reference_onnx_s: Option<f64>,
    /// Median over alternating run pairs of reelbox wall / reference wall: steadier than
    /// the ratio of medians when the machine's load drifts.
    pub paired_ratio: Option<f64>,
}

/// All rows plus the settings they were taken with.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub rows: Vec<BenchRow>,
    pub reference_implementation: Option<String>,
}

impl BenchReport {
    /// A plain-text table for the terminal.
    pub fn to_table(&self) -> String {
        let o = &self.options;
        let mut s = format!(
            "diffusion bench: {} | {} steps, {}, guidance {}, {} thread(s), CPU, median of {}\n",
            o.model_dir.display(),
            o.steps,
            o.scheduler,
            o.guidance,
            o.threads,
            o.repeat
        );
        if let Some(r) = &self.reference_implementation {
            s.push_str(&format!("reference: {r}\n"));
        }
        s.push_str("size      reelbox ms   onnx ms   overhead   reference ms   ref onnx ms   reelbox/ref (paired)\n");
        for r in &self.rows {
            let opt = |v: Option<f64>, scale: f64, prec: usize| {
                v.map_or("-".to_string(), |v| format!("{:.prec$}", v * scale))
            };
            s.push_str(&format!(
                "{:<9} {:>10.2} {:>9.2} {:>10.3} {:>14} {:>13} {:>13}\n",
                format!("{0}x{0}", r.size),
                r.wall_s * 1e3,
                r.onnx_s * 1e3,
                r.overhead,
                opt(r.reference_wall_s, 1e3, 2),
                opt(r.reference_onnx_s, 1e3, 2),
                opt(r.paired_ratio, 1.0, 3),
            ));
        }
        s
    }
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Diffusion(#[from] DiffusionError),
    #[error("reference run failed: {0}")]
    Reference(String),
    #[error("reference run failed: {python}: {source}")]
    ReferenceStart {
        python: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reference run failed: {0}")]
    ReferenceIo(#[source] std::io::Error),
    #[error("reference run failed: unreadable output {line:?}: {source}")]
    ReferenceOutput {
        line: String,
        #[source]
        source: serde_json::Error,
    },
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The reference pipeline running in a Python process, one timed image per request.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    implementation: Option<String>,
}

impl Reference {
    fn start(python: &Path, script: &Path, opts: &BenchOptions, size: u32) -> Result<Self, BenchError> {
        let mut child = Command::new(python)
            .arg(script)
            .args(["--model", &opts.model_dir.to_string_lossy()])
            .args(["--size", &size.to_string(), "--steps", &opts.steps.to_string()])
            .args(["--threads", &opts.threads.to_string(), "--scheduler", &opts.scheduler])
            .args(["--guidance", &opts.guidance.to_string(), "--warmup", &opts.warmup.to_string(), "--serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::ReferenceStart { python: python.to_path_buf(), source })?;
        let missing = || BenchError::Reference("reference process has no pipes".into());
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(missing)?);
        let mut r = Self { child, stdin, stdout, implementation: None };
        let ready = r.read()?;
        r.implementation = ready.get("implementation").and_then(|v| v.as_str()).map(str::to_owned);
        Ok(r)
    }

    fn read(&mut self) -> Result<serde_json::Value, BenchError> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(BenchError::ReferenceIo)?;
        serde_json::from_str(&line).map_err(|source| BenchError::ReferenceOutput { line, source })
    }

    /// Times one image: (wall, ONNX) seconds.
    fn run(&mut self, seed: u64) -> Result<(f64, f64), BenchError> {
        writeln!(self.stdin, "{seed}").and_then(|_| self.stdin.flush()).map_err(BenchError::ReferenceIo)?;
        let v = self.read()?;
        let get = |k: &str| {
            v.get(k).and_then(serde_json::Value::as_f64).ok_or_else(|| BenchError::Reference(format!("no {k} in {v}")))
        };
        Ok((get("wall_s")?, get("onnx_s")?))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        // An empty line ends the serve loop; wait so no process outlives the bench.
        let _ = writeln!(self.stdin);
        let _ = self.child.wait();
    }
}

/// Runs the bench on the CPU. Builds its own engine from `config` with `opts.threads`.
/// With a reference, reelbox and reference images alternate, so both see the same load
/// on a shared machine.
pub fn bench_diffusion(config: &Config, opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let mut config = config.clone();
    config.runtime.intra_threads = opts.threads;
    let engine = Engine::new(&config);
    let model = SdModel::load(&opts.model_dir, &engine, DeviceId::Cpu)?;
    let scheduler = SchedulerChoice::parse(&opts.scheduler).map_err(DiffusionError::from)?;
    let mut rows = Vec::new();
    let mut reference_implementation = None;
    for &size in &opts.sizes {
        let req = GenerateRequest {
            prompt: "a photo of an astronaut riding a horse on mars".into(),
            negative_prompt: Some("blurry, low quality".into()),
            width: size,
            height: size,
            steps: opts.steps,
            steps_mode: super::StepsMode::Schedule,
            guidance: opts.guidance,
            scheduler,
            scheduler_config: None,
            count: 1,
            init: None,
            max_side: u32::MAX,
            stop_at: None,
            clip_skip: None,
            first_pass_steps: None,
            embeddings: Vec::new(),
        };
        let mut reference = match &opts.reference {
            Some((python, script)) => Some(Reference::start(python, script, opts, size)?),
            None => None,
        };
        let (mut walls, mut onnx, mut overheads, mut ref_walls, mut ref_onnx) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..opts.warmup + opts.repeat {
            let out = generate(&model, &req, &mut SeededNoise::new(&[i as u64]), None, &Hooks::default())?;
            if i < opts.warmup {
                continue;
            }
            let (w, o) = (out.timings.total.as_secs_f64(), out.timings.onnx.as_secs_f64());
            walls.push(w);
            onnx.push(o);
            overheads.push(w / o.max(f64::MIN_POSITIVE));
            if let Some(r) = reference.as_mut() {
                let (rw, ro) = r.run(i as u64)?;
                ref_walls.push(rw);
                ref_onnx.push(ro);
            }
        }
        if let Some(r) = &reference {
            reference_implementation = r.implementation.clone();
        }
        rows.push(BenchRow {
            size,
            paired_ratio: (!ref_walls.is_empty())
                .then(|| median(walls.iter().zip(&ref_walls).map(|(a, b)| a / b).collect())),
            wall_s: median(walls.clone()),
            onnx_s: median(onnx),
            overhead: median(overheads),
            reference_wall_s: (!ref_walls.is_empty()).then(|| median(ref_walls.clone())),
            reference_onnx_s: (!ref_onnx.is_empty()).then(|| median(ref_onnx)),
        });
    }
    Ok(BenchReport { options: opts.clone(), rows, reference_implementation })
}

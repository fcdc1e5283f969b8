//! `reelbox bench tts`: reelbox against Python piper-tts on the same paragraph, the same
//! ONNX Runtime and the same thread count. Warm speed (audio seconds per wall second) and
//! time to the first sentence come from repeated runs, interleaved in blocks so load on a
//! shared machine hits both sides alike; cold start is the wall time of a fresh process
//! saying one short sentence (`reelbox say --local` against `python -m piper`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{SpeechOptions, SynthesisRun, Voice, synthesize};
use crate::config::Config;
use crate::engine::Engine;
use crate::gpu::DeviceId;

/// The paragraph both sides read (95 words, 6 sentences).
pub const BENCH_PARAGRAPH: &str = "The old lighthouse stood at the edge of the cliff, watching the grey sea for more \
than a hundred years. Every night its keeper climbed the narrow stairs, trimmed the wick, and polished the great lens \
until it shone. Ships passed safely through the storms because of that steady light. When the keeper grew old, the \
town built an automatic lamp, and the tower fell silent. Children still tell stories about the man who never missed \
a night. Some say that on stormy evenings you can still see a lantern moving slowly up the stairs.";

/// The sentence cold starts say.
pub const COLD_SENTENCE: &str = "This is a test.";

/// The Python side, shipped inside the binary so installed builds need no source tree.
const PIPER_SCRIPT: &str = include_str!("../../../benches/piper_reference.py");

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct TtsBenchOptions {
    /// A Python with `piper-tts` installed.
    pub python: PathBuf,
    /// Installed voice name or path to a voice `.onnx`.
    pub voice: String,
    pub text: String,
    /// ONNX Runtime intra-op threads for both sides.
    pub threads: usize,
    /// Warm runs per side (at least 2; split into two interleaved blocks).
    pub runs: usize,
    /// Fresh-process runs per side for the cold start; 0 skips it.
    pub cold_runs: usize,
    /// Command that starts a fresh reelbox; `say TEXT -o FILE --local --voice V` is appended.
    pub self_cmd: Option<Vec<OsString>>,
}

impl TtsBenchOptions {
    /// Defaults: the bench paragraph, the default voice, 4 runs, 3 cold runs.
    pub fn new(python: PathBuf, threads: usize) -> Self {
        Self {
            python,
            voice: super::DEFAULT_VOICE.into(),
            text: BENCH_PARAGRAPH.into(),
            threads,
            runs: 4,
            cold_runs: 3,
            self_cmd: None,
        }
    }
}

/// One side's figures (medians).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SideFigures {
    /// Seconds of audio per run.
    pub audio_s: f64,
    /// Wall seconds per run.
    pub wall_s: f64,
    /// Audio seconds per wall second.
    pub speed: f64,
    /// From the call to the first sentence's audio.
    pub first_sentence_s: f64,
    /// Fresh process to WAV written, for the short sentence.
    pub cold_start_s: Option<f64>,
    /// Every warm run's wall time, in order.
    pub walls: Vec<f64>,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TtsBenchReport {
    pub threads: usize,
    pub runs: usize,
    pub words: usize,
    pub onnxruntime: String,
    pub espeak_ng: String,
    pub reelbox: SideFigures,
    pub piper: SideFigures,
    /// reelbox speed / piper speed (> 1: reelbox is faster).
    pub speed_ratio: f64,
    /// reelbox first-sentence time / piper's (< 1: reelbox is sooner).
    pub first_sentence_ratio: f64,
    /// reelbox cold start / piper's (< 1: reelbox starts faster).
    pub cold_start_ratio: Option<f64>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Tts(#[from] super::TtsError),
    #[error("python side failed: {0}")]
    Python(String),
    #[error("python side failed: cannot run {python}: {source}")]
    PythonStart {
        python: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("python side failed: unexpected output ({source}): {stdout}")]
    PythonOutput {
        stdout: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot start {what}: {source}")]
    Start {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[derive(Default)]
struct Runs {
    walls: Vec<f64>,
    firsts: Vec<f64>,
    audio: Vec<f64>,
}

impl Runs {
    fn figures(&self, cold: Option<f64>) -> SideFigures {
        let audio_s = median(&self.audio);
        let wall_s = median(&self.walls);
        let speeds: Vec<f64> = self.audio.iter().zip(&self.walls).map(|(a, w)| a / w).collect();
        SideFigures {
            audio_s,
            wall_s,
            speed: median(&speeds),
            first_sentence_s: median(&self.firsts),
            cold_start_s: cold,
            walls: self.walls.clone(),
        }
    }
}

fn reelbox_block(engine: &Engine, voice: &Voice, text: &str, runs: usize, out: &mut Runs) -> Result<(), BenchError> {
    let cancel = CancellationToken::new();
    let opts = SpeechOptions { sentence_silence: 0.0, ..SpeechOptions::default() };
    for _ in 0..runs {
        let start = Instant::now();
        let mut first = None;
        let mut on_sentence = |_: usize, _: &[i16]| {
            first.get_or_insert_with(|| start.elapsed().as_secs_f64());
        };
        let speech = synthesize(
            engine,
            voice,
            text,
            &opts,
            SynthesisRun {
                device: DeviceId::Cpu,
                progress: &|_| {},
                cancel: &cancel,
                on_sentence: Some(&mut on_sentence),
            },
        )?;
        out.walls.push(start.elapsed().as_secs_f64());
        out.firsts.push(first.unwrap_or_default());
        out.audio.push(speech.duration());
    }
    Ok(())
}

fn piper_block(
    opts: &TtsBenchOptions,
    script: &Path,
    model: &Path,
    text_file: &Path,
    runs: usize,
    out: &mut Runs,
) -> Result<(), BenchError> {
    let output = Command::new(&opts.python)
        .arg(script)
        .arg("--model")
        .arg(model)
        .args(["--threads", &opts.threads.to_string(), "--runs", &runs.to_string()])
        .arg("--text-file")
        .arg(text_file)
        .output()
        .map_err(|source| BenchError::PythonStart { python: opts.python.clone(), source })?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(BenchError::Python(format!(
            "{} {} failed (is piper-tts installed in it?): {}",
            opts.python.display(),
            script.display(),
            err.lines().last().unwrap_or("")
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|source| BenchError::PythonOutput {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        source,
    })?;
    let rate = v["sample_rate"].as_f64().unwrap_or(22050.0);
    for r in v["runs"].as_array().into_iter().flatten() {
        out.walls.push(r["wall_s"].as_f64().unwrap_or(f64::NAN));
        out.firsts.push(r["first_sentence_s"].as_f64().unwrap_or(f64::NAN));
        out.audio.push(r["samples"].as_f64().unwrap_or(0.0) / rate);
    }
    Ok(())
}

fn timed(cmd: &mut Command, what: &str) -> Result<f64, BenchError> {
    let start = Instant::now();
    let out = cmd.output().map_err(|source| BenchError::Start { what: what.to_string(), source })?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(BenchError::Failed {
            what: what.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").to_string(),
        });
    }
    Ok(wall)
}

/// Runs the comparison (see the module docs).
pub fn bench_tts(config: &Config, opts: &TtsBenchOptions) -> Result<TtsBenchReport, BenchError> {
    let mut config = config.clone();
    config.runtime.intra_threads = opts.threads;
    let voice = Voice::find(&config.models_dir(), &opts.voice)?;
    let tmp = tempfile::tempdir()?;
    let script = tmp.path().join("piper_reference.py");
    std::fs::write(&script, PIPER_SCRIPT)?;
    let text_file = tmp.path().join("text.txt");
    std::fs::write(&text_file, &opts.text)?;

    let engine = Engine::new(&config);
    let onnxruntime = engine.runtime().map(|r| r.version.clone()).unwrap_or_default();
    // Warm-up: session creation and first-run allocations stay out of the warm figures.
    let mut discard = Runs::default();
    reelbox_block(&engine, &voice, COLD_SENTENCE, 1, &mut discard)?;

    let runs = opts.runs.max(2);
    let (first_half, second_half) = (runs / 2, runs - runs / 2);
    let (mut rs, mut py) = (Runs::default(), Runs::default());
    reelbox_block(&engine, &voice, &opts.text, first_half, &mut rs)?;
    piper_block(opts, &script, &voice.model, &text_file, first_half, &mut py)?;
    piper_block(opts, &script, &voice.model, &text_file, second_half, &mut py)?;
    reelbox_block(&engine, &voice, &opts.text, second_half, &mut rs)?;

    let (mut rs_cold, mut py_cold) = (Vec::new(), Vec::new());
    if let Some(self_cmd) = opts.self_cmd.as_ref().filter(|c| !c.is_empty() && opts.cold_runs > 0) {
        let out = tmp.path().join("cold.wav");
        for _ in 0..opts.cold_runs {
            let mut rc = Command::new(&self_cmd[0]);
            rc.args(&self_cmd[1..])
                .args(["say", COLD_SENTENCE, "-o"])
                .arg(&out)
                .args(["--local", "--voice"])
                .arg(&voice.model)
                .env("REELBOX_DATA_DIR", &config.data_dir)
                .env("REELBOX_MODELS_DIR", config.models_dir());
            if let Ok(rt) = engine.runtime() {
                rc.env("REELBOX_ONNXRUNTIME", &rt.path);
            }
            rs_cold.push(timed(&mut rc, "reelbox say --local")?);
            let mut pc = Command::new(&opts.python);
            pc.args(["-m", "piper", "-m"]).arg(&voice.model).arg("-f").arg(&out).args(["--", COLD_SENTENCE]);
            py_cold.push(timed(&mut pc, "python -m piper")?);
        }
    }
    let rs_cold_s = (!rs_cold.is_empty()).then(|| median(&rs_cold));
    let py_cold_s = (!py_cold.is_empty()).then(|| median(&py_cold));
    let reelbox = rs.figures(rs_cold_s);
    let piper = py.figures(py_cold_s);
    Ok(TtsBenchReport {
        threads: opts.threads,
        runs,
        words: opts.text.split_whitespace().count(),
        onnxruntime,
        espeak_ng: super::espeak::info().map(|(v, _)| v).unwrap_or_default(),
        speed_ratio: reelbox.speed / piper.speed,
        first_sentence_ratio: reelbox.first_sentence_s / piper.first_sentence_s,
        cold_start_ratio: rs_cold_s.zip(py_cold_s).map(|(r, p)| r / p),
        reelbox,
        piper,
    })
}

/// The report as text for a terminal.
pub fn render(r: &TtsBenchReport) -> String {
    let cold = |c: Option<f64>| c.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into());
    format!(
        "TTS benchmark: {} words, {} warm runs per side, {} intra-op threads, ONNX Runtime {}, espeak-ng {}\n\
         {:<10} {:>12} {:>12} {:>10} {:>16} {:>12}\n\
         {:<10} {:>10.2} s {:>10.2} s {:>9.1}x {:>14.3} s {:>12}\n\
         {:<10} {:>10.2} s {:>10.2} s {:>9.1}x {:>14.3} s {:>12}\n\
         reelbox/piper: speed {:.2}x, first sentence {:.2}x the time, cold start {}\n",
        r.words,
        r.runs,
        r.threads,
        r.onnxruntime,
        r.espeak_ng,
        "",
        "audio",
        "wall",
        "speed",
        "first sentence",
        "cold start",
        "reelbox",
        r.reelbox.audio_s,
        r.reelbox.wall_s,
        r.reelbox.speed,
        r.reelbox.first_sentence_s,
        cold(r.reelbox.cold_start_s),
        "piper",
        r.piper.audio_s,
        r.piper.wall_s,
        r.piper.speed,
        r.piper.first_sentence_s,
        cold(r.piper.cold_start_s),
        r.speed_ratio,
        r.first_sentence_ratio,
        r.cold_start_ratio.map(|c| format!("{c:.2}x the time")).unwrap_or_else(|| "not measured".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn bench_paragraph_is_about_a_hundred_words() {
        let words = BENCH_PARAGRAPH.split_whitespace().count();
        assert!((90..=110).contains(&words), "{words}");
    }
}

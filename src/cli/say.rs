//! `reelbox say TEXT -o FILE` (or `--file FILE`, or `-` for standard input): text to a WAV
//! file with a Piper voice, on the daemon (`POST /api/v1/speech`) when one answers, else in
//! this process.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use reelbox::config::Config;
use reelbox::kinds::speech::{SayError, SayRequest, SpeechRequest, say_local};
use serde_json::json;

use super::Global;
use super::backend::{Backend, local, run_job, save_artifacts};

/// Arguments of `reelbox say`.
#[derive(Debug, Args)]
pub struct SayArgs {
    /// What to say (`-` reads it from standard input).
    #[arg(required_unless_present = "file")]
    pub text: Option<String>,
    /// A UTF-8 text file to say, instead of TEXT.
    #[arg(long, conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// How the text is written: `text`, or `markdown` (said as `reelbox render` reads a
    /// Markdown script: no `#`, `*` or link addresses; code, HTML and front matter are not
    /// said). Default: `markdown` for a `.md` or `.markdown` --file, else `text`.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "markdown"])]
    pub format: Option<String>,
    /// WAV file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Installed voice (default: the voice `reelbox models list` tags default); with --local also a path to a voice .onnx.
    #[arg(long)]
    pub voice: Option<String>,
    /// Speaker of a multi-speaker voice (name or number).
    #[arg(long)]
    pub speaker: Option<String>,
    /// Voice variation (Piper's noise_scale; the voice's default when unset).
    #[arg(long)]
    pub noise_scale: Option<f32>,
    /// Phoneme length variation (Piper's noise_w).
    #[arg(long)]
    pub noise_w: Option<f32>,
    /// Speaking speed: above 1 is slower.
    #[arg(long)]
    pub length_scale: Option<f32>,
    /// Seconds of silence between sentences.
    #[arg(long)]
    pub sentence_silence: Option<f32>,
    /// Run in this process even when a daemon answers.
    #[arg(long)]
    pub local: bool,
}

/// Runs `reelbox say`.
pub async fn run(g: &Global, args: SayArgs) -> anyhow::Result<ExitCode> {
    super::backend::check_output(&args.output)?;
    let text = match (&args.text, &args.file) {
        (Some(text), _) if text == "-" => super::text_file::read(Path::new("-"), "text")?,
        (Some(text), _) => reelbox::text::clean(text),
        (None, Some(file)) => {
            super::text_file::read(file, "text").map_err(|e| match e.downcast::<std::io::Error>() {
                Ok(e) => anyhow!("cannot read the text file {}: {e}", file.display()),
                Err(e) => e,
            })?
        }
        (None, None) => anyhow::bail!("give the TEXT to say, or --file FILE"),
    };
    let by_name = args.file.as_deref().map_or("text", super::text_file::format_of);
    let text = match args.format.as_deref().unwrap_or(by_name) {
        "markdown" => reelbox::text::markdown::to_script(&text),
        _ => text,
    };
    // A voice given as a file exists only on this machine.
    let voice_is_file = args.voice.as_deref().is_some_and(|v| v.contains('/') || v.ends_with(".onnx"));
    match Backend::choose(g, args.local || voice_is_file).await? {
        Backend::Daemon(c) => {
            let body = SpeechRequest {
                text: Some(text),
                voice: args.voice,
                speaker: args.speaker.map(serde_json::Value::String),
                noise_scale: args.noise_scale.map(f64::from),
                noise_w: args.noise_w.map(f64::from),
                length_scale: args.length_scale.map(f64::from),
                sentence_silence: args.sentence_silence.map(f64::from),
                format: None,
            };
            let job = run_job(&c, g, "/api/v1/speech", &serde_json::to_value(&body)?, None).await?;
            let files = save_artifacts(&c, &job, &args.output, |a| a.media_type == "audio/wav").await?;
            if g.json {
                println!("{}", json!({"job": job.id, "files": files, "backend": c.base()}));
            } else {
                println!("{}", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join("\n"));
            }
        }
        Backend::Local => {
            let config = Config::load(g.config.as_deref())?;
            let req = SayRequest {
                text,
                voice: args.voice,
                noise_scale: args.noise_scale,
                noise_w: args.noise_w,
                length_scale: args.length_scale,
                speaker: args.speaker,
                sentence_silence: args.sentence_silence,
                device: None,
            };
            let out = args.output.clone();
            let report = local(move || say_local(&config, &req, &out)).await?.map_err(|e| match e {
                // A refused --voice names the flag and the fix; it is no synthesis failure.
                SayError::Voice(refused) => anyhow!("{refused}"),
                SayError::Tts(e) => anyhow::Error::new(e).context("speech synthesis failed"),
            })?;
            let seconds = report.speech.duration();
            if g.json {
                println!(
                    "{}",
                    json!({
                        "files": [args.output],
                        "backend": "local",
                        "seconds": seconds,
                        "elapsed_ms": report.elapsed.as_millis() as u64,
                        "first_sentence_ms": report.first_sentence.as_millis() as u64,
                    })
                );
            } else {
                eprintln!(
                    "{seconds:.2} s of speech in {:.2} s (first sentence after {:.2} s)",
                    report.elapsed.as_secs_f64(),
                    report.first_sentence.as_secs_f64()
                );
                println!("{}", args.output.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

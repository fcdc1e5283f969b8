//! `reelbox lipsync PORTRAIT`: a talking head from a photo (or video) and a narration,
//! given as a sound file or as text to speak (or a profile's portrait, voice and model), on the daemon at `--url` when one answers,
//! else on one started here (as `render` does).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use reelbox::api::views::parse_face_box;
use serde_json::json;

use super::Global;
use super::backend::{Reach, run_job, save_artifacts, upload};

/// Arguments of `reelbox lipsync`.
#[derive(Debug, Args)]
pub struct LipsyncArgs {
    /// The face: a picture (PNG, JPEG, WebP) or an MP4 video (default: `--profile`'s portrait).
    #[arg(required_unless_present = "profile")]
    pub portrait: Option<PathBuf>,
    /// The narration to lip-sync: WAV, MP3, FLAC or Ogg.
    #[arg(long, required_unless_present = "text", conflicts_with = "text")]
    pub audio: Option<PathBuf>,
    /// Text to speak first with `--voice`, instead of `--audio`.
    #[arg(long)]
    pub text: Option<String>,
    /// Voice for `--text` (default: `--profile`'s, else the TTS default `reelbox models list` tags).
    #[arg(long, requires = "text")]
    pub voice: Option<String>,
    /// Profile id or name (`reelbox profiles list`): its portrait with its face box, its voice
    /// for `--text` and its lip-sync model, each unless given here.
    #[arg(long)]
    pub profile: Option<String>,
    /// Output MP4.
    #[arg(short, long, default_value = "lipsync.mp4")]
    pub output: PathBuf,
    /// The face's box in the portrait, `x,y,w,h` in pixels (default: found by the face
    /// detector).
    #[arg(long, value_parser = parse_face_box)]
    pub face_box: Option<[u32; 4]>,
    /// Installed lip-sync model (default: the lip-sync default `reelbox models list` tags).
    #[arg(long)]
    pub model: Option<String>,
    /// Frames per second of a still portrait's film.
    #[arg(long)]
    pub fps: Option<u32>,
}

/// Runs `reelbox lipsync`.
pub async fn run(g: &Global, a: LipsyncArgs) -> anyhow::Result<ExitCode> {
    super::backend::check_output(&a.output)?;
    let reach = Reach::new(g).await?;
    let c = &reach.client;
    let result = async {
        let portrait = match &a.portrait {
            Some(path) => Some(upload(c, path, "portrait").await?.id),
            None => None,
        };
        let audio = match &a.audio {
            Some(path) => Some(upload(c, path, "--audio").await?.id),
            None => None,
        };
        let params = json!({"portrait": portrait, "audio": audio, "text": a.text, "voice": a.voice,
            "face_box": a.face_box, "model": a.model, "fps": a.fps, "profile": a.profile});
        let job = run_job(c, g, "/api/v1/jobs", &json!({"kind": "lipsync", "params": params}), None).await?;
        save_artifacts(c, &job, &a.output, |a| a.name == "lipsync.mp4").await?;
        if g.json {
            println!("{}", json!({"job": job.id, "output": a.output, "model": job.params["model"]}));
        } else {
            let film = std::path::absolute(&a.output).unwrap_or_else(|_| a.output.clone());
            eprintln!("{} · job {}", job.params["model"].as_str().unwrap_or("?"), job.id);
            println!("{}", film.display());
        }
        anyhow::Ok(())
    }
    .await;
    reach.close().await;
    result.map(|_| ExitCode::SUCCESS)
}

//! `reelbox upscale FILE`: a picture or video made larger by the upscale model, on the
//! daemon at `--url` when one answers, else on one started here (as `render` does).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::Global;
use super::backend::{Reach, run_job, save_artifacts, upload};
use super::resize_arg::ResizeArgs;

/// Arguments of `reelbox upscale`.
#[derive(Debug, Args)]
pub struct UpscaleArgs {
    /// The picture (PNG, JPEG, WebP) or MP4 video to upscale.
    pub input: PathBuf,
    /// File to write (default: beside the input, `NAME-upscaled.png`, or `.mp4` for a video).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Installed upscale model (default: the upscale default `reelbox models list` tags).
    #[arg(long)]
    pub model: Option<String>,
    /// Tile side in pixels (0: automatic; smaller uses less memory).
    #[arg(long)]
    pub tile: Option<u32>,
    /// Also resize without a model (after the model's upscale; alone when no `--model` is
    /// given, the picture is then only resized).
    #[command(flatten)]
    pub resize: ResizeArgs,
    /// Resize first, then upscale the resized picture with `--model`.
    #[arg(long, requires_all = ["resize", "model"])]
    pub resize_first: bool,
}

/// `NAME-upscaled.EXT` (`NAME-resized.EXT` for a resize alone) beside `input`: `.mp4` when
/// the daemon read it as a video (it keeps a video a video, with its sound), else `.png`.
fn default_output(input: &Path, media_type: &str, what: &str) -> PathBuf {
    let stem = input.file_stem().map_or_else(|| "output".into(), |s| s.to_string_lossy().into_owned());
    input.with_file_name(format!("{stem}-{what}.{}", if media_type.starts_with("video/") { "mp4" } else { "png" }))
}

/// Runs `reelbox upscale`.
pub async fn run(g: &Global, a: UpscaleArgs) -> anyhow::Result<ExitCode> {
    if let Some(output) = &a.output {
        super::backend::check_output(output)?;
    }
    let resize = a.resize.request()?;
    // The last stage's picture is the one asked for: a resize after the upscale (or alone)
    // writes `resized.png`, an upscale `upscaled.png`.
    let last = if resize.is_some() && !a.resize_first { "resized." } else { "upscaled." };
    let reach = Reach::new(g).await?;
    let c = &reach.client;
    let result = async {
        let input = upload(c, &a.input, "input").await?;
        let what = if resize.is_some() && a.model.is_none() { "resized" } else { "upscaled" };
        let output = a.output.clone().unwrap_or_else(|| default_output(&a.input, &input.media_type, what));
        let mut params = json!({"input": input.id, "model": a.model, "tile": a.tile});
        if let Some(resize) = &resize {
            params["resize"] = serde_json::to_value(resize)?;
            params["resize_first"] = json!(a.resize_first);
        }
        let job = run_job(c, g, "/api/v1/jobs", &json!({"kind": "upscale", "params": params}), None).await?;
        let files = save_artifacts(c, &job, &output, |a| a.name.starts_with(last)).await?;
        if g.json {
            println!("{}", json!({"job": job.id, "files": files, "model": job.params["model"]}));
        } else {
            eprintln!("{} · job {}", job.params["model"].as_str().unwrap_or("?"), job.id);
            for f in &files {
                println!("{}", f.display());
            }
        }
        anyhow::Ok(())
    }
    .await;
    reach.close().await;
    result.map(|_| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_lies_beside_the_input_and_keeps_a_video_a_video() {
        let photo = default_output(Path::new("photos/IMG_0001.JPG"), "image/jpeg", "upscaled");
        assert_eq!(photo, PathBuf::from("photos/IMG_0001-upscaled.png"));
        // A video is told by its bytes, whatever its name says.
        assert_eq!(default_output(Path::new("clip.3gp"), "video/mp4", "upscaled"), PathBuf::from("clip-upscaled.mp4"));
        assert_eq!(default_output(Path::new("a.png"), "image/png", "resized"), PathBuf::from("a-resized.png"));
    }
}

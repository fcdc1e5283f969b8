//! `reelbox jobs get ID`: a finished job's results saved as files, whoever sent the job
//! (the web studio on a phone, a script, another laptop).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use reelbox::api::outputs::is_preview_named;
use reelbox::api::views::{ArtifactView, JobView};
use reelbox::store::records::JobStatus;
use serde_json::json;

use super::Global;
use super::client::Client;

/// What to save and where.
pub struct GetArgs {
    pub id: String,
    pub dir: PathBuf,
    pub all: bool,
    pub force: bool,
}

/// The job's results: the files of its last stage that made any (a render's film and
/// subtitles, an image job's pictures without their step previews), or every file.
pub(super) fn results(job: &JobView, artifacts: Vec<ArtifactView>, all: bool) -> Vec<ArtifactView> {
    let kept = artifacts.into_iter().filter(|a| !is_preview_named(a.stage.as_deref(), &a.name));
    if all {
        return kept.collect();
    }
    let last = job.stages.iter().rev().find(|s| !s.artifacts.is_empty() && s.name != "preview").map(|s| &s.artifacts);
    kept.filter(|a| last.is_some_and(|ids| ids.contains(&a.id))).collect()
}

/// The name `art` is saved under: the one the API and the web studio download it as (the
/// film's first words and short id, so films of one folder keep apart), else its own name
/// (a daemon older than `download_name`).
fn saved_name(art: &ArtifactView) -> &str {
    if art.download_name.is_empty() { &art.name } else { &art.download_name }
}

/// Where `name` is saved in `dir`: as it is, or `stem-2.ext`, ... when an earlier file of
/// this download took the name (stages of one job may name files alike).
fn destination(dir: &Path, name: &str, taken: &[PathBuf]) -> PathBuf {
    // A name is the daemon's; only its last component is used, so it stays in `dir`.
    let name = Path::new(name).file_name().map_or_else(|| "artifact".into(), |n| n.to_string_lossy().into_owned());
    let first = dir.join(&name);
    (1..)
        .map(|i| if i == 1 { first.clone() } else { super::backend::numbered(&first, i) })
        .find(|p| !taken.contains(p))
        .unwrap_or(first)
}

/// Runs `reelbox jobs get`.
pub async fn run(c: &Client, g: &Global, a: GetArgs) -> anyhow::Result<()> {
    let job: JobView = c.get(&format!("/api/v1/jobs/{}", a.id)).await?;
    let id = &job.id;
    match job.state {
        JobStatus::Succeeded => {}
        JobStatus::Queued | JobStatus::Running if !a.all => {
            return Err(anyhow!(
                "job {id} is {}; `{}` follows it (`--all` saves what its finished stages made)",
                job.state,
                c.command(&format!("jobs watch {id}"))
            ));
        }
        JobStatus::Failed | JobStatus::Canceled if !a.all => {
            let why = job.error.as_deref().unwrap_or("no error recorded");
            return Err(anyhow!("job {id} {} ({why}); `--all` saves what its finished stages made", job.state));
        }
        _ => {}
    }
    if a.dir.exists() && !a.dir.is_dir() {
        anyhow::bail!("-o {}: not a directory; give the folder to save into", a.dir.display());
    }
    let artifacts: Vec<ArtifactView> = c.get(&format!("/api/v1/jobs/{id}/artifacts")).await?;
    let picked = results(&job, artifacts, a.all);
    if picked.is_empty() {
        anyhow::bail!("job {id} has no files to save yet");
    }
    let mut saved: Vec<PathBuf> = Vec::new();
    let planned: Vec<PathBuf> = picked.iter().fold(Vec::new(), |mut taken, art| {
        let dest = destination(&a.dir, saved_name(art), &taken);
        taken.push(dest);
        taken
    });
    if !a.force
        && let Some(there) = planned.iter().find(|p| p.exists())
    {
        anyhow::bail!("{} exists; give another -o DIR, or --force to replace it", there.display());
    }
    // A new folder per film is how a family keeps them apart: made, not refused.
    std::fs::create_dir_all(&a.dir).with_context(|| format!("-o {}: cannot create the directory", a.dir.display()))?;
    for (art, dest) in picked.iter().zip(planned) {
        c.download(&art.url, &dest).await.with_context(|| format!("cannot save {} ({})", art.name, art.id))?;
        if !g.json {
            println!("{}", dest.display());
        }
        saved.push(dest);
    }
    if g.json {
        println!("{}", json!({"job": id, "files": saved}));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_in_the_folder_and_a_second_of_a_name_is_numbered() {
        let dir = Path::new("out");
        assert_eq!(destination(dir, "../../etc/passwd", &[]), PathBuf::from("out/passwd"));
        let first = destination(dir, "film.mp4", &[]);
        assert_eq!(destination(dir, "film.mp4", &[first]), PathBuf::from("out/film-2.mp4"));
    }
}

//! Where a generation command (`say`, `image`, `render`, ...) runs: on the daemon at
//! `--url` when one answers, so the work shows in its queue and uses its loaded models,
//! else in this process — as a pipeline call ([`Backend`]) or, for jobs that need
//! resumable stages, a daemon started here ([`Reach`]). Every such command makes the
//! choice here, the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use reelbox::api::views::{ArtifactView, JobView};
use reelbox::client::ClientError;
use reelbox::config::Config;
use reelbox::daemon::Daemon;
use reqwest::Method;
use reqwest::multipart::Form;

use super::Global;
use super::client::{Client, no_answer};
use super::follow::{Follow, follow_after};

/// How long the cancel of an interrupted job may take: a box that does not answer must not
/// hold a Ctrl-C for the minutes a connection to it takes to fail.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// How long a daemon has to answer `/healthz` before the command runs locally.
const PROBE_WAIT: Duration = Duration::from_millis(1500);

/// Where the work runs.
pub enum Backend {
    /// The daemon at `--url`.
    Daemon(Client),
    /// This process.
    Local,
}

impl Backend {
    /// The daemon when it answers (unless `force_local`), else this process when `--url`
    /// is this machine's (said on stderr, so a user who expected the daemon knows); another
    /// box that does not answer is an error.
    pub async fn choose(g: &Global, force_local: bool) -> anyhow::Result<Self> {
        if force_local {
            return Ok(Backend::Local);
        }
        if let Some(client) = daemon(g).await? {
            return Ok(Backend::Daemon(client));
        }
        // Another box's address: running here instead would use this machine's models (a
        // laptop has none) for work meant for that box.
        let url = g.url.trim_end_matches('/');
        if !reelbox::client::is_this_machine(url) {
            anyhow::bail!("{}; nothing was sent", reelbox::client::unreachable_text(url));
        }
        eprintln!("reelbox: no daemon answers at {url}; running in this process");
        Ok(Backend::Local)
    }
}

/// The daemon at `--url` when it answers `/healthz` within [`PROBE_WAIT`]; a `--url` or
/// `--cacert` no client can be made of is an error, not "no daemon".
pub async fn daemon(g: &Global) -> anyhow::Result<Option<Client>> {
    let client = Client::new(g)?;
    Ok(client.answers(PROBE_WAIT).await.then_some(client))
}

/// A daemon to talk to: the one at `--url`, or one started in this process on the
/// configured data dir, so a job keeps its resumable stages either way.
pub struct Reach {
    pub client: Client,
    own: Option<(Daemon, Config)>,
}

impl Reach {
    /// The daemon at `--url` when it answers, else one started here.
    pub async fn new(g: &Global) -> anyhow::Result<Self> {
        match Backend::choose(g, false).await? {
            Backend::Daemon(client) => Ok(Self { client, own: None }),
            Backend::Local => Self::start(g, Config::load(g.config.as_deref())?).await,
        }
    }

    /// Starts a daemon in this process on `config`, bound to a free loopback port.
    pub async fn start(g: &Global, mut config: Config) -> anyhow::Result<Self> {
        config.bind = "127.0.0.1:0".parse()?;
        let daemon = Daemon::start(config.clone()).await.context("no daemon answers and one cannot be started here")?;
        let local = Global { url: format!("http://{}", daemon.addr), ..g.clone() };
        Ok(Self { client: Client::new(&local)?.in_this_process(), own: Some((daemon, config)) })
    }

    /// The daemon this process runs, when it runs one.
    pub fn own(&self) -> Option<&Daemon> {
        self.own.as_ref().map(|(d, _)| d)
    }

    /// Stops the daemon started here, if any.
    pub async fn close(self) {
        if let Some((d, config)) = self.own {
            d.stop().await;
            // `sudo reelbox demo` with the service stopped ran a daemon as root on its dir.
            if let Err(e) = reelbox::setup::owner::hand_back(&config) {
                eprintln!("reelbox: {}", reelbox::error_text::chain_text(&e));
            }
        }
    }
}

/// Submits a job to a kind's route, follows it to the end and returns it; an error when it
/// did not succeed, with the job's own error (see [`follow_job`]).
pub async fn run_job(
    c: &Client,
    g: &Global,
    route: &str,
    body: &serde_json::Value,
    idempotency_key: Option<&str>,
) -> anyhow::Result<JobView> {
    let job = submit_job(c, g, route, body, idempotency_key).await?;
    follow_job(c, g, &job.id, None, None).await
}

/// Submits a job to a kind's route and says where it was queued.
pub async fn submit_job(
    c: &Client,
    g: &Global,
    route: &str,
    body: &serde_json::Value,
    idempotency_key: Option<&str>,
) -> anyhow::Result<JobView> {
    let mut req = c.request(Method::POST, route).json(body);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let job: JobView = c.send(req).await?;
    if !g.json {
        eprintln!("job {} queued on {}", job.id, c.place());
    }
    Ok(job)
}

/// Follows job `id` to the end and returns it; an error when it did not succeed, with the
/// job's own error. Ctrl-C cancels the job (a daemon's job would otherwise run on for
/// nobody) and says how to retry it — saving to `save_to`, the film the user asked for,
/// when there is one; while the box does not answer it only stops waiting, and says how to
/// fetch the job's results later. `after`: the event it follows from (see [`follow_after`]).
pub async fn follow_job(
    c: &Client,
    g: &Global,
    id: &str,
    save_to: Option<&Path>,
    after: Option<String>,
) -> anyhow::Result<JobView> {
    let job = tokio::select! {
        followed = follow_after(c, id, Follow { events_to_stdout: false, progress: !g.json }, after) => followed?,
        signal = tokio::signal::ctrl_c() => {
            signal.context("cannot watch for Ctrl-C")?;
            // The job is the daemon's: left running, it would go on using the box for a
            // result nobody waits for. Canceled, it keeps its finished stages for a retry.
            let cancel = c.request(Method::POST, &format!("/api/v1/jobs/{id}/cancel")).timeout(CANCEL_WAIT);
            match c.send_raw(cancel).await {
                Err(e) if no_answer(&e) => {
                    return Err(anyhow!(
                        "interrupted: the box at {} does not answer, so job {id} goes on there: `{}` saves what it \
                         made once it is done, `{}` stops it",
                        c.base(),
                        c.command(&format!("jobs get {id} -o DIR")),
                        c.command(&format!("jobs cancel {id}"))
                    ));
                }
                answer => answer?,
            };
            // `jobs retry` alone only queues the job: with `-o` it follows it and saves the
            // film where this command would have.
            let retry = match save_to {
                Some(path) => format!(
                    "`{}` runs it again (from its last finished stage) and saves the film there",
                    c.command(&format!("jobs retry {id} -o {}", path.display()))
                ),
                None => format!(
                    "`{}` runs it again (a render from its last finished stage)",
                    c.command(&format!("jobs retry {id} --wait"))
                ),
            };
            return Err(anyhow!("interrupted: job {id} canceled; {retry}"));
        }
    };
    if job.state != "succeeded" {
        return Err(anyhow!(
            "job {} {}: {}",
            job.id,
            job.state,
            job.error.clone().unwrap_or_else(|| "no error recorded".into())
        ));
    }
    Ok(job)
}

/// Downloads the job's artifacts that `wanted` picks: one goes to `output`, several to
/// `stem-1.ext`, `stem-2.ext`, ... beside it. Returns the files written.
pub async fn save_artifacts(
    c: &Client,
    job: &JobView,
    output: &Path,
    wanted: impl Fn(&ArtifactView) -> bool,
) -> anyhow::Result<Vec<PathBuf>> {
    let all: Vec<ArtifactView> = c.get(&format!("/api/v1/jobs/{}/artifacts", job.id)).await?;
    let picked: Vec<&ArtifactView> = all.iter().filter(|a| wanted(a)).collect();
    if picked.is_empty() {
        let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
        return Err(anyhow!("job {} finished without the expected output (it has: {})", job.id, names.join(", ")));
    }
    let mut files = Vec::new();
    for (i, a) in picked.iter().enumerate() {
        let dest = if picked.len() == 1 { output.to_path_buf() } else { numbered(output, i + 1) };
        c.download(&a.url, &dest).await.with_context(|| format!("cannot save artifact {} ({})", a.id, a.name))?;
        files.push(dest);
    }
    Ok(files)
}

/// Uploads the file at `path`, given as `flag`, as an input artifact (the daemon's answer:
/// its id, and its media type as the daemon read the bytes). A refusal is said in the words
/// of `flag`: the daemon's message names its form field (`file: not a readable …`), which
/// the user never typed.
pub async fn upload(c: &Client, path: &Path, flag: &str) -> anyhow::Result<ArtifactView> {
    let form = Form::new().part("file", c.local_file(path, flag).await?.part());
    c.send(c.request(Method::POST, "/api/v1/artifacts").multipart(form)).await.map_err(|e| {
        match e.downcast_ref::<ClientError>() {
            Some(ClientError::Status { status, message }) if status.is_client_error() => {
                anyhow!("{flag} {}: {}", path.display(), message.strip_prefix("file: ").unwrap_or(message))
            }
            _ => e.context(format!("{flag} {}: the upload failed", path.display())),
        }
    })
}

/// Refuses an `-o` whose directory does not exist before any work starts (a render of
/// minutes would otherwise only fail when it saves).
pub fn check_output(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => {
            anyhow::bail!("-o {}: the directory {} does not exist", path.display(), dir.display())
        }
        _ => Ok(()),
    }
}

/// `dir/stem-i.ext` for the i-th of several outputs named after `path`.
pub fn numbered(path: &Path, i: usize) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    match path.extension() {
        Some(ext) => path.with_file_name(format!("{stem}-{i}.{}", ext.to_string_lossy())),
        None => path.with_file_name(format!("{stem}-{i}")),
    }
}

/// Runs blocking in-process work (model inference) off the async runtime.
pub async fn local<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await.context("the local run stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_outputs_are_numbered_beside_the_named_one() {
        assert_eq!(numbered(Path::new("out/cat.png"), 2), PathBuf::from("out/cat-2.png"));
        assert_eq!(numbered(Path::new("cat"), 1), PathBuf::from("cat-1"));
    }
}

//! `reelbox render SCRIPT -o OUT.mp4` and `reelbox demo`: the main job. Both use the
//! daemon at `--url` when one answers, else start one in this process on the same data
//! dir, so a render always shows up as a normal job with resumable stages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use reelbox::api::views::{JobView, ProfileView, face_box_text};
use reelbox::api::web::session::BrowserSession;
use reelbox::client::profile_path;
use reelbox::config::Config;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Global;
use super::backend::{Reach, follow_job, save_artifacts, submit_job, upload};
use super::client::Client;
use super::hint::Hint;
use super::models_pull::{PullsThere, models_elsewhere, pull_missing};

/// Arguments of `reelbox render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Script file (`-`: standard input): paragraphs become scenes, `[brackets]` describe
    /// a scene's picture, the rest is spoken. A single line makes a one-scene film.
    pub script: PathBuf,
    /// How the script is written: `text`, or `markdown` (headings are title scenes, a list is
    /// one scene, an image's alt text describes its scene's picture; code and HTML are not
    /// narrated). Default: `markdown` for a `.md` or `.markdown` file, else `text`.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "markdown"])]
    pub script_format: Option<String>,
    /// Output MP4 (.mp4, .m4v or .mov; default: the script's name, `story.txt` →
    /// `story.mp4`; from standard input the first free of `film.mp4`, `film-2.mp4`, ...).
    /// Its subtitles go beside it (`story.srt`, `story.vtt`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace the film and subtitle files that are there.
    #[arg(long)]
    pub force: bool,
    /// Profile id or name (`reelbox profiles list`): its presenter, voice, style and picture,
    /// lip-sync and upscale models fill what the other flags leave out.
    #[arg(long)]
    pub profile: Option<String>,
    /// Voice of the narration (an installed TTS voice; default: the profile's, else the
    /// default `reelbox models list` tags).
    #[arg(long)]
    pub voice: Option<String>,
    /// Words put before every scene's picture prompt (`"oil painting"`; default: the profile's).
    #[arg(long)]
    pub style: Option<String>,
    /// Preset (fast, quality, max).
    #[arg(long)]
    pub preset: Option<String>,
    /// Music file mixed under the narration (ducked while someone speaks).
    #[arg(long)]
    pub music: Option<PathBuf>,
    /// Diffusion model for the keyframes (default: the diffusion default `reelbox models list` tags).
    #[arg(long)]
    pub model: Option<String>,
    /// Film width in pixels, a multiple of 8 (default 512).
    #[arg(long)]
    pub width: Option<u32>,
    /// Film height in pixels, a multiple of 8 (default 512).
    #[arg(long)]
    pub height: Option<u32>,
    /// Frames per second, 1 to 60 (default 25).
    #[arg(long)]
    pub fps: Option<u32>,
    /// Presenter layout: inset, full or none.
    #[arg(long)]
    pub layout: Option<String>,
    /// Render small and upscale with the upscale model.
    #[arg(long)]
    pub upscale: bool,
    /// Lip-sync model that makes the presenter talk (an installed lipsync model, e.g. an
    /// imported wav2lip_gan; default: the profile's, else the lipsync default `reelbox models
    /// list` tags).
    #[arg(long, value_name = "NAME")]
    pub lipsync_model: Option<String>,
    /// Upscale model for --upscale (an installed upscale model, e.g. an imported
    /// 4x-UltraSharp; default: the profile's, else the upscale default `reelbox models list`
    /// tags).
    #[arg(long, value_name = "NAME")]
    pub upscale_model: Option<String>,
    /// Burn the subtitles into the picture (they are always included as a track).
    #[arg(long)]
    pub burn_subtitles: bool,
    /// Seed of the keyframes (the same seed draws the same pictures; default 0).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Arguments of `reelbox demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output MP4 (an earlier demo's film there is replaced; any other file is kept unless
    /// --force). Its subtitles go beside it.
    #[arg(short, long, default_value = "reelbox-demo.mp4")]
    pub output: PathBuf,
    /// Replace the film and subtitle files that are there, whoever wrote them.
    #[arg(long)]
    pub force: bool,
}

async fn render_with(c: &Client, g: &Global, body: Value, output: &Path) -> anyhow::Result<()> {
    let job = submit_job(c, g, "/api/v1/renders", &body, None).await?;
    let job = follow_job(c, g, &job.id, Some(output), None).await?;
    save_film(c, g, &job, output).await
}

/// Saves a finished render's film to `output` and its subtitles beside it, and says where.
pub(super) async fn save_film(c: &Client, g: &Global, job: &JobView, output: &Path) -> anyhow::Result<()> {
    save_artifacts(c, job, output, |a| a.name == "film.mp4").await?;
    for (ext, name) in [("srt", "film.srt"), ("vtt", "film.vtt")] {
        save_artifacts(c, job, &output.with_extension(ext), |a| a.name == name).await?;
    }
    if g.json {
        println!("{}", json!({"job": job.id, "output": output}));
    } else {
        // The whole path: a film rendered from a script run elsewhere is found at once.
        let film = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf());
        let name = |ext: &str| output.with_extension(ext).file_name().map(|n| n.to_string_lossy().into_owned());
        let (srt, vtt) = (name("srt").unwrap_or_default(), name("vtt").unwrap_or_default());
        println!("{} (subtitles beside it: {srt}, {vtt}; job {})", film.display(), job.id);
        if c.is_in_process() {
            later(g, &job.id)?;
        }
    }
    Ok(())
}

/// After a render in a daemon this command ran itself (none was running): how to see the
/// job again, since that daemon's address is gone once the command ends. The job is in the
/// data dir, which `reelbox serve` opens.
fn later(g: &Global, id: &str) -> anyhow::Result<()> {
    let config = Config::load(g.config.as_deref())?;
    let studio =
        super::client::serve_url(&config).map_or_else(|| "the address it prints".to_string(), |url| format!("{url}/"));
    eprintln!(
        "reelbox: no daemon was running, so this command ran one of its own, which stops now; job {id} stays in \
         {}: to see it later, start `{}` and open the web studio at {studio} (Library), or run `{}`",
        config.data_dir.display(),
        g.hint.on_this_box("serve"),
        g.hint.on_this_box(&format!("jobs show {id}"))
    );
    Ok(())
}

/// Refuses an `-o` that does not end in `.mp4` (or `.m4v`/`.mov`, the same container): the
/// film is an MP4 whatever it is called, and a player trusts the name.
fn check_film_name(path: &Path) -> anyhow::Result<()> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("mp4" | "m4v" | "mov") => Ok(()),
        _ => anyhow::bail!("-o {}: the film is an MP4; give a name ending in .mp4, .m4v or .mov", path.display()),
    }
}

/// The film and the subtitle files saved beside it.
fn film_files(film: &Path) -> [PathBuf; 3] {
    [film.to_path_buf(), film.with_extension("srt"), film.with_extension("vtt")]
}

/// Refuses an `-o` that cannot take the film before any work starts: its folder missing, a
/// name no player reads as an MP4, or (unless `force`) a film or subtitle file there that
/// saving would replace, as `reelbox jobs get` refuses to.
pub(super) fn check_film_output(path: &Path, force: bool) -> anyhow::Result<()> {
    super::backend::check_output(path)?;
    check_film_name(path)?;
    if !force && let Some(there) = film_files(path).iter().find(|p| p.exists()) {
        anyhow::bail!("{} exists; give another -o FILE, or --force to replace it", there.display());
    }
    Ok(())
}

/// The film's name when no `-o` is given: the script's (`story.txt` → `story.mp4`, in this
/// folder), so each script keeps its own film; from standard input the first of `film.mp4`,
/// `film-2.mp4`, ... whose files are all free, so quick renders in a folder do not replace
/// each other.
fn default_film(script: &Path) -> PathBuf {
    let film = Path::new("film.mp4");
    if script.as_os_str() == "-" {
        return (1..)
            .map(|i| if i == 1 { film.to_path_buf() } else { super::backend::numbered(film, i) })
            .find(|p| film_files(p).iter().all(|f| !f.exists()))
            .unwrap_or_else(|| film.to_path_buf());
    }
    script.file_stem().map_or_else(|| film.to_path_buf(), |stem| Path::new(stem).with_extension("mp4"))
}

/// How the script is named in a message: its file, or standard input.
fn script_label(path: &Path) -> String {
    if path.as_os_str() == "-" { "the script from standard input".into() } else { path.display().to_string() }
}

/// Refuses an empty script in the user's words (the box's names its `script` field), before
/// a daemon is reached.
fn check_not_empty(path: &Path, script: &str) -> anyhow::Result<()> {
    if script.trim().is_empty() {
        anyhow::bail!("{} is empty: write what the film says in it (a paragraph a scene)", script_label(path));
    }
    Ok(())
}

/// Refuses a script longer than the box's `limits.max_prompt_chars` before it is uploaded
/// (a long one otherwise meets the body limit first, a second limit after it); a box too old
/// to say its limit checks the script itself.
async fn check_length(c: &Client, path: &Path, script: &str) -> anyhow::Result<()> {
    let label = script_label(path);
    // The box counts the script as it reads it: without its surrounding blank space.
    let script = script.trim();
    let max = c.get::<BrowserSession>("/api/v1/session").await.ok().map(|s| s.max_prompt_chars);
    let chars = script.chars().count();
    if let Some(max) = max.filter(|m| chars > *m) {
        anyhow::bail!(
            "{label} has {chars} characters; this box takes a script of at most {max} (limits.max_prompt_chars): \
             shorten it, or make it two films"
        );
    }
    Ok(())
}

/// The script from its file, or from standard input for `-`. A missing file whose name
/// reads like a sentence was meant as the script itself: say how to give one line (to the
/// daemon `hint` reaches).
fn read_script(path: &Path, hint: &Hint) -> anyhow::Result<String> {
    super::text_file::read(path, "script").map_err(|e| match e.downcast::<std::io::Error>() {
        Ok(e) if path.as_os_str() != "-" => {
            let text = path.display().to_string();
            if e.kind() == std::io::ErrorKind::NotFound && text.contains(' ') {
                anyhow!(
                    "cannot read the script file {text:?}: no such file. SCRIPT is a file; to film one line, \
                     `echo {text:?} | {}`",
                    hint.command("render - -o film.mp4")
                )
            } else {
                anyhow!("cannot read the script file {text}: {e}")
            }
        }
        Ok(e) => anyhow::Error::new(e).context("cannot read the script from standard input"),
        Err(e) => e,
    })
}

/// Runs `reelbox render`.
pub async fn run(g: &Global, a: RenderArgs) -> anyhow::Result<ExitCode> {
    let output = a.output.clone().unwrap_or_else(|| default_film(&a.script));
    check_film_output(&output, a.force)?;
    let script = read_script(&a.script, &g.hint)?;
    check_not_empty(&a.script, &script)?;
    let reach = Reach::new(g).await?;
    let c = &reach.client;
    let mut body = json!({"script": script, "upscale": a.upscale, "burn_subtitles": a.burn_subtitles});
    // Sent only for Markdown: a box from before it knew the field still takes plain scripts.
    if a.script_format.as_deref().unwrap_or_else(|| super::text_file::format_of(&a.script)) == "markdown" {
        body["script_format"] = json!("markdown");
    }
    for (k, v) in [
        ("profile", json!(a.profile)),
        ("preset", json!(a.preset)),
        ("model", json!(a.model)),
        ("width", json!(a.width)),
        ("height", json!(a.height)),
        ("fps", json!(a.fps)),
        ("layout", json!(a.layout)),
        ("seed", json!(a.seed)),
        ("voice", json!(a.voice)),
        ("style", json!(a.style)),
        ("lipsync_model", json!(a.lipsync_model)),
        ("upscale_model", json!(a.upscale_model)),
    ] {
        if !v.is_null() {
            body[k] = v;
        }
    }
    let result = async {
        check_length(c, &a.script, &script).await?;
        if let Some(m) = &a.music {
            body["music"] = json!(upload(c, m, "--music").await?.id);
        }
        render_with(c, g, body, &output).await
    }
    .await;
    reach.close().await;
    result.map(|_| ExitCode::SUCCESS).map_err(|e| g.typed.worded::<RenderArgs>(e))
}

/// The bundled demo inputs: script, presenter portrait and its face box.
pub(super) struct DemoInputs {
    pub(super) script: String,
    pub(super) portrait: PathBuf,
    pub(super) face_box: [u32; 4],
    pub(super) voice: String,
}

pub(super) fn demo_inputs() -> anyhow::Result<DemoInputs> {
    let dir = reelbox::models::share_dirs()
        .into_iter()
        .map(|d| d.join("assets/demo"))
        .find(|d| d.join("script.txt").is_file())
        .ok_or_else(|| anyhow!("the demo files (assets/demo/script.txt) are not installed; reinstall reelbox"))?;
    let profile: toml::Value = toml::from_str(&std::fs::read_to_string(dir.join("profile.toml"))?)
        .with_context(|| format!("{} is not valid", dir.join("profile.toml").display()))?;
    let n = |k: &str| profile["face_box"].get(k).and_then(|v| v.as_integer()).unwrap_or(0) as u32;
    Ok(DemoInputs {
        script: std::fs::read_to_string(dir.join("script.txt"))?,
        portrait: dir.join(profile.get("portrait").and_then(|v| v.as_str()).unwrap_or("portrait.png")),
        face_box: [n("x"), n("y"), n("w"), n("h")],
        voice: profile.get("voice").and_then(|v| v.as_str()).unwrap_or("en_US-joe-medium").to_string(),
    })
}

/// Models the demo needs in the models dir.
const DEMO_MODELS: [&str; 3] = ["demo-shapes", "demo-presenter", "demo-upscaler"];

fn needs_setup(config: &Config, voice: &str) -> bool {
    let models = config.models_dir();
    reelbox::engine::runtime::find(config, reelbox::config::env::ort_dylib_path()).is_err()
        || !models.join(voice).is_dir()
        || DEMO_MODELS.iter().any(|m| !models.join(m).is_dir())
}

/// Runs setup when the runtime, the demo voice or a demo model is missing.
pub(super) async fn setup_demo(config: &Config, inputs: &DemoInputs) -> anyhow::Result<()> {
    if needs_setup(config, &inputs.voice) {
        eprintln!("setting up: ONNX Runtime, system pieces and the default models (once)");
        let report = reelbox::setup::setup(config, &reelbox::setup::SetupOptions::default()).await?;
        if !report.complete() {
            eprintln!("setup is incomplete; `reelbox doctor` shows what is missing");
        }
    }
    Ok(())
}

/// The demo presenter's profile name; one per key, so a second demo reuses the first's.
const DEMO_PROFILE: &str = "demo presenter";

/// The demo presenter's profile id on the daemon: a new one, or the one an earlier demo
/// made (a key has one profile of a name), given this demo's voice and face box again.
async fn demo_profile(c: &Client, inputs: &DemoInputs) -> anyhow::Result<String> {
    let bytes = tokio::fs::read(&inputs.portrait)
        .await
        .with_context(|| format!("cannot read {}", inputs.portrait.display()))?;
    let form = Form::new()
        .text("name", DEMO_PROFILE)
        .text("voice", inputs.voice.clone())
        .text("face_box", face_box_text(inputs.face_box))
        .part("portrait", Part::bytes(bytes).file_name("portrait.png"));
    let create = c.request(Method::POST, "/api/v1/profiles").multipart(form);
    if let Some(made) = c.send_unless::<ProfileView>(create, StatusCode::CONFLICT).await? {
        return Ok(made.id);
    }
    let body = json!({"voice": inputs.voice, "face_box": inputs.face_box});
    let kept: ProfileView = c.send(c.request(Method::PATCH, &profile_path(DEMO_PROFILE)).json(&body)).await?;
    Ok(kept.id)
}

/// The demo render's body, with the demo presenter's profile (made or reused).
pub(super) async fn demo_request(c: &Client, inputs: &DemoInputs) -> anyhow::Result<Value> {
    let profile = demo_profile(c, inputs).await?;
    Ok(json!({"script": inputs.script, "profile": profile, "width": 256, "height": 256, "upscale": true,
              "model": "demo-shapes", "lipsync_model": "demo-presenter", "upscale_model": "demo-upscaler"}))
}

/// Whether `film` is one an earlier `reelbox demo` of `script` wrote: its `title` tag, which
/// the mux writes from the film's first sentence, is the demo script's. A file ffprobe cannot
/// read (not a film, or no ffprobe here) is not.
fn is_demo_film(film: &Path, script: &str) -> bool {
    // The demo's voice is English (joe).
    let english = reelbox::text::Language::of("en");
    let Some(want) = reelbox::pipelines::render::plan::plan(script, "", 0, english).title() else { return false };
    film.is_file() && reelbox::media::ffprobe::probe(film).is_ok_and(|info| info.title.as_deref() == Some(&*want))
}

/// Runs `reelbox demo`: setup when pieces are missing, then a render of the bundled script
/// with the bundled presenter on the installed (or bundled demo) models.
pub async fn demo(g: &Global, a: DemoArgs) -> anyhow::Result<ExitCode> {
    let inputs = demo_inputs()?;
    // README's first command is run again as it is: the film it wrote then (and its
    // subtitles) is replaced, and anything else there is kept as `render` keeps it.
    check_film_output(&a.output, a.force || is_demo_film(&a.output, &inputs.script))?;
    let config = Config::load(g.config.as_deref())?;
    // Set up here only what the daemon that renders will use: a login user beside the
    // packaged service cannot set up the service's data dir, and a daemon started with its
    // own `--data-dir` (or on another box) never sees this login's; that daemon pulls
    // what the demo lacks instead.
    let daemon = super::backend::daemon(g).await?;
    let why = match &daemon {
        Some(_) if reelbox::setup::owner::check_writable(&config.data_dir, "setup").is_err() => {
            Some(PullsThere::ServiceDir)
        }
        Some(c) if models_elsewhere(c, &config).await => Some(PullsThere::OtherDir),
        _ => None,
    };
    match (&daemon, why) {
        (Some(c), Some(why)) => {
            let needed: Vec<&str> = DEMO_MODELS.iter().copied().chain([inputs.voice.as_str()]).collect();
            pull_missing(g, c, &needed, why).await?;
        }
        _ => setup_demo(&config, &inputs).await?,
    }
    let reach = Reach::new(g).await?;
    let c = &reach.client;
    let result = async { render_with(c, g, demo_request(c, &inputs).await?, &a.output).await }.await;
    reach.close().await;
    result.map(|_| ExitCode::SUCCESS)
}

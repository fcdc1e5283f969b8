//! `reelbox models ...`: the configured models directory, managed from this machine
//! (list, pull, verify, rm, import, default). `list --json` prints what `GET /api/v1/models`
//! answers.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reelbox::api::models::{ModelList, catalog};
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::error_text::chain_text;
use reelbox::gpu::DeviceId;
use reelbox::kinds::model_import::check_loads;
use reelbox::models::{Catalog, Manifest, ModelKind, ModelStore};

use super::models_pull::{self, PullsThere};
use super::{Global, table};

/// `reelbox models ...`
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Installed and available models.
    List {
        /// Only models not installed yet, with their licence.
        #[arg(long)]
        available: bool,
    },
    /// Download and install a model (checked by sha256).
    Pull {
        /// A catalog name (`reelbox models list --available`) or a Piper voice as `piper:NAME`.
        name: String,
        /// Fetch again even when installed.
        #[arg(long)]
        force: bool,
        /// Accept the model's non-commercial licence (remembered; asked once per model).
        #[arg(long)]
        accept_license: bool,
    },
    /// Show the default model of each kind, or make NAME the default of KIND (what
    /// renders, `image`, `say`, OpenAI and ComfyUI requests use when they name none).
    Default {
        /// tts, diffusion, lipsync, upscale or face (embeddings have none).
        kind: Option<String>,
        /// An installed model of that kind.
        name: Option<String>,
    },
    /// Check installed files against their sha256s (all installed models without NAME).
    Verify { name: Option<String> },
    /// Work out A1111's hashes (`Model hash`, `Lora hashes`, sd-models' titles) of diffusion
    /// models imported before imports kept them, from the files they were made from, where
    /// those are unchanged (all such models without NAME; the daemon does it at start too).
    Hash { name: Option<String> },
    /// Remove an installed model (refused while the daemon's queued or running jobs name it;
    /// the profiles that name it are said, as their renders are refused once it is gone).
    Rm {
        /// The installed model's name (`reelbox models list`).
        name: String,
        /// Remove it even though queued or running jobs name it (they fail).
        #[arg(long)]
        force: bool,
    },
    /// Install a model you already have: convert a Stable Diffusion 1.x/2.x/SDXL single file
    /// or diffusers folder (LoRAs fused in with --lora), an upscaler or Wav2Lip checkpoint,
    /// or copy a Piper voice `.onnx` or a ready ONNX folder (README "Bring your own models").
    Import(super::models_import::ImportArgs),
}

/// `reelbox models` alone: the installed models.
impl Default for ModelsAction {
    fn default() -> Self {
        Self::List { available: false }
    }
}

/// Runs a `models` action.
pub async fn run(g: &Global, action: ModelsAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(g.config.as_deref())?;
    let store = ModelStore::new(&config);
    let writes = match &action {
        ModelsAction::Pull { name, .. } => Some(format!("pull {name}")),
        ModelsAction::Default { name: Some(_), .. } => Some("models default ...".to_string()),
        ModelsAction::Rm { name, .. } => Some(format!("models rm {name}")),
        ModelsAction::Import(_) => Some("models import ...".to_string()),
        ModelsAction::Hash { .. } => Some("models hash ...".to_string()),
        _ => None,
    };
    // A pull or removal is the daemon's when this login does not manage its models dir: one
    // probe of the daemon decides both cases below.
    let daemon = match action {
        ModelsAction::Pull { .. } | ModelsAction::Rm { .. } => super::backend::daemon(g).await.ok().flatten(),
        _ => None,
    };
    if let Some(client) = &daemon
        && models_pull::models_elsewhere(client, &config).await
    {
        // Done here, a pull would stay out of the renders' reach (the error that names the
        // model would send the user to pull it again, in a loop), a removal free nothing
        // the daemon holds.
        if let Some(done) = on_daemon(g, client, &action, PullsThere::OtherDir).await {
            return done;
        }
    }
    if let Some(command) = &writes
        && let Err(refused) = reelbox::setup::owner::check_writable(&config.models_dir(), command)
    {
        // A user's pull or removal on the packaged box: the service owns the dir, so it does it.
        if let Some(client) = &daemon
            && let Some(done) = on_daemon(g, client, &action, PullsThere::ServiceDir).await
        {
            return done;
        }
        if matches!(action, ModelsAction::Pull { .. }) {
            anyhow::bail!("{refused}; or start the service (`sudo systemctl start reelbox`), which pulls for you");
        }
        return Err(refused.into());
    }
    let result = actions(g, &config, &store, action).await;
    if writes.is_some() {
        // What root wrote into the service's models dir stays the service's to replace.
        reelbox::setup::owner::hand_back(&config)?;
    }
    result
}

/// A pull or removal done by daemon `client` (`why` it, not this process, writes the
/// models dir); `None` for any other action.
async fn on_daemon(
    g: &Global,
    client: &super::client::Client,
    action: &ModelsAction,
    why: PullsThere,
) -> Option<anyhow::Result<ExitCode>> {
    match action {
        ModelsAction::Pull { name, force, accept_license } => {
            Some(models_pull::through_daemon(g, client, name, *force, *accept_license, why).await)
        }
        ModelsAction::Rm { name, force } => Some(super::models_rm::on_daemon(g, client, name, *force).await),
        _ => None,
    }
}

async fn actions(g: &Global, config: &Config, store: &ModelStore, action: ModelsAction) -> anyhow::Result<ExitCode> {
    match action {
        ModelsAction::List { available } => list(g, config, available).await,
        ModelsAction::Pull { name, force, accept_license } => {
            if accept_license {
                store.accept_license(&name)?;
            }
            super::models_pull::pull(g, store, &name, force).await
        }
        ModelsAction::Default { kind, name } => default(g, config, store, kind.as_deref(), name.as_deref()),
        ModelsAction::Verify { name } => verify(g, config, store, name),
        ModelsAction::Hash { name } => super::models_hash::run(g, store, name.as_deref()),
        ModelsAction::Rm { name, force } => super::models_rm::here(g, config, store, &name, force).await,
        ModelsAction::Import(args) => super::models_import::run(g, config, args),
    }
}

fn parse_kind(what: &str, k: &str) -> anyhow::Result<ModelKind> {
    ModelKind::parse(k).with_context(|| format!("{what} {k:?} is not one of {}", ModelKind::names()))
}

fn default(
    g: &Global,
    config: &Config,
    store: &ModelStore,
    kind: Option<&str>,
    name: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if let (Some(k), Some(n)) = (kind, name) {
        let kind = store.set_default(parse_kind("KIND", k)?, n)?;
        if !g.json {
            println!("{n} is now the default {} model", kind.as_str());
        }
    } else if kind.is_some() {
        anyhow::bail!("name the model too: `reelbox models default KIND NAME`");
    }
    let catalog = Catalog::of(store);
    let kinds = [ModelKind::Diffusion, ModelKind::Tts, ModelKind::Lipsync, ModelKind::Upscale, ModelKind::Face];
    let rows: Vec<(ModelKind, Option<String>)> = kinds.iter().map(|k| (*k, catalog.default_name(*k, config))).collect();
    if g.json {
        let map: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, n)| (k.as_str().to_string(), serde_json::json!(n))).collect();
        println!("{}", serde_json::Value::Object(map));
    } else if name.is_none() {
        let rows: Vec<Vec<String>> =
            rows.into_iter().map(|(k, n)| vec![k.as_str().to_string(), n.unwrap_or_else(|| "-".into())]).collect();
        table::print(&["KIND", "DEFAULT"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(g: &Global, config: &Config, available: bool) -> anyhow::Result<ExitCode> {
    let daemon = super::backend::daemon(g).await.ok().flatten();
    let mut elsewhere = None;
    let mut list = catalog(config);
    if let Some(client) = &daemon {
        if models_pull::models_elsewhere(client, config).await {
            // What the renders can use is the daemon's dir, not this login's.
            match client.get::<ModelList>("/api/v1/models").await {
                Ok(theirs) => {
                    list = theirs;
                    elsewhere = Some(client.base().to_string());
                }
                Err(e) => eprintln!("the daemon's models are not shown: {}", chain_text(e.as_ref())),
            }
        } else {
            add_boxes(client, config, &mut list).await;
        }
    }
    if available {
        // What a pull here installs: a model only a box has names nothing to pull from.
        list.models.retain(|m| m.state == "not_installed" && m.origin != "box");
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if available {
        let rows: Vec<Vec<String>> = list
            .models
            .iter()
            .map(|m| {
                let source = m.sources.first().cloned().unwrap_or_default();
                let mut license = m.license.clone().unwrap_or_default();
                if m.noncommercial {
                    license.push_str(" (non-commercial)");
                }
                let cpu = if m.cpu { "yes" } else { "no (CUDA)" };
                vec![m.name.clone(), m.kind.clone(), human_bytes(m.size), license, cpu.into(), source]
            })
            .collect();
        table::print(&["NAME", "KIND", "SIZE", "LICENSE", "CPU", "SOURCE"], &rows);
        eprintln!("install one with `reelbox models pull NAME` (non-commercial licences: add --accept-license)");
        return Ok(ExitCode::SUCCESS);
    }
    // Where each model is, once a head's boxes have any: alone, every model is here.
    let with_boxes = list.models.iter().any(|m| !m.boxes.is_empty());
    // A1111's shorthash, once a model has one: a box of pulled models keeps its columns.
    let with_hashes = list.models.iter().any(|m| m.shorthash.is_some());
    let rows: Vec<Vec<String>> = list
        .models
        .iter()
        .map(|m| {
            let mut tags = Vec::new();
            if m.demo {
                tags.push("demo");
            }
            if m.test {
                tags.push("test");
            }
            if m.default {
                tags.push("default");
            }
            if !m.cpu {
                tags.push("cuda-only");
            }
            let on = m.path.is_some().then(|| "this box".to_string()).into_iter().chain(m.boxes.iter().cloned());
            let on = on.collect::<Vec<String>>().join(", ");
            let mut row = vec![
                m.name.clone(),
                m.kind.clone(),
                m.state.replace('_', " "),
                human_bytes(m.size),
                tags.join(","),
                m.fused.clone().unwrap_or_else(|| "-".into()),
                match (&m.imported_from, &m.path) {
                    // Told apart from a catalog model of a like name (`wav2lip_gan`, `wav2lip-gan`).
                    (Some(from), _) => format!("imported from {from}"),
                    (None, path) => path.clone().unwrap_or_else(|| m.sources.first().cloned().unwrap_or_default()),
                },
            ];
            if with_hashes {
                row.insert(4, m.shorthash.clone().unwrap_or_else(|| "-".into()));
            }
            if with_boxes {
                row.insert(3, if on.is_empty() { "-".into() } else { on });
            }
            row
        })
        .collect();
    let mut header = vec!["NAME", "KIND", "STATE", "SIZE", "TAGS", "BASE + LORAS", "PATH / SOURCE"];
    if with_hashes {
        header.insert(4, "HASH");
    }
    if with_boxes {
        header.insert(3, "ON");
    }
    table::print(&header, &rows);
    if let Some(url) = elsewhere {
        eprintln!(
            "models dir: {} (the daemon's at {url}; this login's, {}, is not the one it uses)",
            list.models_dir,
            config.models_dir().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("models dir: {}", list.models_dir);
    if std::fs::read_dir(&list.models_dir).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
        // The packaged service's 0750 dir seen from a login user: every model looks missing.
        eprintln!("this user cannot read it, so STATE is not what the service has: `sudo reelbox models list`");
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds what the daemon's list knows and this machine's models dir cannot: which live
/// worker boxes have each model, and the models only they have (a head's; nothing on a
/// single box, or when no daemon answers).
async fn add_boxes(client: &super::client::Client, config: &Config, list: &mut ModelList) {
    let theirs = match client.get::<ModelList>("/api/v1/models").await {
        Ok(theirs) => theirs,
        Err(e) => {
            if config.cluster.as_ref().is_some_and(|c| c.role == reelbox::config::ClusterRole::Head) {
                eprintln!("the worker boxes' models are not shown: {}", chain_text(e.as_ref()));
            }
            return;
        }
    };
    for boxed in theirs.models.into_iter().filter(|m| !m.boxes.is_empty()) {
        match list.models.iter_mut().find(|m| m.name == boxed.name && m.kind == boxed.kind) {
            Some(mine) => mine.boxes = boxed.boxes,
            None => list.models.push(boxed),
        }
    }
    list.models.sort_by(|a, b| a.name.cmp(&b.name));
}

fn verify(g: &Global, config: &Config, store: &ModelStore, name: Option<String>) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = match name {
        Some(n) => vec![n],
        None => store.list().into_iter().filter(|e| e.path.is_some()).map(|e| e.name).collect(),
    };
    let engine = Engine::new(config);
    // An imported model's sha256s are only those of what was imported, files that may never
    // have been a model of its kind (imports before they were loaded first): it is loaded
    // too. A pulled one matches the catalog's pinned files.
    let loads = |m: &Manifest, dir: &Path| {
        let imported = m.sources.is_empty();
        let failed = imported.then(|| check_loads(&engine, DeviceId::Cpu, m.kind, dir).err()).flatten();
        failed.map(|e| chain_text(&e))
    };
    let mut reports = Vec::new();
    for n in &names {
        reports.push(store.verify_with(n, loads)?);
    }
    if g.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        if reports.is_empty() {
            println!("no models installed");
        }
        for r in &reports {
            let state = match (r.ok, &r.unusable) {
                (true, _) => "ok     ",
                (false, Some(_)) => "BROKEN ",
                (false, None) => "DAMAGED",
            };
            println!("{state} {}", r.name);
            for f in r.files.iter().filter(|f| !f.ok) {
                println!("        {}: {}", f.path, f.problem.as_deref().unwrap_or("mismatch"));
            }
            if let Some(why) = &r.unusable {
                println!("        does not load: {why}");
            }
            if let Some(fix) = &r.fix {
                println!("        fix: {fix}");
            }
        }
    }
    let all_ok = reports.iter().all(|r| r.ok);
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `1.5 MB`-style sizes for tables (the library's, shared with the daemon's job logs).
pub(super) use reelbox::disk::human_bytes;

//! `reelbox models rm NAME` (and `reelbox rm`): removes an installed model from the models
//! dir here, or, beside a daemon whose models dir this login does not write (the packaged
//! service's) or does not share (`models_pull::models_elsewhere`: one started with its own
//! `--data-dir`, one on another box), as that daemon's `DELETE /api/v1/models/{name}`.
//! Either way a model a queued or running job runs stays unless `--force`, and the profiles
//! that name it are said.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::anyhow;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reelbox::api::model_rm::{ModelRemoved, ProfileNaming, profiles_naming};
use reelbox::api::views::ProfileView;
use reelbox::client::ClientError;
use reelbox::config::Config;
use reelbox::models::ModelStore;
use reqwest::{Method, StatusCode};

use super::Global;
use super::client::Client;

/// Removes `name` from this process's models dir.
pub async fn here(
    g: &Global,
    config: &Config,
    store: &ModelStore,
    name: &str,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let needed =
        if force || store.installed_manifest(name).is_none() { Vec::new() } else { jobs_naming(g, name).await };
    if !needed.is_empty() {
        return Err(in_use(g, name, &needed.join(", ")));
    }
    let removed = store.rm(name)?;
    let profiles = if removed { profiles_naming_here(g, config, name).await } else { Vec::new() };
    said(g, name, removed, &profiles)
}

/// Removes `name` from the models dir of the daemon `c`.
pub async fn on_daemon(g: &Global, c: &Client, name: &str, force: bool) -> anyhow::Result<ExitCode> {
    if !g.json {
        eprintln!(
            "reelbox: the daemon at {} keeps its models in a dir this login does not manage; it removes {name}",
            c.base()
        );
    }
    let path = format!("/api/v1/models/{}?force={force}", utf8_percent_encode(name, NON_ALPHANUMERIC));
    let e = match c.send::<ModelRemoved>(c.request(Method::DELETE, &path)).await {
        Ok(r) => return said(g, &r.name, true, &r.profiles),
        Err(e) => e,
    };
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Status { status: StatusCode::NOT_FOUND, .. }) => said(g, name, false, &[]),
        Some(ClientError::Status { status: StatusCode::CONFLICT, .. }) => {
            Err(anyhow!("{e}; from here: `reelbox models rm {name} --force`"))
        }
        Some(ClientError::Status { status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, .. }) => {
            Err(anyhow!("{e}; remove it with an admin key (REELBOX_KEY), or on the daemon's box as root"))
        }
        _ => Err(e),
    }
}

/// Ids of the daemon's queued and running jobs that run model `name` (their views'
/// `models`, as placement reads them; none when no daemon answers).
async fn jobs_naming(g: &Global, name: &str) -> Vec<String> {
    let Ok(client) = super::client::Client::new(g) else { return Vec::new() };
    if !client.answers(Duration::from_millis(500)).await {
        return Vec::new();
    }
    let mut ids = Vec::new();
    for state in ["queued", "running"] {
        let Ok(page) = client.get::<serde_json::Value>(&format!("/api/v1/jobs?state={state}&limit=500")).await else {
            continue;
        };
        for job in page["jobs"].as_array().into_iter().flatten() {
            if job["models"].as_array().is_some_and(|m| m.iter().any(|m| m == name))
                && let Some(id) = job["id"].as_str()
            {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

/// The profiles that name model `name`: the daemon's when one answers (those its key
/// sees), else those in the data dir's store, read here ([`reelbox::store::profiles_at_rest`],
/// which repairs a store a killed daemon left as the daemon's start would); none when neither
/// can be read, since the model is removed all the same: a process holds the store but does
/// not answer (said on stderr, so the user knows the list is missing, not empty), or this user
/// may not read it (the packaged service's).
async fn profiles_naming_here(g: &Global, config: &Config, name: &str) -> Vec<ProfileNaming> {
    if let Ok(client) = super::client::Client::new(g)
        && client.answers(Duration::from_millis(500)).await
    {
        let list: Vec<ProfileView> = client.get("/api/v1/profiles").await.unwrap_or_default();
        return profiles_naming(&list, name);
    }
    match reelbox::store::profiles_at_rest(&config.data_dir) {
        Ok(list) => {
            let views: Vec<ProfileView> = list.iter().map(ProfileView::from).collect();
            profiles_naming(&views, name)
        }
        Err(e @ reelbox::store::StoreError::InUse { .. }) => {
            eprintln!("note: {e}, which does not answer here: the profiles that name {name} are not said");
            Vec::new()
        }
        Err(e) => {
            tracing::debug!("the profiles naming {name} are not said: {e}");
            Vec::new()
        }
    }
}

/// The refusal of a removal that queued or running jobs `ids` would fail without.
fn in_use(g: &Global, name: &str, ids: &str) -> anyhow::Error {
    anyhow!(
        "{name} is needed by queued or running job(s) {ids}, which would fail without it; cancel them (`{}`) or \
         remove it anyway with `reelbox models rm {name} --force`",
        g.hint.command("jobs cancel ID")
    )
}

/// Prints what a removal did.
fn said(g: &Global, name: &str, removed: bool, profiles: &[ProfileNaming]) -> anyhow::Result<ExitCode> {
    if g.json {
        println!("{}", serde_json::json!({"name": name, "removed": removed, "profiles": profiles}));
    } else if removed {
        println!("removed {name}");
        for p in profiles {
            let flag = format!("--{}", p.field.replace('_', "-"));
            let fix = reelbox::jobs::model_fix(&g.hint.reelbox(), &p.name, &flag);
            println!("profile {:?} names it ({}): its renders are refused until {fix} names another", p.name, p.field);
        }
    } else {
        println!("{name} was not installed");
    }
    Ok(ExitCode::SUCCESS)
}

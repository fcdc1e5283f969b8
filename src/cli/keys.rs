//! `reelbox keys ...`: mirrors of the `/api/v1/keys` routes, plus `--offline` creation
//! straight into the database for a daemon that refuses to start without a key.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use reelbox::api::keys::{CreateKeyRequest, KeyView, build_key, key_view};
use reelbox::config::Config;
use reelbox::store::Store;
use reqwest::Method;

use super::client::Client;
use super::{Global, table};

/// `reelbox keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed once and only its hash is kept.
    Create {
        /// A name for people (`laptop`, `open-webui`).
        #[arg(long)]
        name: String,
        /// `client` (own jobs, artifacts and profiles only) or `admin` (everything).
        #[arg(long, default_value = "client", value_parser = ["client", "admin"])]
        scope: String,
        /// Quotas as `max_queued=N,gpu_seconds_per_day=N,max_storage_bytes=N` (repeatable).
        #[arg(long, value_delimiter = ',')]
        quota: Vec<String>,
        /// Write into the database directly instead of asking the daemon, which must be
        /// stopped (for the first key of a daemon that binds a LAN address).
        #[arg(long)]
        offline: bool,
    },
    /// List keys with their quotas and today's usage.
    List,
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

fn parse_quota(items: &[String], req: &mut CreateKeyRequest) -> anyhow::Result<()> {
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| anyhow!("--quota {item:?}: write it as NAME=NUMBER"))?;
        let n: u64 = v.trim().parse().with_context(|| format!("--quota {item:?}: {v:?} is not a whole number"))?;
        match k.trim() {
            "max_queued" => req.max_queued = Some(n),
            "gpu_seconds_per_day" => req.gpu_seconds_per_day = Some(n),
            "max_storage_bytes" => req.max_storage_bytes = Some(n),
            other => {
                return Err(anyhow!(
                    "--quota: unknown quota {other:?}; known: max_queued, gpu_seconds_per_day, max_storage_bytes"
                ));
            }
        }
    }
    Ok(())
}

/// Runs a `keys` action.
pub async fn run(g: &Global, action: KeysAction) -> anyhow::Result<ExitCode> {
    match action {
        KeysAction::Create { name, scope, quota, offline } => {
            let mut req = CreateKeyRequest {
                name,
                scope: Some(scope),
                max_queued: None,
                gpu_seconds_per_day: None,
                max_storage_bytes: None,
            };
            parse_quota(&quota, &mut req)?;
            let key = if offline {
                create_offline(g, &req).await?
            } else {
                Client::new(g)?.post("/api/v1/keys", &serde_json::to_value(&req)?).await?
            };
            if g.json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!("{}", key.key.as_deref().unwrap_or_default());
                eprintln!(
                    "created {} key {:?} (id {}); it is shown only now: store it, e.g. export REELBOX_KEY=...",
                    key.scope, key.name, key.id
                );
            }
        }
        KeysAction::List => {
            let keys: Vec<KeyView> = Client::new(g)?.get("/api/v1/keys").await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.id.clone(),
                            k.name.clone(),
                            k.scope.clone(),
                            format!("{}/{}", k.queued, opt(k.max_queued)),
                            format!("{}/{}", k.gpu_seconds_today, opt(k.gpu_seconds_per_day)),
                            format!("{}/{}", k.storage_bytes, opt(k.max_storage_bytes)),
                            k.revoked_at.clone().map(|t| format!("revoked {t}")).unwrap_or_else(|| "active".into()),
                        ]
                    })
                    .collect();
                table::print(&["ID", "NAME", "SCOPE", "QUEUED/MAX", "GPU-S TODAY/MAX", "BYTES/MAX", "STATE"], &rows);
            }
        }
        KeysAction::Revoke { id } => {
            let c = Client::new(g)?;
            let key: KeyView = c.send(c.request(Method::DELETE, &format!("/api/v1/keys/{id}"))).await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&key)?);
            } else {
                println!("revoked key {:?} ({})", key.name, key.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create_offline(g: &Global, req: &CreateKeyRequest) -> anyhow::Result<KeyView> {
    let config = Config::load(g.config.as_deref())?;
    reelbox::setup::owner::check_writable(&config.data_dir, "keys create --offline ...")?;
    let store = Store::open(&config.data_dir, true, 8).with_context(|| {
        format!("cannot open the database in {} (stop the daemon first, or drop --offline)", config.data_dir.display())
    })?;
    let result = async {
        let first = store.active_key_count()? == 0;
        let (key, secret) = build_key(&store, req, first).map_err(|e| anyhow!(e.message))?;
        let key = store.create_key(key, false).await?;
        Ok::<_, anyhow::Error>(key_view(&store, &key, Some(secret))?)
    }
    .await;
    store.close();
    // A database root made must stay the service's to open.
    reelbox::setup::owner::hand_back(&config)?;
    result
}

//! `reelbox keys ...`: mirrors of the `/api/v1/keys` routes, plus `--offline` creation
//! straight into the database for a daemon that refuses to start without a key.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use reelbox::api::keys::{CreateKeyRequest, KeyView, RevokedKeyView, build_key, by_whom, key_view};
use reelbox::config::Config;
use reelbox::store::Store;
use reqwest::Method;

use super::client::Client;
use super::models::human_bytes;
use super::{Global, table};

/// `reelbox keys ...`
#[derive(Debug, Default, Subcommand)]
pub enum KeysAction {
    /// Create a key; it is printed once and only its hash is kept.
    Create {
        /// A name for people (`laptop`, `open-webui`).
        #[arg(value_name = "NAME", required_unless_present = "name_flag", conflicts_with = "name_flag")]
        name: Option<String>,
        /// The same name as a flag (`--name laptop`), as earlier versions took it.
        #[arg(long = "name", id = "name_flag", value_name = "NAME")]
        name_flag: Option<String>,
        /// `client` (own jobs, artifacts and profiles only) or `admin` (everything).
        #[arg(long, default_value = "client", value_parser = ["client", "admin"])]
        scope: String,
        /// Quotas as `max_queued=N,gpu_seconds_per_day=N,max_storage_bytes=N` (repeatable;
        /// the storage also as a size: `max_storage_bytes=2GB`, `500MB`, `1.5GiB`).
        #[arg(long, value_delimiter = ',')]
        quota: Vec<String>,
        /// Write into the database directly instead of asking the daemon, which must be
        /// stopped (for the first key of a daemon that binds a LAN address).
        #[arg(long)]
        offline: bool,
    },
    /// List keys with their quotas and today's usage.
    #[default]
    List,
    /// Revoke a key; it stops working at once.
    Revoke {
        /// The key's id, or its name when no other active key has it (`keys list` shows both).
        id: String,
    },
}

fn parse_quota(items: &[String], req: &mut CreateKeyRequest) -> anyhow::Result<()> {
    for item in items.iter().filter(|i| !i.trim().is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| anyhow!("--quota {item:?}: write it as NAME=NUMBER"))?;
        let whole = || -> anyhow::Result<u64> {
            v.trim().parse().with_context(|| format!("--quota {item:?}: {v:?} is not a whole number"))
        };
        match k.trim() {
            "max_queued" => req.max_queued = Some(whole()?),
            "gpu_seconds_per_day" => req.gpu_seconds_per_day = Some(whole()?),
            "max_storage_bytes" => {
                req.max_storage_bytes = Some(parse_size(v).with_context(|| format!("--quota {item:?}"))?);
            }
            other => {
                return Err(anyhow!(
                    "--quota: unknown quota {other:?}; known: max_queued, gpu_seconds_per_day, max_storage_bytes"
                ));
            }
        }
    }
    Ok(())
}

/// A size as people write it: `500000000`, `500MB`, `2 GB`, `1.5G`, `512MiB` (decimal units
/// as `keys list` prints them, and binary ones).
fn parse_size(raw: &str) -> anyhow::Result<u64> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(anyhow!("unknown unit {other:?}; write bytes, or a size like 500MB, 2GB, 1.5GiB")),
    };
    let n: f64 =
        number.parse().map_err(|_| anyhow!("{raw:?} is not a size; write bytes, or a size like 500MB, 2GB"))?;
    let bytes = n * factor as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(anyhow!("{raw:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// One row of `keys list`: usage against each quota, sizes and times in units people read.
fn row(k: &KeyView) -> Vec<String> {
    let opt = |v: Option<u64>, f: fn(u64) -> String| v.map_or_else(|| "-".to_string(), f);
    let mut gpu = format!("{}/{}", k.gpu_seconds_today, opt(k.gpu_seconds_per_day, |n| n.to_string()));
    if k.gpu_seconds_reserved > 0 {
        gpu.push_str(&format!(" +{} reserved", k.gpu_seconds_reserved));
    }
    vec![
        k.id.clone(),
        k.name.clone(),
        k.scope.clone(),
        format!("{}/{}", k.queued, opt(k.max_queued, |n| n.to_string())),
        gpu,
        format!("{}/{}", human_bytes(k.storage_bytes), opt(k.max_storage_bytes, human_bytes)),
        k.revoked_at
            .as_ref()
            .map(|t| format!("revoked {t}{}", by_whom(k.revoked_by.as_deref())))
            .unwrap_or_else(|| "active".into()),
    ]
}

/// What `keys revoke` did, in a line: revoked now or before (and when), and the jobs it
/// canceled.
fn revoked_line(r: &RevokedKeyView) -> String {
    let k = &r.key;
    let head = if r.already_revoked {
        let at = k.revoked_at.as_deref().unwrap_or("?");
        format!("key {:?} ({}) was already revoked at {at}{}", k.name, k.id, by_whom(k.revoked_by.as_deref()))
    } else {
        format!("revoked key {:?} ({})", k.name, k.id)
    };
    match (r.canceled_jobs, r.already_revoked) {
        (0, true) => format!("{head}; nothing changed"),
        (0, false) => format!("{head}; it had no queued or running jobs"),
        (n, _) => format!("{head}; canceled {n} of its jobs"),
    }
}

/// Runs a `keys` action.
pub async fn run(g: &Global, action: KeysAction) -> anyhow::Result<ExitCode> {
    match action {
        KeysAction::Create { name, name_flag, scope, quota, offline } => {
            let mut req = CreateKeyRequest {
                // clap requires exactly one of the two.
                name: name.or(name_flag).unwrap_or_default(),
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
                    "created {} key {:?} (id {}); it is shown only now: store it, e.g. export REELBOX_KEY=...\n\
                     now that the box has a key, every reelbox command needs one, on the box itself too \
                     (REELBOX_KEY or --key)",
                    key.scope, key.name, key.id
                );
            }
        }
        KeysAction::List => {
            let keys: Vec<KeyView> = Client::new(g)?.get("/api/v1/keys").await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                let rows: Vec<Vec<String>> = keys.iter().map(row).collect();
                table::print(
                    &["ID", "NAME", "SCOPE", "QUEUED/MAX", "GPU-S TODAY (UTC)/MAX", "STORAGE/MAX", "STATE"],
                    &rows,
                );
            }
        }
        KeysAction::Revoke { id } => {
            let c = Client::new(g)?;
            let revoked: RevokedKeyView = c.send(c.request(Method::DELETE, &format!("/api/v1/keys/{id}"))).await?;
            if g.json {
                println!("{}", serde_json::to_string_pretty(&revoked)?);
            } else {
                println!("{}", revoked_line(&revoked));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_quotas_take_sizes_as_people_write_them() {
        assert_eq!(parse_size("500000000").expect("bytes"), 500_000_000);
        assert_eq!(parse_size("2GB").expect("GB"), 2_000_000_000);
        assert_eq!(parse_size("1.5 g").expect("g"), 1_500_000_000);
        assert_eq!(parse_size("512MiB").expect("MiB"), 512 << 20);
        assert!(parse_size("2 GiBs").expect_err("unit").to_string().contains("unknown unit"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn a_revoke_says_what_it_stopped_and_a_second_one_when_the_first_was() {
        let view = |already: bool, canceled: u64| -> RevokedKeyView {
            serde_json::from_value(serde_json::json!({
                "id": "01K", "name": "kid", "scope": "client", "max_queued": null, "gpu_seconds_per_day": null,
                "created_at": "t0", "revoked_at": "2026-12-05T15:22:26.000Z", "queued": 0, "gpu_seconds_today": 0,
                "already_revoked": already, "canceled_jobs": canceled, "revoked_by": "key \"mum\""
            }))
            .expect("view")
        };
        assert_eq!(revoked_line(&view(false, 3)), "revoked key \"kid\" (01K); canceled 3 of its jobs");
        assert_eq!(revoked_line(&view(false, 0)), "revoked key \"kid\" (01K); it had no queued or running jobs");
        assert_eq!(
            revoked_line(&view(true, 0)),
            "key \"kid\" (01K) was already revoked at 2026-12-05T15:22:26.000Z by key \"mum\"; nothing changed"
        );
    }

    #[test]
    fn the_list_shows_sizes_and_reserved_seconds_readably() {
        let k: KeyView = serde_json::from_value(serde_json::json!({
            "id": "01", "name": "kid", "scope": "client", "max_queued": 2, "gpu_seconds_per_day": 600,
            "max_storage_bytes": 1_000_000_000u64, "storage_bytes": 12_655, "created_at": "t", "revoked_at": null,
            "queued": 1, "gpu_seconds_today": 10, "gpu_seconds_reserved": 30
        }))
        .expect("view");
        let r = row(&k);
        assert_eq!(r[4], "10/600 +30 reserved");
        assert_eq!(r[5], "12.7 kB/1.0 GB");
        assert_eq!(r[6], "active");
        let revoked = KeyView { revoked_at: Some("T".into()), revoked_by: Some("key \"mum\"".into()), ..k };
        assert_eq!(row(&revoked)[6], "revoked T by key \"mum\"");
    }
}

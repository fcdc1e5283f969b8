//! `reelbox cluster status`: the worker boxes as their heartbeats describe them, asked of
//! the head's API (`GET /api/v1/cluster`, with the URL and key every command uses), or
//! with `--nats` read straight from the NATS server's heartbeat bucket (for a box that can
//! reach NATS with the `[cluster]` credentials but not the head). `reelbox cluster
//! nats-config` writes a nats-server configuration with one nkey user per box.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reelbox::cluster::Bus;
use reelbox::cluster::permissions::{self, BoxUser};
use reelbox::cluster::protocol::Advert;
use reelbox::cluster::sweep::{self, BoxBucket};
use reelbox::config::Config;

use super::Global;
use super::client::Client;

/// `reelbox cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Boxes, their devices, free GPU memory, running stages and last heartbeat.
    Status {
        /// Read the heartbeats from this NATS server instead of asking the head's API, with
        /// `[cluster]`'s credentials and TLS files (a box's own per-box user may not).
        #[arg(long)]
        nats: Option<String>,
    },
    /// Writes a nats-server config with one user per box (plus the head), each allowed only
    /// its own subjects; prints each box's nkey seed once.
    NatsConfig {
        /// Worker box names, comma-separated (`w1,w2`).
        #[arg(long, value_delimiter = ',', required_unless_present = "remove")]
        boxes: Vec<String>,
        /// Takes these boxes' users out of the `--add-to` (`--file`) config instead, comma-separated:
        /// every other user stays byte for byte; the server then refuses their seeds.
        #[arg(long, value_delimiter = ',', requires = "add_to", conflicts_with_all = ["boxes", "head", "store_dir"])]
        remove: Vec<String>,
        /// The head's box name (default `head`).
        #[arg(long, conflicts_with = "add_to")]
        head: Option<String>,
        /// Where to write the config (standard output when absent; the seeds then go to
        /// standard error).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// JetStream's storage dir, written into the config (`jetstream { store_dir }`)
        /// so that `nats-server --signal reload` can apply a later `--add-to`; then start the
        /// server without `-sd`.
        #[arg(long, conflicts_with = "add_to")]
        store_dir: Option<String>,
        /// Adds the boxes to this config (one `nats-config` wrote) instead of making a new
        /// one (or with `--remove`, takes boxes out of it): users already there keep their
        /// keys and seeds; the file is rewritten in place (the old one kept as FILE.bak)
        /// unless `--out` names another.
        #[arg(long, visible_alias = "file")]
        add_to: Option<std::path::PathBuf>,
    },
}

/// `GET /api/v1/cluster` as this command reads it: the boxes in the cluster's own form.
/// `--json` prints it back whole, so the output is the API's answer (as `models list
/// --json` is), the same whether it came from the head or straight from NATS.
#[derive(serde::Deserialize, serde::Serialize)]
struct ClusterView {
    heartbeat_ttl_s: u64,
    now_ms: i64,
    boxes: Vec<Advert>,
    /// Absent from an older head.
    #[serde(default)]
    buckets: Vec<BoxBucket>,
}

/// Runs a `cluster` subcommand.
pub async fn run(g: &Global, action: ClusterAction) -> anyhow::Result<ExitCode> {
    let nats = match action {
        ClusterAction::Status { nats } => nats,
        ClusterAction::NatsConfig { remove, add_to: Some(file), out, .. } if !remove.is_empty() => {
            return remove_boxes(&remove, &file, out.as_deref())?.print(g.json);
        }
        ClusterAction::NatsConfig { boxes, add_to: Some(file), out, .. } => {
            return add_boxes(&boxes, &file, out.as_deref())?.print(g.json);
        }
        ClusterAction::NatsConfig { boxes, head, out, store_dir, add_to: None, .. } => {
            let head = head.as_deref().unwrap_or("head");
            return nats_config(&boxes, head, store_dir.as_deref(), out.as_deref())?.print(g.json);
        }
    };
    let view = match nats {
        Some(url) => from_nats(g, url).await?,
        None => from_head(g).await?,
    };
    if g.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    let ClusterView { heartbeat_ttl_s, now_ms: now, boxes, buckets } = view;
    if boxes.is_empty() {
        println!("no worker boxes (none sent a heartbeat within {heartbeat_ttl_s} s)");
    }
    let mut rows = Vec::new();
    for b in &boxes {
        for d in &b.devices {
            let running: Vec<String> = b
                .running
                .iter()
                .filter(|r| r.device == d.device)
                .map(|r| format!("{} {}", r.key.job, r.stage))
                .collect();
            let opt = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
            rows.push(vec![
                b.host.clone(),
                format!("{}/{}", b.host, d.device),
                d.name.clone(),
                d.slots.to_string(),
                opt(d.free_mib),
                opt(d.total_mib),
                d.util.map_or_else(|| "-".into(), |u| format!("{u}%")),
                if running.is_empty() { "-".into() } else { running.join(", ") },
                format!("{:.1}s ago", (now - b.at_ms) as f64 / 1000.0),
            ]);
        }
    }
    if !rows.is_empty() {
        super::table::print(
            &["BOX", "DEVICE", "NAME", "SLOTS", "FREE MIB", "TOTAL MIB", "UTIL", "RUNNING", "HEARTBEAT"],
            &rows,
        );
    }
    for b in &boxes {
        println!(
            "{}: reelbox {}, models: {}",
            b.host,
            b.version,
            if b.models.is_empty() { "-".into() } else { b.models.join(", ") }
        );
        if let Some(why) = &b.disk_low {
            println!("{}: takes no new stages: {why}", b.host);
        }
    }
    print_buckets(&buckets, &boxes);
    Ok(ExitCode::SUCCESS)
}

/// Each box's artifact bucket: objects piling up there (a box gone, a head that never came
/// back for its results) show here before they fill the NATS server's disk.
fn print_buckets(buckets: &[BoxBucket], boxes: &[Advert]) {
    if buckets.is_empty() {
        return;
    }
    println!("\nartifact buckets on the NATS server (stage inputs and outputs in transit):");
    let rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|b| {
            let alive = boxes.iter().any(|a| a.host == b.host);
            vec![
                b.host.clone(),
                reelbox::cluster::protocol::object_bucket(&b.host),
                b.objects.to_string(),
                super::models::human_bytes(b.bytes),
                if alive { "alive".into() } else { "gone".into() },
            ]
        })
        .collect();
    super::table::print(&["BOX", "BUCKET", "OBJECTS", "SIZE", "BOX STATE"], &rows);
    if rows.iter().any(|r| r[4] == "gone") {
        println!(
            "the head deletes what a gone box left on the NATS server (bucket, work consumer, heartbeat key) \
             after [cluster] forget_box_after_h hours without its heartbeat"
        );
    }
}

/// `reelbox cluster nats-config`: a fresh nkey per box, the server config with their
/// public keys, and the seeds (secret) printed once as `[cluster]` lines.
fn nats_config(
    boxes: &[String],
    head: &str,
    store_dir: Option<&str>,
    out: Option<&std::path::Path>,
) -> anyhow::Result<Told> {
    reelbox::config::cluster::check_name(head).context("--head")?;
    let mut names = vec![head.to_string()];
    names.extend(box_names(boxes, &names, "is the head's name")?);
    let (users, mut told) = new_users(&names)?;
    let text = permissions::server_config(&users[0], &users[1..], store_dir);
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            let sd = if store_dir.is_some() { "" } else { " -sd DIR" };
            told.notes.push(format!("wrote {} (start: nats-server -c {}{sd})", path.display(), path.display()));
            told.file = Some(path.to_path_buf());
        }
        None => told.config = Some(text),
    }
    Ok(told)
}

/// What a `nats-config` run tells: notes, then the seeds (on standard error when the config
/// itself goes to standard output); with `--json` one object with the same parts.
#[derive(Default, serde::Serialize)]
struct Told {
    /// The config file written, if any.
    file: Option<std::path::PathBuf>,
    /// The config's text, when no file was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<String>,
    /// What was done and how to apply it, a line each.
    notes: Vec<String>,
    /// Each new user's nkey seed (secret, shown once), by name.
    seeds: std::collections::BTreeMap<String, String>,
    /// Names in the order they were given, for the text form.
    #[serde(skip)]
    order: Vec<String>,
}

impl Told {
    /// Prints it as text or JSON.
    fn print(self, json: bool) -> anyhow::Result<ExitCode> {
        if json {
            println!("{}", serde_json::to_string_pretty(&self)?);
            return Ok(ExitCode::SUCCESS);
        }
        for note in &self.notes {
            println!("{note}");
        }
        if self.seeds.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        let mut seeds = String::from("nkey seeds, shown once: put each line's `nkey = ...` under its box's [cluster]");
        for name in &self.order {
            seeds.push_str(&format!("\n{name}: nkey = {:?}", self.seeds[name]));
        }
        match &self.config {
            Some(text) => {
                print!("{text}");
                eprintln!("{seeds}");
            }
            None => println!("{seeds}"),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A fresh nkey per name: the users, and a [`Told`] with their seeds.
fn new_users(names: &[String]) -> anyhow::Result<(Vec<BoxUser>, Told)> {
    let mut users = Vec::new();
    let mut told = Told { order: names.to_vec(), ..Default::default() };
    for name in names {
        let key = nkeys::KeyPair::new_user();
        told.seeds.insert(name.clone(), key.seed().context("cannot encode an nkey seed")?);
        users.push(BoxUser { name: name.clone(), public_key: key.public_key() });
    }
    Ok((users, told))
}

/// `--boxes` names, trimmed and checked: each valid, each once, none of `taken` (`why` says
/// what a taken one is).
fn box_names(boxes: &[String], taken: &[String], why: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for name in boxes.iter().map(|b| b.trim()) {
        reelbox::config::cluster::check_name(name).context("--boxes")?;
        anyhow::ensure!(!taken.iter().any(|t| t == name), "--boxes: {name:?} {why}");
        anyhow::ensure!(!names.iter().any(|n| n == name), "--boxes: {name:?} is named twice");
        names.push(name.to_string());
    }
    Ok(names)
}

/// The text of a config `nats-config` wrote (`--add-to FILE`) and its users.
fn read_server_config(file: &std::path::Path) -> anyhow::Result<(String, permissions::ServerUsers)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--add-to: cannot read {}", file.display()))?;
    let found = permissions::read_users(&text).with_context(|| format!("--add-to {}", file.display()))?;
    Ok((text, found))
}

/// `nats-config --add-to FILE`: the new boxes appended to FILE's users, whose keys stay
/// (an older reelbox's box rights are rewritten, said per box); seeds only for the new.
fn add_boxes(boxes: &[String], file: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<Told> {
    let (old, found) = read_server_config(file)?;
    let there: Vec<String> = found.users.iter().map(|u| u.user.name.clone()).collect();
    let names = box_names(boxes, &there, &format!("is already in {} (its seed stays valid)", file.display()))?;
    let (users, mut told) = new_users(&names)?;
    let (text, upgraded) = permissions::extend_config(&found, &users);
    let dest = write_config(file, out, &old, text, &mut told)?;
    let kept: Vec<&str> = found.users.iter().map(|u| u.user.name.as_str()).collect();
    told.notes.push(format!(
        "wrote {}: added {}; kept {} with their keys",
        dest.display(),
        names.join(", "),
        kept.join(", ")
    ));
    for u in &upgraded {
        let why = if u.shared_bucket {
            "its rights were an older reelbox's (one artifact bucket shared by all boxes)"
        } else {
            "its rights differed from this reelbox's (an older reelbox's, or edited by hand)"
        };
        told.notes.push(format!(
            "{}: {why}; rewrote them to this reelbox's (its own bucket {}); its key and seed stay",
            u.name,
            reelbox::cluster::protocol::object_bucket(&u.name)
        ));
    }
    told.notes.push(apply_hint(&found).to_string());
    told.file = Some(dest);
    Ok(told)
}

/// `nats-config --remove NAMES --add-to FILE`: those boxes' users taken out of FILE, every
/// other user byte for byte as it was. An unknown name or the head's own user is refused.
fn remove_boxes(remove: &[String], file: &std::path::Path, out: Option<&std::path::Path>) -> anyhow::Result<Told> {
    let (old, found) = read_server_config(file)?;
    let boxes: Vec<&str> = found.users.iter().filter(|u| !u.head).map(|u| u.user.name.as_str()).collect();
    let mut names: Vec<String> = Vec::new();
    for name in remove.iter().map(|b| b.trim()) {
        if found.users.iter().any(|u| u.head && u.user.name == name) {
            anyhow::bail!("--remove: {name:?} is the head's own user in {}; it cannot be removed", file.display());
        }
        anyhow::ensure!(
            boxes.contains(&name),
            "--remove: no box {name:?} in {} (its boxes: {})",
            file.display(),
            if boxes.is_empty() { "none".to_string() } else { boxes.join(", ") }
        );
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    let text = permissions::remove_users(&found, &names);
    let mut told = Told::default();
    let dest = write_config(file, out, &old, text, &mut told)?;
    let kept: Vec<&str> = boxes.iter().copied().filter(|b| !names.iter().any(|n| n == b)).collect();
    let kept = if kept.is_empty() { "no box".to_string() } else { kept.join(", ") };
    told.notes.push(format!(
        "wrote {}: removed {}; kept the head and {kept} as they were",
        dest.display(),
        names.join(", ")
    ));
    told.notes.push(apply_hint(&found).to_string());
    told.notes.push(format!(
        "once it is applied the server refuses {}'s seed and closes its connection; the head deletes its artifact \
         bucket, work consumer and heartbeat after [cluster] forget_box_after_h",
        names.join(", ")
    ));
    told.file = Some(dest);
    Ok(told)
}

/// Writes a changed config: over `file` (the old text kept as FILE.bak) unless `out` names
/// another, atomically, so a crash leaves the old config or the new one. Where it went.
fn write_config(
    file: &std::path::Path,
    out: Option<&std::path::Path>,
    old: &str,
    text: String,
    told: &mut Told,
) -> anyhow::Result<std::path::PathBuf> {
    let dest = out.unwrap_or(file);
    if dest == file {
        let backup = with_suffix(file, ".bak");
        std::fs::write(&backup, old).with_context(|| format!("cannot write {}", backup.display()))?;
        told.notes.push(format!("kept the old config as {}", backup.display()));
    }
    reelbox::models::write_atomic(dest, text.as_bytes())?;
    Ok(dest.to_path_buf())
}

/// How to make the server use a changed config: a reload works only when the file names
/// its store dir (nats-server refuses to reload a server started with `-sd`).
fn apply_hint(found: &permissions::ServerUsers) -> &'static str {
    if found.names_store_dir() {
        "apply it: `nats-server --signal reload` (the file names its store_dir), or restart nats-server"
    } else {
        "apply it: restart nats-server (running boxes reconnect by themselves); `nats-server --signal reload` \
         would be refused: this file does not name its store_dir (add `jetstream { store_dir: DIR }` and start \
         the server without -sd to reload later)"
    }
}

/// `path` with `suffix` appended to its file name (`nats.conf` → `nats.conf.bak`).
fn with_suffix(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// The boxes as the head's API lists them. On a worker box's config nothing serves the API
/// at this box's own address (a worker has none): the way to the head is said instead of
/// the advice to start `reelbox serve` here.
async fn from_head(g: &Global) -> anyhow::Result<ClusterView> {
    let client = Client::new(g)?;
    let err = match client.get::<ClusterView>("/api/v1/cluster").await {
        Ok(view) => return Ok(view),
        Err(e) => e,
    };
    let on_worker = || {
        Config::load(g.config.as_deref())
            .ok()
            .and_then(|c| c.cluster)
            .is_some_and(|c| matches!(c.role, reelbox::config::ClusterRole::Worker))
    };
    if super::client::no_answer(&err) && reelbox::client::is_this_machine(client.base()) && on_worker() {
        anyhow::bail!(
            "nothing answers at {}: this box is a worker box ([cluster] role = \"worker\"), which serves no \
             API; pass the head's address with --url (e.g. --url http://HEAD:8470), or read the heartbeats \
             from NATS with --nats URL and credentials that may read every box's",
            client.base()
        );
    }
    Err(err)
}

/// The boxes from the NATS heartbeat bucket, with `[cluster]`'s credentials and TLS.
async fn from_nats(g: &Global, url: String) -> anyhow::Result<ClusterView> {
    let mut cluster = Config::load(g.config.as_deref())?.cluster.unwrap_or_default();
    cluster.nats_url = url;
    if let Err(e) = cluster.check() {
        // Name the flag the user typed when it is what is wrong, not the config key.
        anyhow::ensure!(e.key != "nats_url", "--nats: {}", e.reason);
        return Err(e).context("invalid [cluster] settings (its credentials and TLS files are used with --nats)");
    }
    let bus = tokio::time::timeout(std::time::Duration::from_secs(15), Bus::join(&cluster, "reelbox cluster status"))
        .await
        .with_context(|| {
            format!("no answer from NATS at {}, or the head has not made the cluster's streams there", cluster.nats_url)
        })??;
    let boxes = bus.adverts().await.with_context(|| {
        format!(
            "cannot read the heartbeat bucket at {}; on a server with per-box users (`reelbox cluster \
             nats-config`) a box's own user may not read the others' heartbeats: use the head's nkey \
             (--config with the head's [cluster]), or leave out --nats to ask the head's API",
            cluster.nats_url
        )
    })?;
    // Empty for a box's own user, which may not list streams.
    let buckets =
        tokio::time::timeout(std::time::Duration::from_secs(10), sweep::buckets(&bus)).await.unwrap_or_default();
    Ok(ClusterView { heartbeat_ttl_s: cluster.heartbeat_ttl_s, now_ms: reelbox::time::now_ms(), boxes, buckets })
}

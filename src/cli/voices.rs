//! `reelbox voices ...`: every Piper voice of `rhasspy/piper-voices` (its `voices.json`,
//! cached in the models dir), with whether it is installed; `reelbox pull piper:NAME`
//! installs one. Offline, before the index was ever fetched, the installed voices are
//! listed from their own manifests and configs, with a line saying why the rest is not; a
//! `--refresh` that cannot reach the hub lists the cached index and says so.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Subcommand;
use reelbox::config::Config;
use reelbox::error_text::chain_text;
use reelbox::models::ModelStore;
use reelbox::models::piper::{PiperError, PiperVoice};

use super::{Global, table};

/// `reelbox voices ...`
#[derive(Debug, Subcommand)]
pub enum VoicesAction {
    /// Piper voices by name, language, quality, size and speakers.
    List {
        /// Only voices of this language (`de`, `de_DE`).
        #[arg(long)]
        lang: Option<String>,
        /// Fetch the voice index again instead of reading the cached copy.
        #[arg(long)]
        refresh: bool,
    },
}

/// `reelbox voices` alone: every voice.
impl Default for VoicesAction {
    fn default() -> Self {
        Self::List { lang: None, refresh: false }
    }
}

/// Runs a `voices` action.
pub async fn run(g: &Global, action: VoicesAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(g.config.as_deref())?;
    let store = ModelStore::new(&config);
    match action {
        VoicesAction::List { lang, refresh } => list(g, &store, lang.as_deref(), refresh).await,
    }
}

/// What a list shows besides the index itself.
enum Unfetched {
    /// The index could not be fetched: only the installed voices, and why.
    OnlyInstalled(String),
    /// `--refresh` could not fetch it: the cached copy, and why it was not refreshed.
    Cached(String),
}

/// The voices to list: the index, or when it cannot be fetched the cached copy (after a
/// failed `--refresh`) or else the installed voices, and why. Nothing to list at all is the
/// fetch's error.
async fn voices(
    store: &ModelStore,
    refresh: bool,
) -> anyhow::Result<(BTreeMap<String, PiperVoice>, Option<Unfetched>)> {
    match store.piper_voices(refresh).await {
        Ok(index) => Ok((index, None)),
        Err(PiperError::Fetch(e)) => {
            if let Some((cached, fetched)) = store.cached_piper_index() {
                let when = fetched.map_or_else(String::new, |t| {
                    format!(" fetched {}", chrono::DateTime::<chrono::Local>::from(t).format("%Y-%m-%d %H:%M"))
                });
                let note = format!(
                    "the voice index could not be refreshed ({}); listed from the copy{when} (the index is pinned to {}, so it is the same list)",
                    e.reason(),
                    reelbox::models::piper::REVISION
                );
                return Ok((cached, Some(Unfetched::Cached(note))));
            }
            let installed = store.installed_piper_voices();
            if installed.is_empty() {
                return Err(anyhow!(
                    "{}; no Piper voice is installed here to list instead",
                    chain_text(&PiperError::Fetch(e))
                ));
            }
            // The hub's own sentence (`cannot reach HOST (cause): …`) without the URL again.
            let note = format!(
                "the full list ({}@{} voices.json) could not be fetched: {}; `reelbox voices list --refresh` \
                 fetches it when this box is online",
                reelbox::models::piper::REPO,
                reelbox::models::piper::REVISION,
                e.reason()
            );
            Ok((installed, Some(Unfetched::OnlyInstalled(note))))
        }
        Err(e) => Err(e.into()),
    }
}

impl Unfetched {
    /// The line under the list.
    fn line(&self) -> String {
        match self {
            Self::OnlyInstalled(note) => format!("only installed voices are listed: {note}"),
            Self::Cached(note) => note.clone(),
        }
    }
}

/// `reelbox voices list`: a table, or with `--json` the same rows as JSON.
async fn list(g: &Global, store: &ModelStore, lang: Option<&str>, refresh: bool) -> anyhow::Result<ExitCode> {
    let (voices, unfetched) = voices(store, refresh).await?;
    let shown: Vec<&PiperVoice> = voices.values().filter(|v| lang.is_none_or(|l| v.speaks(l))).collect();
    if shown.is_empty()
        && let Some(l) = lang
    {
        let mut langs: Vec<&str> = voices.values().map(|v| v.language.family.as_str()).collect();
        langs.dedup();
        match &unfetched {
            Some(Unfetched::OnlyInstalled(note)) => {
                anyhow::bail!(
                    "--lang {l}: no installed Piper voice speaks it (installed: {}), and {note}",
                    langs.join(", ")
                )
            }
            _ => anyhow::bail!("--lang {l}: no Piper voice speaks it; languages: {}", langs.join(", ")),
        }
    }
    let installed = |v: &PiperVoice| store.installed_manifest(&v.key).is_some();
    if g.json {
        let rows: Vec<serde_json::Value> = shown
            .iter()
            .map(|v| {
                serde_json::json!({
                    "name": v.key,
                    "pull": format!("piper:{}", v.key),
                    "language": v.language.code,
                    "language_english": v.language.name_english,
                    "quality": v.quality,
                    "size": v.size(),
                    "speakers": v.speakers(),
                    "installed": installed(v),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        // Standard output stays the rows a script reads.
        if let Some(unfetched) = &unfetched {
            eprintln!("reelbox: {}", unfetched.line());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|v| {
            let speakers = v.speakers();
            let speakers = match speakers.len() {
                0 => String::new(),
                n if n <= 4 => speakers.join(", "),
                n => format!("{n}: {}, …", speakers[..3].join(", ")),
            };
            let language = match (v.language.code.as_str(), v.language.name_english.as_str()) {
                (code, "") => code.to_string(),
                (code, english) => format!("{code} ({english})"),
            };
            vec![
                v.key.clone(),
                language,
                v.quality.clone(),
                format!("{:.1} MB", v.size() as f64 / 1e6),
                speakers,
                if installed(v) { "installed".into() } else { String::new() },
            ]
        })
        .collect();
    table::print(&["NAME", "LANGUAGE", "QUALITY", "SIZE", "SPEAKERS", "STATE"], &rows);
    match &unfetched {
        Some(unfetched) => println!("\n{}", unfetched.line()),
        None => println!("\ninstall one with: reelbox pull piper:NAME"),
    }
    Ok(ExitCode::SUCCESS)
}

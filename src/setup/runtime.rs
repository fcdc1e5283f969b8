//! Installing ONNX Runtime into `<data>/runtime/` from the Python package index: the
//! `onnxruntime` (CPU) or `onnxruntime-gpu` wheel is fetched with `pip download` and its
//! `onnxruntime/capi/` libraries unpacked; for the GPU build, the CUDA and cuDNN libraries
//! its `cuda` and `cudnn` extras name are unpacked into `<data>/runtime/cuda/`. Nothing is
//! installed into any Python, so distro Pythons' "externally managed" refusal never applies.
//! [`fetch_wheels`] is the one place that says which wheels those are: the install fetches
//! them into a temp dir, `setup --download` into a folder for a box without network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SetupError;
use crate::config::Config;
use crate::engine::runtime::{self as ort_runtime, LIBRARY_NAME, SETUP_VERSION};
use crate::models::fetch;

/// Which ONNX Runtime build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Cpu,
    Gpu,
}

impl Flavor {
    fn package(self) -> &'static str {
        match self {
            Flavor::Cpu => "onnxruntime",
            Flavor::Gpu => "onnxruntime-gpu",
        }
    }

    /// The pinned requirement of this build (`onnxruntime-gpu==1.31.1`).
    pub fn requirement(self) -> String {
        format!("{}=={SETUP_VERSION}", self.package())
    }
}

/// The wheels of one ONNX Runtime build, fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeWheels {
    /// The `onnxruntime`/`onnxruntime-gpu` wheel.
    pub runtime: PathBuf,
    /// For the GPU build, the CUDA and cuDNN wheels its extras name, with their dependencies.
    pub cuda: Vec<PathBuf>,
}

/// Fetches the wheels of `flavor` into `dir` from `from` (see the module docs).
pub async fn fetch_wheels(
    flavor: Flavor,
    dir: &Path,
    from: &fetch::WheelSource,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<RuntimeWheels, SetupError> {
    let requirement = flavor.requirement();
    say(&format!("fetching {requirement} with pip"));
    let runtime = fetch::pip_download(&requirement, dir, &platform_args(), from).await?;
    let cuda = match flavor {
        Flavor::Gpu => {
            let reqs = cuda_requirements(&fetch::wheel_metadata(&runtime)?);
            if reqs.is_empty() {
                Vec::new()
            } else {
                let cuda_dir = dir.join("cuda-wheels");
                std::fs::create_dir_all(&cuda_dir).map_err(|e| SetupError::io(&cuda_dir, e))?;
                say(&format!("fetching CUDA and cuDNN libraries ({}) with pip; this is large", reqs.join(", ")));
                // With dependencies this time: cuDNN needs cuBLAS, cuFFT needs nvJitLink.
                fetch::pip_download_into(&reqs, &cuda_dir, &platform_args(), false, from).await?;
                wheels_in(&cuda_dir)?
            }
        }
        Flavor::Cpu => Vec::new(),
    };
    Ok(RuntimeWheels { runtime, cuda })
}

/// The wheel files in `dir`.
fn wheels_in(dir: &Path) -> Result<Vec<PathBuf>, SetupError> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| SetupError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    wheels.sort();
    Ok(wheels)
}

/// What is installed in the runtime dir (`reelbox-runtime.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeMarker {
    pub version: String,
    pub flavor: Flavor,
    pub files: Vec<String>,
    #[serde(default)]
    pub cuda_files: Vec<String>,
}

/// Result of a runtime install.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeInstall {
    pub library: PathBuf,
    pub version: String,
    pub flavor: Flavor,
    pub already_installed: bool,
    /// CUDA/cuDNN libraries unpacked (GPU flavour).
    pub cuda_libraries: usize,
}

const MARKER: &str = "reelbox-runtime.json";

/// `pip download` flags that pick Linux wheels for a fixed CPython, so the result does not
/// depend on which Python runs pip (its own wheels are never installed).
pub fn platform_args() -> Vec<String> {
    let arch = std::env::consts::ARCH;
    let mut args: Vec<String> = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for tag in
        ["manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux_2_12", "manylinux2010"]
    {
        args.push("--platform".into());
        args.push(format!("{tag}_{arch}"));
    }
    args
}

/// The installed marker, if any.
pub fn installed(config: &Config) -> Option<RuntimeMarker> {
    let text = std::fs::read_to_string(ort_runtime::runtime_dir(config).join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Installs ONNX Runtime [`SETUP_VERSION`] of `flavor` from `from` unless already there.
pub async fn install(
    config: &Config,
    flavor: Flavor,
    force: bool,
    from: &fetch::WheelSource,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<RuntimeInstall, SetupError> {
    let dir = ort_runtime::runtime_dir(config);
    let library = dir.join(LIBRARY_NAME);
    if !force
        && let Some(m) = installed(config)
        && m.version == SETUP_VERSION
        && m.flavor == flavor
        && m.files.iter().all(|f| dir.join(f).is_file())
        && ort_runtime::probe_version(&library).is_ok()
    {
        return Ok(RuntimeInstall {
            library,
            version: m.version,
            flavor,
            already_installed: true,
            cuda_libraries: m.cuda_files.len(),
        });
    }
    std::fs::create_dir_all(&dir).map_err(|e| SetupError::io(&dir, e))?;
    let tmp = tempfile::tempdir().map_err(|e| SetupError::io(Path::new("temp dir"), e))?;
    let wheels = fetch_wheels(flavor, tmp.path(), from, say).await?;
    let wheel = wheels.runtime;
    let members = fetch::wheel_members(&wheel, "onnxruntime/capi/")?;
    let libs: Vec<&String> = members
        .iter()
        .filter(|m| {
            let base = m.rsplit('/').next().unwrap_or("");
            base.starts_with("libonnxruntime") && base.contains(".so")
        })
        .collect();
    let mut files = Vec::new();
    let mut main_lib = None;
    for member in libs {
        let base = member.rsplit('/').next().unwrap_or(member).to_string();
        say(&format!("unpacking {base}"));
        unpack(&wheel, member, &dir.join(&base))?;
        if base.starts_with("libonnxruntime.so.") {
            main_lib = Some(base.clone());
        }
        files.push(base);
    }
    let main_lib =
        main_lib.ok_or_else(|| SetupError::Pip(format!("{} has no libonnxruntime.so.*", wheel.display())))?;
    // libonnxruntime.so (what reelbox looks for) and .so.1 (the soname) point at the real file.
    for link in [LIBRARY_NAME.to_string(), "libonnxruntime.so.1".to_string()] {
        replace_symlink(&main_lib, &dir.join(&link))?;
        files.push(link);
    }
    let cuda_files = unpack_cuda_libraries(&wheels.cuda, &dir.join("cuda"), say)?;
    let version = ort_runtime::probe_version(&library).map_err(|e| SetupError::Check {
        what: format!("the installed {}", library.display()),
        reason: e.to_string(),
    })?;
    let marker = RuntimeMarker { version: version.clone(), flavor, files, cuda_files: cuda_files.clone() };
    let json = serde_json::to_vec_pretty(&marker).map_err(|e| SetupError::Pip(e.to_string()))?;
    crate::models::write_atomic(&dir.join(MARKER), &json).map_err(|e| SetupError::Pip(e.to_string()))?;
    Ok(RuntimeInstall { library, version, flavor, already_installed: false, cuda_libraries: cuda_files.len() })
}

/// Unpacks a wheel member beside its destination and renames it over the old file, so a
/// running daemon that has the old library mapped keeps its (now unlinked) copy intact.
fn unpack(wheel: &Path, member: &str, dest: &Path) -> Result<(), SetupError> {
    let tmp = dest.with_extension("unpacking");
    fetch::extract_from_wheel(wheel, member, &tmp)?;
    std::fs::rename(&tmp, dest).map_err(|e| SetupError::io(dest, e))
}

fn replace_symlink(target: &str, link: &Path) -> Result<(), SetupError> {
    let tmp = link.with_extension("linking");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| SetupError::io(&tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| SetupError::io(link, e))
}

/// Requirements of the wheel's `cuda` and `cudnn` extras, read from its METADATA.
pub fn cuda_requirements(metadata: &str) -> Vec<String> {
    metadata
        .lines()
        .filter_map(|l| l.strip_prefix("Requires-Dist:"))
        .filter_map(|l| {
            let (req, marker) = l.split_once(';')?;
            let marker = marker.replace(' ', "").replace('\'', "\"");
            (marker.contains("extra==\"cuda\"") || marker.contains("extra==\"cudnn\"")).then(|| req.trim().to_string())
        })
        .collect()
}

/// Unpacks the CUDA and cuDNN libraries of the `nvidia-*` wheels into `cuda_dir`.
fn unpack_cuda_libraries(
    wheels: &[PathBuf],
    cuda_dir: &Path,
    say: &(dyn Fn(&str) + Send + Sync),
) -> Result<Vec<String>, SetupError> {
    let mut files = Vec::new();
    for wheel in wheels {
        for member in fetch::wheel_members(wheel, "nvidia/")? {
            let base = member.rsplit('/').next().unwrap_or("").to_string();
            if member.contains("/lib/") && base.contains(".so") {
                std::fs::create_dir_all(cuda_dir).map_err(|e| SetupError::io(cuda_dir, e))?;
                say(&format!("unpacking {base}"));
                unpack(wheel, &member, &cuda_dir.join(&base))?;
                files.push(format!("cuda/{base}"));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_extras_are_read_from_wheel_metadata() {
        // From onnxruntime_gpu-1.31.1's METADATA.
        let meta = "Requires-Dist: numpy>=1.21.6\nProvides-Extra: cuda\n\
            Requires-Dist: nvidia-cuda-nvrtc~=13.0; extra == \"cuda\"\n\
            Requires-Dist: nvidia-cuda-runtime~=13.0; extra == \"cuda\"\n\
            Requires-Dist: sympy; extra == \"symbolic\"\n\
            Requires-Dist: nvidia-cudnn-cu13~=9.0; extra == \"cudnn\"\n";
        assert_eq!(
            cuda_requirements(meta),
            vec!["nvidia-cuda-nvrtc~=13.0", "nvidia-cuda-runtime~=13.0", "nvidia-cudnn-cu13~=9.0"]
        );
    }

    #[test]
    fn wheels_are_chosen_for_a_fixed_python_and_linux() {
        let args = platform_args();
        assert!(args.windows(2).any(|w| w[0] == "--python-version" && w[1] == "3.12"));
        assert!(args.iter().any(|a| a.starts_with("manylinux2014_")));
    }
}

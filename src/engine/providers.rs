//! Execution providers per device and the graph optimisation level. A GPU worker gets
//! TensorRT (when enabled) then CUDA on its own device id, registered so that a failure is
//! an error instead of a silent fall-back to the CPU; the CPU worker needs nothing.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Once;

use serde::Serialize;

use ort::ep::cuda::ConvAlgorithmSearch;
use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::GraphOptimizationLevel;

use crate::config::RuntimeConfig;
use crate::gpu::DeviceId;

/// Parses the config's optimisation level (`disable`, `basic`, `extended`, `all`).
pub fn parse_optimization(value: &str) -> Option<GraphOptimizationLevel> {
    Some(match value.trim().to_ascii_lowercase().as_str() {
        "disable" | "disabled" | "none" | "off" => GraphOptimizationLevel::Disable,
        "basic" | "1" => GraphOptimizationLevel::Level1,
        "extended" | "2" => GraphOptimizationLevel::Level2,
        "layout" | "3" => GraphOptimizationLevel::Level3,
        "all" | "99" => GraphOptimizationLevel::All,
        _ => return None,
    })
}

/// Parses the config's cuDNN convolution search (`heuristic`, `exhaustive`, `default`).
pub fn parse_conv_search(value: &str) -> Option<ConvAlgorithmSearch> {
    Some(match value.trim().to_ascii_lowercase().as_str() {
        "heuristic" => ConvAlgorithmSearch::Heuristic,
        "exhaustive" => ConvAlgorithmSearch::Exhaustive,
        "default" => ConvAlgorithmSearch::Default,
        _ => return None,
    })
}

/// Execution providers for `device`, most preferred first.
pub fn for_device(device: DeviceId, runtime: &RuntimeConfig) -> Vec<ExecutionProviderDispatch> {
    match device {
        DeviceId::Cpu | DeviceId::Remote { .. } => Vec::new(),
        DeviceId::Cuda(index) => {
            let id = index as i32;
            let mut eps = Vec::new();
            if runtime.tensorrt {
                // TensorRT is optional: when its libraries are absent the CUDA provider still runs.
                eps.push(ep::TensorRT::default().with_device_id(id).with_engine_cache(true).build().fail_silently());
            }
            // An unknown search word was refused when the session was built; heuristic here.
            let search = parse_conv_search(&runtime.cudnn_conv_algo_search).unwrap_or(ConvAlgorithmSearch::Heuristic);
            let cuda =
                ep::CUDA::default().with_device_id(id).with_conv_algorithm_search(search).with_tf32(runtime.cuda_tf32);
            eps.push(cuda.build().error_on_failure());
            eps
        }
    }
}

/// A GPU execution provider, for registering one on its own (`reelbox doctor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuProvider {
    Cuda,
    TensorRt,
}

impl GpuProvider {
    /// ONNX Runtime's name for the provider.
    pub fn name(self) -> &'static str {
        match self {
            GpuProvider::Cuda => "CUDAExecutionProvider",
            GpuProvider::TensorRt => "TensorrtExecutionProvider",
        }
    }

    /// What makes the provider available when it is not.
    pub fn fix(self) -> &'static str {
        match self {
            GpuProvider::Cuda => {
                "run `reelbox setup --gpu yes` on a box with an NVIDIA driver (onnxruntime-gpu with its CUDA 13 \
                 and cuDNN 9 libraries), or point runtime.cuda_lib_dirs at directories holding those libraries"
            }
            GpuProvider::TensorRt => {
                "install TensorRT 10 (libnvinfer.so.10) where the dynamic linker finds it; the CUDA provider runs meanwhile"
            }
        }
    }

    /// The provider on GPU `index`, failing loudly when it cannot register.
    pub(super) fn dispatch(self, index: u32) -> ExecutionProviderDispatch {
        let id = index as i32;
        match self {
            GpuProvider::Cuda => ep::CUDA::default().with_device_id(id).build().error_on_failure(),
            GpuProvider::TensorRt => ep::TensorRT::default().with_device_id(id).build().error_on_failure(),
        }
    }
}

/// Names of the providers `for_device` would register, for logs and the system API.
pub fn provider_names(device: DeviceId, tensorrt: bool) -> Vec<&'static str> {
    match device {
        DeviceId::Cpu | DeviceId::Remote { .. } => vec!["CPUExecutionProvider"],
        DeviceId::Cuda(_) if tensorrt => {
            vec!["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        }
        DeviceId::Cuda(_) => vec!["CUDAExecutionProvider", "CPUExecutionProvider"],
    }
}

/// True when the loaded ONNX Runtime was built with the CUDA provider.
pub fn cuda_compiled_in() -> bool {
    ep::CUDA::is_available().unwrap_or(false)
}

/// The CUDA and cuDNN libraries the CUDA provider needs, in the order they are preloaded:
/// nvJitLink first (cuFFT needs it; the wheels' libraries find siblings only via `$ORIGIN`),
/// then the CUDA libraries and cuDNN as ort names them.
pub fn cuda_library_names() -> impl Iterator<Item = &'static str> {
    ["libnvJitLink.so.13"]
        .into_iter()
        .chain(ep::cuda::CUDA_DYLIBS.iter().copied())
        .chain(ep::cuda::CUDNN_DYLIBS.iter().copied())
}

/// Where a CUDA library was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CudaLibOrigin {
    /// `<data_dir>/runtime/cuda/`, where `reelbox setup --gpu yes` unpacks the wheels.
    Runtime,
    /// A directory of `runtime.cuda_lib_dirs` (or `REELBOX_CUDA_LIB_DIRS`).
    Config,
    /// A directory of `LD_LIBRARY_PATH`.
    LdLibraryPath,
    /// A system CUDA install (`/usr/local/cuda/lib64`, the distro's library dirs).
    System,
}

impl CudaLibOrigin {
    /// How the origin is named in `reelbox doctor`.
    pub fn label(self) -> &'static str {
        match self {
            CudaLibOrigin::Runtime => "reelbox runtime dir",
            CudaLibOrigin::Config => "runtime.cuda_lib_dirs",
            CudaLibOrigin::LdLibraryPath => "LD_LIBRARY_PATH",
            CudaLibOrigin::System => "system",
        }
    }
}

/// One library the CUDA provider needs, and where it was found (if anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaLib {
    pub name: &'static str,
    pub found: Option<(PathBuf, CudaLibOrigin)>,
}

/// Directories searched for the CUDA libraries, in order: the runtime dir's `cuda/`, the
/// configured dirs, `LD_LIBRARY_PATH` (passed in so tests need not touch the process
/// environment), then system CUDA and library dirs.
pub fn cuda_search_dirs(
    runtime_dir: &Path,
    configured: &[PathBuf],
    ld_library_path: Option<OsString>,
) -> Vec<(PathBuf, CudaLibOrigin)> {
    let mut dirs = vec![(runtime_dir.join("cuda"), CudaLibOrigin::Runtime)];
    dirs.extend(configured.iter().map(|d| (d.clone(), CudaLibOrigin::Config)));
    if let Some(ld) = ld_library_path {
        dirs.extend(
            std::env::split_paths(&ld).filter(|p| !p.as_os_str().is_empty()).map(|p| (p, CudaLibOrigin::LdLibraryPath)),
        );
    }
    let system = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
        .iter()
        .chain(super::runtime::SYSTEM_LIB_DIRS);
    dirs.extend(system.map(|d| (PathBuf::from(d), CudaLibOrigin::System)));
    dirs
}

/// Finds each library the CUDA provider needs in `dirs` (first match wins).
pub fn locate_cuda_libraries(dirs: &[(PathBuf, CudaLibOrigin)]) -> Vec<CudaLib> {
    cuda_library_names()
        .map(|name| CudaLib { name, found: dirs.iter().map(|(d, o)| (d.join(name), *o)).find(|(p, _)| p.is_file()) })
        .collect()
}

/// Loads the CUDA and cuDNN libraries found in reelbox's own directories (the runtime
/// dir's `cuda/` and `runtime.cuda_lib_dirs`) before the CUDA provider registers, so it
/// finds them without `LD_LIBRARY_PATH`; the dynamic linker then matches the provider's
/// needs by soname. Libraries not found there are left to the dynamic linker (a system
/// CUDA install, `LD_LIBRARY_PATH`). Runs once per process.
pub fn preload_cuda_libraries(runtime_dir: &Path, configured: &[PathBuf]) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dirs: Vec<_> = cuda_search_dirs(runtime_dir, configured, None)
            .into_iter()
            .filter(|(_, o)| matches!(o, CudaLibOrigin::Runtime | CudaLibOrigin::Config))
            .collect();
        for lib in locate_cuda_libraries(&dirs) {
            let Some((path, _)) = lib.found else { continue };
            if let Err(e) = ort::util::preload_dylib(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot preload CUDA library");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimisation_levels_parse_from_config_words() {
        assert!(matches!(parse_optimization("all"), Some(GraphOptimizationLevel::All)));
        assert!(matches!(parse_optimization("Disable"), Some(GraphOptimizationLevel::Disable)));
        assert!(matches!(parse_optimization("basic"), Some(GraphOptimizationLevel::Level1)));
        assert!(parse_optimization("fast").is_none());
    }

    #[test]
    fn cpu_needs_no_provider_and_gpu_gets_cuda_on_its_index() {
        let runtime = RuntimeConfig { tensorrt: true, ..RuntimeConfig::default() };
        assert!(for_device(DeviceId::Cpu, &runtime).is_empty());
        let names: Vec<_> = for_device(DeviceId::Cuda(1), &runtime).iter().map(|e| e.name()).collect();
        assert_eq!(names, vec!["TensorrtExecutionProvider", "CUDAExecutionProvider"]);
        assert_eq!(provider_names(DeviceId::Cuda(0), false)[0], "CUDAExecutionProvider");
    }

    #[test]
    fn conv_search_words_parse_and_heuristic_is_the_default() {
        assert!(matches!(parse_conv_search("Exhaustive"), Some(ConvAlgorithmSearch::Exhaustive)));
        assert!(parse_conv_search("fastest").is_none());
        let default = RuntimeConfig::default();
        assert!(matches!(parse_conv_search(&default.cudnn_conv_algo_search), Some(ConvAlgorithmSearch::Heuristic)));
    }

    #[test]
    fn cuda_libraries_are_found_in_order_runtime_config_ld_path_system() {
        let root = tempfile::tempdir().expect("tempdir");
        let runtime = root.path().join("runtime");
        let (conf, ld) = (root.path().join("venv-nvidia"), root.path().join("ld"));
        for d in [runtime.join("cuda"), conf.clone(), ld.clone()] {
            std::fs::create_dir_all(&d).expect("mkdir");
        }
        // cudart in both the runtime dir and the configured dir: the runtime dir wins.
        std::fs::write(runtime.join("cuda/libcudart.so.13"), b"").expect("write");
        std::fs::write(conf.join("libcudart.so.13"), b"").expect("write");
        std::fs::write(conf.join("libcudnn.so.9"), b"").expect("write");
        std::fs::write(ld.join("libcublas.so.13"), b"").expect("write");
        let dirs = cuda_search_dirs(&runtime, std::slice::from_ref(&conf), Some(ld.clone().into_os_string()));
        let libs = locate_cuda_libraries(&dirs);
        let find = |name: &str| libs.iter().find(|l| l.name == name).and_then(|l| l.found.clone());
        assert_eq!(find("libcudart.so.13"), Some((runtime.join("cuda/libcudart.so.13"), CudaLibOrigin::Runtime)));
        assert_eq!(find("libcudnn.so.9"), Some((conf.join("libcudnn.so.9"), CudaLibOrigin::Config)));
        assert_eq!(find("libcublas.so.13"), Some((ld.join("libcublas.so.13"), CudaLibOrigin::LdLibraryPath)));
        assert_eq!(libs[0].name, "libnvJitLink.so.13", "nvJitLink is preloaded first");
        let names: Vec<_> = libs.iter().map(|l| l.name).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap_or(usize::MAX);
        assert!(pos("libcudart.so.13") < pos("libcublas.so.13") && pos("libcublasLt.so.13") < pos("libcublas.so.13"));
        assert!(pos("libcudnn.so.9") < pos("libcudnn_ops.so.9"), "cuDNN's loader before its parts");
    }
}

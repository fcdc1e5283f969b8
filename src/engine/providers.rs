//! Execution providers per device and the graph optimisation level. A GPU worker gets
//! TensorRT (when enabled) then CUDA on its own device id, registered so that a failure is
//! an error instead of a silent fall-back to the CPU; the CPU worker needs nothing.

use std::path::Path;
use std::sync::Once;

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::builder::GraphOptimizationLevel;

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

/// Execution providers for `device`, most preferred first.
pub fn for_device(device: DeviceId, tensorrt: bool) -> Vec<ExecutionProviderDispatch> {
    match device {
        DeviceId::Cpu => Vec::new(),
        DeviceId::Cuda(index) => {
            let id = index as i32;
            let mut eps = Vec::new();
            if tensorrt {
                // TensorRT is optional: when its libraries are absent the CUDA provider still runs.
                eps.push(ep::TensorRT::default().with_device_id(id).with_engine_cache(true).build().fail_silently());
            }
            eps.push(ep::CUDA::default().with_device_id(id).build().error_on_failure());
            eps
        }
    }
}

/// Names of the providers `for_device` would register, for logs and the system API.
pub fn provider_names(device: DeviceId, tensorrt: bool) -> Vec<&'static str> {
    match device {
        DeviceId::Cpu => vec!["CPUExecutionProvider"],
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

/// Loads the CUDA and cuDNN libraries `reelbox setup` unpacked under `<runtime>/cuda/`, so
/// the CUDA provider finds them without `LD_LIBRARY_PATH`. Missing files are skipped: a
/// system CUDA install may provide them instead.
pub fn preload_cuda_libraries(runtime_dir: &Path) {
    static ONCE: Once = Once::new();
    let dir = runtime_dir.join("cuda");
    ONCE.call_once(|| {
        if !dir.is_dir() {
            return;
        }
        // nvJitLink first: cuFFT needs it and the wheels' libraries find siblings via $ORIGIN.
        let first = ["libnvJitLink.so.13"];
        for name in first.iter().chain(ep::cuda::CUDA_DYLIBS).chain(ep::cuda::CUDNN_DYLIBS) {
            let path = dir.join(name);
            if path.is_file()
                && let Err(e) = ort::util::preload_dylib(&path)
            {
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
        assert!(for_device(DeviceId::Cpu, true).is_empty());
        let names: Vec<_> = for_device(DeviceId::Cuda(1), true).iter().map(|e| e.name()).collect();
        assert_eq!(names, vec!["TensorrtExecutionProvider", "CUDAExecutionProvider"]);
        assert_eq!(provider_names(DeviceId::Cuda(0), false)[0], "CUDAExecutionProvider");
    }
}

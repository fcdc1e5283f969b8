//! Which GPUs jobs may use: those `workers` allows, and only when ONNX Runtime's CUDA
//! provider registers. A box whose driver NVML sees but whose runtime has no working CUDA
//! provider (the CPU build, a missing cuDNN) would otherwise place every job on a GPU where
//! it fails; it runs them on the CPU instead and says why (log, `/api/v1/system`).

use crate::config::Config;
use crate::engine::{Engine, EngineError, GpuProvider};
use crate::gpu::{DeviceId, DeviceInfo, Telemetry};

/// The GPUs jobs may use, and why there are none when the CUDA check took them away.
#[derive(Debug, Clone, Default)]
pub struct UsableGpus {
    pub list: Vec<DeviceInfo>,
    /// Set when GPUs were found but CUDA does not register: what failed and how to fix it.
    pub unusable: Option<String>,
}

/// Checks once, at start: registering the provider loads the CUDA and cuDNN libraries the
/// first GPU job would load anyway, so a failure shows before any job is placed.
pub fn usable_gpus(telemetry: &Telemetry, config: &Config, engine: &Engine) -> UsableGpus {
    let list = crate::gpu::filter_gpus(telemetry.gpus(), &config.workers);
    // Nothing to check without a GPU, or when fakes stand in for CUDA too.
    let first = match list.first().map(|g| g.id) {
        Some(DeviceId::Cuda(i)) if !telemetry.fakes_cuda() => i,
        _ => return UsableGpus { list, unusable: None },
    };
    match engine.probe_provider(GpuProvider::Cuda, first) {
        Ok(()) => UsableGpus { list, unusable: None },
        Err(e @ EngineError::ProviderUnavailable { .. }) => {
            let why = format!(
                "{} GPU(s) found, but every job runs on the CPU: {}; `reelbox doctor` names each missing library, then restart reelbox",
                list.len(),
                crate::error_text::chain_text(&e)
            );
            tracing::error!("{why}");
            UsableGpus { list: Vec::new(), unusable: Some(why) }
        }
        // No runtime at all fails every job alike, on any device, saying so; the GPUs stay
        // so that they are used once `reelbox setup` installs it.
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the CUDA provider before ONNX Runtime loads");
            UsableGpus { list, unusable: None }
        }
    }
}

//! Model pipelines and their job kinds against the real ONNX Runtime, tiny fixture models
//! with the real interfaces, and the real ffmpeg.

use crate::common;

mod lipsync;
mod motion;
mod upscale;
mod web_export;

use std::sync::OnceLock;

use reelbox::config::Config;
use reelbox::engine::Engine;

/// The process's engine, found the way the daemon finds it (ORT_DYLIB_PATH in CI). ONNX
/// Runtime allows one environment per process, so all tests share it.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&Config::default()))
}

/// A progress callback that ignores progress.
fn no_progress(_: reelbox::pipelines::Progress) {}

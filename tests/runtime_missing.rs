//! With no ONNX Runtime anywhere, both the engine's error and `reelbox doctor` name every
//! place searched and the fix. One test per binary: it clears `ORT_DYLIB_PATH` for this
//! process, and ONNX Runtime must not have been loaded in it.

use std::path::Path;

use reelbox::config::Config;
use reelbox::engine::{Engine, EngineError};
use reelbox::gpu::DeviceId;
use reelbox::setup::{CheckStatus, doctor, render_checks};

#[test]
#[allow(unsafe_code)] // remove_var is unsafe since Rust 2024; see the SAFETY note
fn no_runtime_found_names_the_places_searched_and_the_fix() {
    // SAFETY: the only test in this binary; no other thread reads the environment yet.
    unsafe { std::env::remove_var("ORT_DYLIB_PATH") };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = Config { data_dir: tmp.path().join("data"), ..Config::default() };
    let configured = tmp.path().join("configured/libonnxruntime.so");
    config.runtime.onnxruntime = Some(configured.clone());
    if let Some(system) = reelbox::engine::runtime::SYSTEM_LIB_DIRS
        .iter()
        .map(|d| Path::new(d).join("libonnxruntime.so"))
        .find(|p| p.exists())
    {
        panic!("this test needs a machine without a system ONNX Runtime, found {}", system.display());
    }

    let engine = Engine::new(&config);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-esrgan-x4/model.onnx");
    let err = match engine.session(&model, DeviceId::Cpu) {
        Err(e @ EngineError::RuntimeNotFound(_)) => e.to_string(),
        other => panic!("expected RuntimeNotFound, got {:?}", other.map(|_| ())),
    };
    assert!(err.contains(&configured.display().to_string()), "{err}");
    assert!(err.contains(&tmp.path().join("data/runtime/libonnxruntime.so").display().to_string()), "{err}");
    assert!(err.contains("/usr/lib"), "{err}");
    assert!(err.contains("reelbox setup"), "{err}");

    let checks = doctor(&config);
    let ort = checks.iter().find(|c| c.name == "onnxruntime").expect("doctor checks the runtime");
    assert_eq!(ort.status, CheckStatus::Missing);
    assert!(ort.detail.contains(&configured.display().to_string()), "{}", ort.detail);
    assert!(ort.fix.as_deref().unwrap_or("").contains("reelbox setup"), "{:?}", ort.fix);
    let text = render_checks(&checks);
    assert!(text.contains("MISSING  onnxruntime"), "{text}");
    assert!(text.contains("fix: reelbox setup"), "{text}");
}

//! The engine against the real ONNX Runtime: version check, session reuse, LRU eviction
//! under a budget, keep-alive unloading, and bad model files failing only their request.

use crate::common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{fixture, provision};
use reelbox::engine::{Engine, EngineError, runtime};
use reelbox::gpu::DeviceId;

/// The upscaler fixture every engine test loads.
const ESRGAN_X4: &str = "models/tiny-esrgan-x4/model.onnx";

#[test]
fn found_runtime_is_at_least_the_compiled_api_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = provision::test_config(tmp.path());
    let info = runtime::find(&config, None).expect("provisioned runtime is found");
    let minor = runtime::minor_version(&info.version).expect("1.x version");
    assert!(minor >= runtime::MIN_MINOR_VERSION, "{} < 1.{}", info.version, runtime::MIN_MINOR_VERSION);
    assert_eq!(info.origin, runtime::Origin::Config);
}

#[test]
fn a_too_old_or_foreign_library_is_passed_over_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = provision::test_config(tmp.path());
    // libc is a real shared library without ONNX Runtime's entry point.
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("a libc.so.6 to stand in for a foreign library");
    config.runtime.onnxruntime = Some(libc.clone());
    let found =
        runtime::find(&config, Some(provision::runtime().into_os_string())).expect("falls through to the env path");
    assert_eq!(found.origin, runtime::Origin::Env);
}

#[test]
fn sessions_are_reused_per_model_and_device() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let a = engine.session(&fixture(ESRGAN_X4), DeviceId::Cpu).expect("loads");
    let b = engine.session(&fixture(ESRGAN_X4), DeviceId::Cpu).expect("cached");
    assert!(Arc::ptr_eq(&a, &b), "the same session is handed out again");
    let loaded = engine.loaded_sessions();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].device, "cpu");
    assert_eq!(loaded[0].bytes, std::fs::metadata(fixture(ESRGAN_X4)).expect("size").len());
    assert!(loaded[0].in_use);
    assert_eq!(loaded[0].uses, 2);
    let json = serde_json::to_value(&loaded).expect("serialisable for GET /api/v1/system");
    assert_eq!(json[0]["device"], "cpu");
}

#[test]
fn least_recently_used_idle_session_is_evicted_under_the_budget() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let joe = provision::joe_voice();
    let joe_copy = tmp.path().join("joe-copy.onnx");
    std::fs::copy(&joe, &joe_copy).expect("copy voice");
    let x4 = fixture(ESRGAN_X4);
    let mut config = provision::test_config(tmp.path());
    // 120 MiB holds one 63 MB voice plus the 40 KB model, not two voices.
    config.runtime.device_budget_mib = 120;
    let engine = Engine::new(&config);
    drop(engine.session(&x4, DeviceId::Cpu).expect("x4"));
    drop(engine.session(&joe, DeviceId::Cpu).expect("joe"));
    // x4 was loaded first but used last, so the voice is the least recently used.
    drop(engine.session(&x4, DeviceId::Cpu).expect("x4 again"));
    let _copy = engine.session(&joe_copy, DeviceId::Cpu).expect("second voice");
    let mut models: Vec<PathBuf> = engine.loaded_sessions().into_iter().map(|s| s.model).collect();
    models.sort();
    let mut want = vec![joe_copy, x4];
    want.sort();
    assert_eq!(models, want, "the least recently used voice was evicted");
}

#[test]
fn idle_sessions_unload_after_keep_alive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = provision::test_config(tmp.path());
    config.runtime.keep_alive_s = 0;
    let engine = Engine::new(&config);
    let held = engine.session(&fixture(ESRGAN_X4), DeviceId::Cpu).expect("loads");
    assert_eq!(engine.unload_idle(), 0, "a held session stays");
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(engine.unload_idle(), 1);
    assert!(engine.loaded_sessions().is_empty());
}

#[test]
fn reaper_thread_unloads_without_being_asked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = provision::test_config(tmp.path());
    config.runtime.keep_alive_s = 1;
    let engine = Arc::new(Engine::new(&config));
    let _reaper = engine.spawn_reaper();
    drop(engine.session(&fixture(ESRGAN_X4), DeviceId::Cpu).expect("loads"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !engine.loaded_sessions().is_empty() {
        assert!(std::time::Instant::now() < deadline, "reaper did not unload the idle session");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn missing_and_truncated_models_fail_naming_the_file_and_the_engine_keeps_working() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let missing = tmp.path().join("nope.onnx");
    match engine.session(&missing, DeviceId::Cpu) {
        Err(e @ EngineError::ModelMissing { .. }) => assert!(e.to_string().contains("nope.onnx")),
        other => panic!("expected ModelMissing, got {:?}", other.map(|_| ())),
    }
    let truncated = tmp.path().join("half.onnx");
    let bytes = std::fs::read(fixture(ESRGAN_X4)).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    match engine.session(&truncated, DeviceId::Cpu) {
        Err(e @ EngineError::ModelLoad { .. }) => assert!(e.to_string().contains("half.onnx"), "{e}"),
        other => panic!("expected ModelLoad, got {:?}", other.map(|_| ())),
    }
    assert!(engine.session(&fixture(ESRGAN_X4), DeviceId::Cpu).is_ok());
    assert_eq!(engine.loaded_sessions().len(), 1, "failed loads are not cached");
}

#[test]
fn a_loaded_steady_session_also_serves_fast_start_requests() {
    use reelbox::engine::SessionProfile;
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = Engine::new(&provision::test_config(tmp.path()));
    let model = fixture(ESRGAN_X4);
    let fast = engine.session_with(&model, DeviceId::Cpu, SessionProfile::FastStart).expect("fast start");
    let steady = engine.session(&model, DeviceId::Cpu).expect("steady");
    assert!(!Arc::ptr_eq(&fast, &steady), "a fast-start session is not handed out for steady requests");
    let again = engine.session_with(&model, DeviceId::Cpu, SessionProfile::FastStart).expect("fast start again");
    assert!(Arc::ptr_eq(&again, &steady), "the steady session serves fast-start requests once loaded");
    let mut profiles: Vec<_> = engine.loaded_sessions().into_iter().map(|s| s.profile).collect();
    profiles.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(profiles, vec![SessionProfile::FastStart, SessionProfile::Steady]);
}

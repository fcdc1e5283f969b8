//! The model manager against a real HTTP server on loopback: resumable downloads, sha256
//! rejection, bundled sources, verify, rm, import and list.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use reelbox::models::{InstallState, Manifest, ManifestFile, ModelError, ModelKind, ModelStore};
use sha2::{Digest, Sha256};

/// What the test server saw and how it misbehaves.
#[derive(Default)]
struct ServerState {
    files: Vec<(String, Vec<u8>)>,
    /// Range headers of every request, in order ("" when none).
    ranges: Vec<String>,
    /// Bytes of body sent in total.
    sent: usize,
    /// Drop the connection after this many bytes on the first full request.
    cut_first_at: Option<usize>,
}

type Shared = Arc<Mutex<ServerState>>;

async fn serve_file(State(state): State<Shared>, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    let mut s = state.lock().expect("lock");
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    s.ranges.push(range.clone());
    let Some(data) = s.files.iter().find(|(n, _)| *n == name).map(|(_, d)| d.clone()) else {
        return Response::builder().status(StatusCode::NOT_FOUND).body(Body::empty()).expect("response");
    };
    let start: usize = range.strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0);
    if let (Some(cut), true) = (s.cut_first_at.take(), start == 0) {
        // Promise the whole file, send part of it, then fail the stream: a dropped transfer.
        s.sent += cut;
        let part = data[..cut].to_vec();
        let stream = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(axum::body::Bytes::from(part)),
            Err(std::io::Error::other("connection dropped by the test server")),
        ]);
        return Response::builder()
            .header(header::CONTENT_LENGTH, data.len())
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let body = data[start.min(data.len())..].to_vec();
    s.sent += body.len();
    let status = if start > 0 { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .expect("response")
}

/// Starts the server on 127.0.0.1:0 and returns its base URL.
async fn start(state: Shared) -> String {
    let app = Router::new().route("/files/{name}", axum::routing::get(serve_file)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/files")
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn file_entry(path: &str, data: &[u8]) -> ManifestFile {
    ManifestFile { path: path.into(), size: data.len() as u64, sha256: hex::encode(Sha256::digest(data)) }
}

fn manifest(name: &str, sources: Vec<String>, files: Vec<ManifestFile>) -> Manifest {
    Manifest { summary: "test model".into(), sources, ..Manifest::new(name.into(), ModelKind::Upscale, files) }
}

fn store_in(dir: &Path) -> ModelStore {
    ModelStore::with_dirs(dir.join("models"), vec![dir.join("manifests")], vec![dir.join("share")])
}

#[tokio::test]
async fn interrupted_transfer_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = payload(3 << 20, 7);
    let state: Shared = Arc::new(Mutex::new(ServerState {
        files: vec![("model.onnx".into(), data.clone())],
        cut_first_at: Some(1 << 20),
        ..ServerState::default()
    }));
    let base = start(state.clone()).await;
    let store = store_in(tmp.path());
    let m = manifest("resumable", vec![base], vec![file_entry("model.onnx", &data)]);
    let report = store.pull_manifest(&m, false, &|_| {}).await.expect("pull resumes and succeeds");
    assert!(!report.already_installed);
    let installed = std::fs::read(report.dir.join("model.onnx")).expect("installed file");
    assert_eq!(installed, data);
    let s = state.lock().expect("lock");
    assert_eq!(s.ranges.len(), 2, "one dropped request, one resumed: {:?}", s.ranges);
    assert_eq!(s.ranges[1], format!("bytes={}-", 1 << 20));
    assert_eq!(s.sent, data.len(), "nothing sent twice");
}

#[tokio::test]
async fn partial_file_from_an_earlier_run_is_continued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = payload(200_000, 3);
    let state: Shared = Arc::new(Mutex::new(ServerState {
        files: vec![("weights.bin".into(), data.clone())],
        ..ServerState::default()
    }));
    let base = start(state.clone()).await;
    let store = store_in(tmp.path());
    let staging = store.models_dir().join(".staging/continued");
    std::fs::create_dir_all(&staging).expect("mkdir");
    std::fs::write(staging.join("weights.bin.partial"), &data[..123_456]).expect("partial");
    let m = manifest("continued", vec![format!("{base}/weights.bin")], vec![file_entry("weights.bin", &data)]);
    store.pull_manifest(&m, false, &|_| {}).await.expect("pull");
    assert_eq!(state.lock().expect("lock").ranges, vec!["bytes=123456-".to_string()]);
    assert_eq!(std::fs::read(store.model_dir("continued").join("weights.bin")).expect("file"), data);
}

#[tokio::test]
async fn wrong_sha256_is_rejected_and_nothing_is_installed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let served = payload(50_000, 1);
    let expected = payload(50_000, 2);
    let state: Shared =
        Arc::new(Mutex::new(ServerState { files: vec![("model.onnx".into(), served)], ..ServerState::default() }));
    let base = start(state).await;
    let store = store_in(tmp.path());
    let m = manifest("tampered", vec![base], vec![file_entry("model.onnx", &expected)]);
    let err = store.pull_manifest(&m, false, &|_| {}).await.expect_err("digest mismatch");
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Fetch { .. }), "{msg}");
    assert!(msg.contains("sha256 mismatch") && msg.contains(&m.files[0].sha256), "{msg}");
    assert!(msg.contains("partial download was deleted"), "{msg}");
    assert!(!store.model_dir("tampered").exists(), "no model directory");
    assert!(!store.models_dir().join("tampered.toml").exists(), "no installed manifest");
    assert!(!store.models_dir().join(".staging/tampered/model.onnx.partial").exists(), "partial deleted");
    assert!(store.installed_dir("tampered").is_err());
}

#[tokio::test]
async fn failing_source_falls_through_to_the_next_and_pull_is_idempotent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = payload(10_000, 9);
    let state: Shared = Arc::new(Mutex::new(ServerState::default()));
    let base = start(state.clone()).await; // serves nothing: 404
    let share = tmp.path().join("share/models/demo/thing");
    std::fs::create_dir_all(&share).expect("mkdir");
    std::fs::write(share.join("model.onnx"), &data).expect("write");
    let store = store_in(tmp.path());
    let m = manifest("thing", vec![base, "bundled:models/demo/thing".into()], vec![file_entry("model.onnx", &data)]);
    let first = store.pull_manifest(&m, false, &|_| {}).await.expect("bundled source delivers");
    assert_eq!(first.files["model.onnx"], "bundled:models/demo/thing");
    let second = store.pull_manifest(&m, false, &|_| {}).await.expect("again");
    assert!(second.already_installed);
    assert_eq!(state.lock().expect("lock").ranges.len(), 1, "the second pull fetched nothing");
}

#[tokio::test]
async fn verify_catches_a_changed_file_and_rm_removes_the_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = payload(4_096, 5);
    let share = tmp.path().join("share/pack");
    std::fs::create_dir_all(share.join("sub")).expect("mkdir");
    std::fs::write(share.join("sub/a.bin"), &data).expect("write");
    let store = store_in(tmp.path());
    let m = manifest("pack", vec!["bundled:pack".into()], vec![file_entry("sub/a.bin", &data)]);
    store.pull_manifest(&m, false, &|_| {}).await.expect("pull");
    assert!(store.verify("pack").expect("verify").ok);
    let entry = store.list().into_iter().find(|e| e.name == "pack").expect("listed");
    assert_eq!(entry.state, InstallState::Installed);
    assert!(entry.verified_at.is_some());

    let file = store.model_dir("pack").join("sub/a.bin");
    let mut changed = data.clone();
    changed[10] ^= 0xff;
    std::fs::write(&file, &changed).expect("tamper");
    let report = store.verify("pack").expect("verify");
    assert!(!report.ok);
    assert!(report.files[0].problem.as_deref().unwrap_or("").contains("sha256"));
    assert!(store.list().into_iter().find(|e| e.name == "pack").expect("listed").verified_at.is_none());

    assert!(store.rm("pack").expect("rm"));
    assert!(!store.model_dir("pack").exists());
    assert!(!store.rm("pack").expect("rm again"), "nothing left to remove");
}

#[test]
fn shipped_manifests_list_with_demo_flag_and_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/en_US-joe-medium.toml"),
        manifests.join("en_US-joe-medium.toml"),
    )
    .expect("copy");
    let demo = manifest("demo-x", vec!["bundled:models/demo/x".into()], vec![file_entry("m.onnx", b"x")]);
    let demo = Manifest { demo: true, ..demo };
    std::fs::write(manifests.join("demo-x.toml"), demo.to_toml()).expect("write");
    std::fs::write(manifests.join("broken.toml"), "name = 3").expect("write");
    let list = store_in(tmp.path()).list();
    let names: Vec<_> = list.iter().map(|e| (e.name.as_str(), e.demo, e.kind)).collect();
    assert_eq!(names, [("demo-x", true, ModelKind::Upscale), ("en_US-joe-medium", false, ModelKind::Tts)]);
    assert!(list.iter().all(|e| e.state == InstallState::NotInstalled));
    assert_eq!(list[1].size, 63_201_294 + 4_794);
}

#[test]
fn import_of_a_piper_pair_writes_a_manifest_that_verifies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let drop_dir = tmp.path().join("downloads");
    std::fs::create_dir_all(&drop_dir).expect("mkdir");
    std::fs::write(drop_dir.join("de_DE-test-low.onnx"), payload(1000, 4)).expect("write");
    std::fs::write(drop_dir.join("de_DE-test-low.onnx.json"), b"{\"audio\":{\"sample_rate\":16000}}").expect("write");
    let store = store_in(tmp.path());
    // The store's own part: the files' load check is its caller's (`kinds::model_import`).
    let unchecked = |_: &reelbox::models::import::ImportPlan| Ok::<_, reelbox::models::ModelError>(());
    let m = store.import(&drop_dir, None, None, reelbox::models::import::Via::Cli, unchecked).expect("import").manifest;
    assert_eq!(m.name, "de_DE-test-low");
    assert_eq!(m.kind, ModelKind::Tts);
    let written =
        Manifest::parse(&std::fs::read_to_string(store.models_dir().join("de_DE-test-low.toml")).expect("manifest"))
            .expect("valid manifest");
    assert_eq!(written, m);
    assert!(store.verify("de_DE-test-low").expect("verify").ok);
    let err = store
        .import(&drop_dir, None, None, reelbox::models::import::Via::Cli, unchecked)
        .expect_err("name taken")
        .to_string();
    assert!(err.contains("already installed"), "{err}");
    let dir: PathBuf = store.installed_dir("de_DE-test-low").expect("installed");
    assert!(dir.join("de_DE-test-low.onnx.json").is_file());
}

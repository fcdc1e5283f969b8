//! The HTTP API against its own OpenAPI document: the pinned Schemathesis reads
//! `/openapi.json` from a real daemon with the demo models and sends it what the document
//! allows and what it rules out, as generated clients and LAN scripts do, with an admin key
//! and then a client's.
//! Every answer must be one the document lists for its route, in its content type and
//! schema; no 5xx; bad input refused. Afterwards the daemon is up, its memory bounded, the
//! jobs it accepted all there and ended, and its log has no error.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::api::{call, create_key};
use common::daemon::DaemonProc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Schemathesis, pinned: a new release generates other requests and checks more, so CI must
/// not change what it holds the API to unannounced (raise the pin on purpose, and rerun).
const SCHEMATHESIS: &str = "4.32.5";

/// The seed of the run: the same requests every time (the config makes them derandomised).
const SEED: &str = "20261206";

/// A Python with the pinned Schemathesis, installed under `target/schemathesis-VERSION` on
/// first use (see `common::pyenv`).
fn schemathesis() -> (PathBuf, Option<PathBuf>) {
    static PYTHON: OnceLock<(PathBuf, Option<PathBuf>)> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let check = format!("import sys, schemathesis; sys.exit(schemathesis.__version__ != {SCHEMATHESIS:?})");
            let pinned = format!("schemathesis=={SCHEMATHESIS}");
            common::pyenv::installed(&format!("schemathesis-{SCHEMATHESIS}"), &[pinned.as_str()], |python, path| {
                common::pyenv::runs(python, path, &check)
            })
        })
        .clone()
}

/// Runs Schemathesis against `d` with `key` in `scratch`; its exit status and report.
fn fuzz(d: &DaemonProc, key: &str, scratch: &Path) -> (bool, String) {
    let (python, pythonpath) = schemathesis();
    let config = common::source_tree().join("tests/clients/schemathesis.toml");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
        .arg(config)
        .args(["run", &d.at("/openapi.json"), "--header", &format!("Authorization: Bearer {key}"), "--seed", SEED])
        .current_dir(scratch);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("run schemathesis");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says_to_a_fuzzer() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = common::render::demo_models_dir(home.path());
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // No request rate limit: the fuzzer sends faster than a person, and a 429 tests nothing.
    let config = home.path().join("config.toml");
    std::fs::write(&config, "[limits]\nrequests_per_second = 0.0\n").expect("config");
    let runtime = common::provision::runtime();
    let log = home.path().join("daemon.log");
    let env = [
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8")),
        ("REELBOX_ONNXRUNTIME", runtime.to_str().expect("utf-8")),
        ("REELBOX_CONFIG", config.to_str().expect("utf-8")),
    ];
    let d = DaemonProc::start_logged(&data, &env, &log);
    let (_, key) = create_key(&d, None, json!({"name": "fuzzer", "scope": "admin"})).await;
    // A LAN client's key too: its refusals (admin-only routes and kinds) are documented as well.
    let (_, client) = create_key(&d, Some(&key), json!({"name": "lan-script"})).await;

    // A finished ComfyUI prompt first, so the `/history` the fuzzer reads holds an entry (its
    // queue item, pictures and messages) held to ComfyUI's documented shape, not only `{}`.
    let comfy = common::api::keyed_client(&key);
    let graph = crate::comfy_compat::default_workflow("demo-shapes", 2);
    let prompt = crate::comfy_compat::queue_prompt(&comfy, &d, json!({"prompt": graph})).await;
    let entry = crate::comfy_compat::history_of(&comfy, &d, &prompt, Duration::from_secs(60)).await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");

    for (who, secret) in [("an admin key", &key), ("a client key", &client)] {
        let t0 = Instant::now();
        let (ok, report) = tokio::task::block_in_place(|| fuzz(&d, secret, home.path()));
        eprintln!("schemathesis with {who} ran {:.0?}", t0.elapsed());
        assert!(ok, "Schemathesis, with {who}, found answers the document does not describe:\n{report}");
    }

    // The daemon is up and answers a person as before.
    let (status, _) = call(None, Method::GET, d.at("/healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, system) = call(Some(&key), Method::GET, d.at("/api/v1/system"), None).await;
    assert_eq!(status, StatusCode::OK, "{system}");
    // Its memory stays that of a box with the demo models loaded (about 0.3 GB after a run).
    let rss_mib = common::proc_status_kib(d.pid(), "VmRSS") / 1024;
    assert!(rss_mib < 1024, "the daemon holds {rss_mib} MiB after the run");
    // Every job it accepted is there and ends: none lost, none stuck (the queue resumed,
    // as the fuzzer may have paused it).
    let (status, _) = call(Some(&key), Method::POST, d.at("/api/v1/queue/resume"), None).await;
    assert_eq!(status, StatusCode::OK);
    let jobs = ended_jobs(&key, &d).await;
    assert!(!jobs.is_empty(), "the fuzzer's requests made no job");
    eprintln!("after the run: {rss_mib} MiB resident, {} jobs ended", jobs.len());
    let logged = std::fs::read_to_string(&log).expect("daemon log");
    let errors: Vec<&str> = logged.lines().filter(|l| l.contains(" ERROR ") || l.contains("panicked")).collect();
    assert!(errors.is_empty(), "the daemon logged errors:\n{}", errors.join("\n"));
}

/// Every job on the box once none is queued or running (waiting up to a minute), with its
/// state; panics on a job in another state.
async fn ended_jobs(key: &str, d: &DaemonProc) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let (status, page) = call(Some(key), Method::GET, d.at("/api/v1/jobs?limit=500"), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
        let open = jobs.iter().filter(|j| matches!(j["state"].as_str(), Some("queued" | "running"))).count();
        if open == 0 {
            for j in &jobs {
                let state = j["state"].as_str().unwrap_or_default();
                assert!(["succeeded", "failed", "canceled"].contains(&state), "{j}");
            }
            return jobs;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{open} jobs still open a minute after the run");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

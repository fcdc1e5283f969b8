//! Worker boxes against a secured NATS server (token auth and TLS with a CA made here),
//! real processes: a worker with the right token and CA joins and runs a stage; one with
//! no token, a wrong token or without the CA exits at once with an error naming the
//! setting; a result sent for a run the sender does not hold, or on another box's subject,
//! is discarded; no API key ever crosses NATS.

use crate::cluster_support;
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{Nats, WorkerProc, stage_devices, start_head_cfg, wait_boxes, worker_command};
use common::daemon::{DaemonProc, is_final, submit_testcard, wait_job};
use futures::StreamExt;
use reelbox::cluster::protocol::{Outcome, RunKey, StageResult, result_subject};
use serde_json::json;

const TOKEN: &str = "s3cret-cluster-token";

/// A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "reelbox test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// Runs a worker that must fail; returns its stderr once it exits (at most 30 s).
fn failing_worker(dir: &Path, nats: &Nats, name: &str, extra: &str) -> String {
    failing(worker_command(dir, nats, name, extra, &[]), &format!("{name} ({extra})"))
}

/// Runs `cmd`, a worker that must fail; its stderr once it exits (at most 30 s).
fn failing(mut cmd: Command, name: &str) -> String {
    let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn worker");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("worker {name} did not exit on its own");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success(), "worker {name} exited successfully: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_workers_with_the_token_and_ca_join_and_foreign_results_are_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = tls_files(dir.path());
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let nats = Nats::start_args(dir.path(), &["--auth", TOKEN, "--tls", "--tlscert", cert, "--tlskey", key]);
    let secured = format!("token = {TOKEN:?}\ntls_ca = {:?}", ca.display().to_string());
    let head = start_head_cfg(&dir.path().join("head"), &nats, &format!("{secured}\nlocal_work = false"), &[]);
    let _w1 = WorkerProc::start_cfg(&dir.path().join("w1"), &nats, "w1", &secured);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    // Wrong or missing credentials: the worker exits with an error naming the setting.
    let ca_line = format!("tls_ca = {:?}", ca.display().to_string());
    let none = failing_worker(&dir.path().join("w2"), &nats, "w2", &ca_line);
    assert!(none.contains("refused") && none.contains("cluster.token"), "no token: {none}");
    let wrong = failing_worker(&dir.path().join("w3"), &nats, "w3", &format!("token = \"nope\"\n{ca_line}"));
    assert!(wrong.contains("refused the token (cluster.token)"), "wrong token: {wrong}");
    let no_ca = failing_worker(&dir.path().join("w4"), &nats, "w4", &format!("token = {TOKEN:?}"));
    assert!(no_ca.contains("TLS") && no_ca.contains("cluster.tls_ca"), "no CA: {no_ca}");
    let gone = failing_worker(&dir.path().join("w7"), &nats, "w7", "tls_ca = \"/nowhere/ca.pem\"");
    assert!(gone.contains("cannot read /nowhere/ca.pem (cluster.tls_ca)"), "a missing CA file: {gone}");
    // A wrong address: the flag the user typed is named, and a port that accepts but is no
    // NATS server (the head's HTTP API, say) is said within seconds, not waited on forever.
    let join = |url: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelbox"));
        cmd.args(["worker", "--join", url, "--name", "w5", "--data-dir"]).arg(dir.path().join("w5"));
        cmd.env_remove("REELBOX_CONFIG").env("XDG_CONFIG_HOME", dir.path().join("no-config")).stdout(Stdio::null());
        failing(cmd, url)
    };
    let schemeless = join(&format!("127.0.0.1:{}", nats.port));
    assert!(schemeless.contains("--join: \"127.0.0.1:") && schemeless.contains("nats://"), "{schemeless}");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port that never speaks");
    let silent_url = format!("nats://{}", silent.local_addr().expect("addr"));
    let t0 = Instant::now();
    let not_nats = join(&silent_url);
    assert!(not_nats.contains("sent no NATS greeting") && not_nats.contains("--join"), "{not_nats}");
    assert!(t0.elapsed() < Duration::from_secs(20), "said after {:?}", t0.elapsed());
    let status = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["cluster", "status", "--nats", &format!("127.0.0.1:{}", nats.port)])
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .expect("cluster status --nats");
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success() && err.contains("--nats: \"127.0.0.1:"), "{err}");
    // `--json` gives JSON here too: the config and each seed, by name.
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["--json", "cluster", "nats-config", "--boxes", "a,b"])
        .output()
        .expect("nats-config --json");
    let told: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nats-config --json prints JSON");
    let seeds = told["seeds"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(seeds, Some(vec!["a".to_string(), "b".into(), "head".into()]), "{told}");
    assert!(told["config"].as_str().is_some_and(|c| c.contains("authorization")), "{told}");
    // `role = "worker"` given to `reelbox serve` (the wrong service): said, not silently ignored.
    let cfg = cluster_support::config_file(
        &dir.path().join("w6"),
        &cluster_support::cluster_toml(&nats.url(), "worker", "w6", ""),
    );
    let log = dir.path().join("w6.log");
    let mut served = DaemonProc::start_logged(&dir.path().join("w6").join("data"), &[("REELBOX_CONFIG", &cfg)], &log);
    served.terminate();
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("role = \"worker\": `reelbox serve` takes no part in the cluster; run `reelbox worker`"),
        "{said}"
    );

    // The joined worker runs the stage; a result for that run from another box is dropped.
    let id = submit_testcard(&http, &head, json!({"steps": 30, "step_ms": 100})).await;
    let running = wait_job(&http, &head, &id, Duration::from_secs(30), |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let attempt = running["attempts"].as_u64().expect("attempts") as u32;
    let job = id.parse().expect("job id");
    let client = async_nats::ConnectOptions::with_token(TOKEN.into())
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(nats.url())
        .await
        .expect("connect as an intruder holding the token");
    let js = async_nats::jetstream::new(client.clone());
    let forged = StageResult {
        key: RunKey { job, stage: 0, attempt },
        host: "intruder".into(),
        outcome: Outcome::Done { outputs: Vec::new() },
    };
    let body = serde_json::to_vec(&forged).expect("json");
    js.publish(result_subject("intruder"), body.into()).await.expect("publish").await.expect("stored");
    // Naming the holder in the body is not enough: the subject (which per-box permissions
    // tie to the sender's user) must name the same box.
    let posing = StageResult { host: "w1".into(), ..forged };
    let body = serde_json::to_vec(&posing).expect("json");
    js.publish(result_subject("intruder"), body.into()).await.expect("publish").await.expect("stored");

    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j)[0], "w1/cpu", "{j}");
    let card = j["stages"][0]["artifacts"].as_array().expect("artifacts");
    assert_eq!(card.len(), 1, "the card stage kept the holder's output, not the forged empty one: {j}");
    let id = card[0].as_str().expect("id");
    let png = http.get(head.at(&format!("/api/v1/artifacts/{id}"))).send().await.expect("get");
    assert!(png.bytes().await.expect("bytes").starts_with(b"\x89PNG"), "the card came home from w1");

    // Workers never see API keys: a job submitted with one runs remotely, and nothing on
    // any subject (work, inputs, results, progress) carries the key.
    let made = http.post(head.at("/api/v1/keys")).json(&json!({"name": "root", "scope": "admin"})).send().await;
    let made: serde_json::Value = made.expect("create key").json().await.expect("json");
    let key = made["key"].as_str().unwrap_or_else(|| panic!("no key in {made}")).to_string();
    let keyed = common::api::keyed_client(&key);
    let mut everything = client.subscribe(">").await.expect("subscribe to every subject");
    let id = submit_testcard(&keyed, &head, json!({"steps": 3, "step_ms": 100})).await;
    let j = wait_job(&keyed, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!((j["state"].as_str(), stage_devices(&j)[0].as_str()), (Some("succeeded"), "w1/cpu"), "{j}");
    let mut seen = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(m)) = tokio::time::timeout_at(until, everything.next()).await {
        seen += 1;
        let headers = m.headers.map(|h| format!("{h:?}")).unwrap_or_default();
        let text = String::from_utf8_lossy(&m.payload);
        assert!(!text.contains(&key) && !headers.contains(&key), "the API key crossed NATS on {}", m.subject);
    }
    assert!(seen > 10, "the test saw the traffic ({seen} messages)");
}

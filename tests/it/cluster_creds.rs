//! Worker boxes with NATS credentials files against a real server in operator (JWT) mode:
//! an operator, an account with JetStream and users are made here with the `nkeys` crate
//! (what `nsc` does), the server trusts the operator and preloads the account; the head
//! and a worker join with their `.creds` files and run a stage, and a worker whose user an
//! unknown account signed is refused at once with an error naming `cluster.creds`.

use crate::cluster_support;
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cluster_support::{Nats, WorkerProc, stage_devices, start_head_cfg, wait_boxes, worker_command};
use common::daemon::{is_final, submit_testcard, wait_job};
use nkeys::KeyPair;
use serde_json::{Value, json};

/// A JWT as NATS reads it: `ed25519-nkey` signed by `issuer`, about `subject`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = json!({
        "jti": ulid::Ulid::new().to_string(),
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let sig = issuer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An account without limits, signed by `operator`, with JetStream when `jetstream` (the
/// system account may not have it).
fn account_jwt(operator: &KeyPair, account: &KeyPair, jetstream: bool) -> String {
    let js = if jetstream { -1 } else { 0 };
    let limits = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": js, "disk_storage": js, "streams": js, "consumer": js});
    let nats =
        json!({"limits": limits, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2});
    jwt(operator, &account.public_key(), "reelbox", nats)
}

/// Writes a `.creds` file (user JWT + seed, as `nsc` does) for a new user of `account`.
fn creds_file(dir: &Path, name: &str, account: &KeyPair) -> PathBuf {
    let user = KeyPair::new_user();
    let nats = json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
    let token = jwt(account, &user.public_key(), name, nats);
    let seed = user.seed().expect("seed");
    let text = format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    let path = dir.join(format!("{name}.creds"));
    std::fs::write(&path, text).expect("write creds");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_join_with_creds_files_against_an_operator_mode_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    // JetStream in operator mode needs a system account.
    let system = KeyPair::new_account();
    let op_jwt = jwt(&operator, &operator.public_key(), "reelbox-operator", json!({"type": "operator", "version": 2}));
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{}}\noperator: {op_jwt:?}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {:?}\n  {}: {:?}\n}}\n",
            system.public_key(),
            account.public_key(),
            account_jwt(&operator, &account, true),
            system.public_key(),
            account_jwt(&operator, &system, false)
        ),
    )
    .expect("write nats.conf");
    let check =
        std::process::Command::new("nats-server").arg("-t").arg("-c").arg(&conf).output().expect("nats-server -t");
    assert!(check.status.success(), "nats-server refused the config: {}", String::from_utf8_lossy(&check.stderr));
    let nats = Nats::start_args(dir.path(), &["-c", conf.to_str().expect("utf-8")]);
    let creds =
        |name: &str, acc: &KeyPair| format!("creds = {:?}", creds_file(dir.path(), name, acc).display().to_string());
    let head = start_head_cfg(
        &dir.path().join("head"),
        &nats,
        &format!("{}\nlocal_work = false", creds("head", &account)),
        &[],
    );
    let _w1 = WorkerProc::start_cfg(&dir.path().join("w1"), &nats, "w1", &creds("w1", &account));
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;
    let id = submit_testcard(&http, &head, json!({"steps": 2, "step_ms": 50})).await;
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert!(stage_devices(&j).iter().all(|d| d == "w1/cpu"), "{j}");

    // A user signed by an account the server does not know is refused at once.
    let stranger = creds("w2", &KeyPair::new_account());
    let mut child = worker_command(&dir.path().join("w2"), &nats, "w2", &stranger, &[])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("a worker with an unknown account's creds did not exit");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(err.contains("refused") && err.contains("cluster.creds"), "unknown account: {err}");
}

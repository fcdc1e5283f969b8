//! Per-box NATS permissions, real processes: `reelbox cluster nats-config` writes a
//! nats-server config with one nkey user per box; the server runs with it, the head and
//! two workers join with their own seeds and run stages; a client holding w1's seed is
//! refused by the server (permissions violation) when it publishes a result or progress as
//! w2, reads w2's work subject, fetches from w2's consumer, or reads or writes w2's
//! artifact bucket; after the stages both boxes' buckets are empty. A box started before
//! the head (on a server an older reelbox used) waits for it, saying so, stops on SIGTERM
//! meanwhile, and then works; a box holding another box's seed is told so at once.

use crate::cluster_support;
use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{
    Nats, WorkerProc, assert_buckets_empty, run_testcards, stage_devices, start_head_cfg, wait_boxes,
};
use common::daemon::{is_final, submit_testcard, wait_job};
use reelbox::cluster::protocol::{inbox_prefix, object_bucket, progress_subject, result_subject};
use serde_json::json;

/// Runs `reelbox cluster nats-config --boxes w1,w2 --out DIR/nats.conf`; the config's
/// path and each box's seed from the printed `NAME: nkey = "SU…"` lines.
fn nats_config(dir: &Path) -> (String, HashMap<String, String>) {
    let conf = dir.join("nats.conf");
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["cluster", "nats-config", "--boxes", "w1,w2", "--out"])
        .arg(&conf)
        .output()
        .expect("run nats-config");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "nats-config failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let seeds: HashMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.split_once(": nkey = "))
        .map(|(name, seed)| (name.to_string(), seed.trim_matches('"').to_string()))
        .collect();
    assert_eq!(seeds.len(), 3, "a seed each for head, w1 and w2: {stdout}");
    let text = std::fs::read_to_string(&conf).expect("config written");
    assert!(seeds.values().all(|s| s.starts_with("SU") && !text.contains(s.as_str())), "no seed in the server config");
    (conf.to_string_lossy().into_owned(), seeds)
}

/// Waits up to 5 s for a server error naming `what`; returns every error seen.
async fn refused(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    let t0 = Instant::now();
    let mut seen = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), errors.recv()).await {
            seen.push_str(&e);
            seen.push('\n');
            if e.to_lowercase().contains("permissions violation") && e.contains(what) {
                return seen;
            }
        }
    }
    panic!("the server never refused {what}: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_box_uses_only_its_own_subjects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, seeds) = nats_config(dir.path());
    let log = dir.path().join("nats.log");
    let nats = Nats::start_args(dir.path(), &["-c", &conf, "-l", log.to_str().expect("utf-8")]);
    // inline_kib = 0: every artifact crosses through the boxes' buckets, under their users.
    let nkey = |name: &str| format!("nkey = {:?}\ninline_kib = 0", seeds[name]);
    let head = start_head_cfg(&dir.path().join("head"), &nats, &format!("{}\nlocal_work = false", nkey("head")), &[]);
    let _w1 = WorkerProc::start_cfg(&dir.path().join("w1"), &nats, "w1", &nkey("w1"));
    let _w2 = WorkerProc::start_cfg(&dir.path().join("w2"), &nats, "w2", &nkey("w2"));
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1", "w2"]).await;

    // Both boxes run stages under their own users.
    let (devices, ids) = run_testcards(&http, &head, 4, 5, Some(&log)).await;
    assert_eq!(devices, BTreeSet::from(["w1/cpu".to_string(), "w2/cpu".to_string()]), "both boxes ran stages");
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!server_log.contains("Violation"), "the boxes' own work needs no more rights: {server_log}");

    // Each box's artifacts travelled in its own bucket, and the head left nothing there.
    let admin = head_client(&nats, &seeds).await;
    let admin_js = async_nats::jetstream::new(admin.clone());
    for b in ["w1", "w2"] {
        admin_js.get_object_store(object_bucket(b)).await.expect("a bucket for each box that ran stages");
    }
    assert!(admin_js.get_object_store("reelbox_artifacts").await.is_err(), "no bucket shared by the boxes");
    assert_buckets_empty(&admin, &["w1", "w2"]).await;

    // w1's seed cannot speak for w2 nor read its work.
    let (tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let intruder = async_nats::ConnectOptions::with_nkey(seeds["w1"].clone())
        .custom_inbox_prefix(inbox_prefix("w1"))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(nats.url())
        .await
        .expect("w1's seed connects");
    let forged =
        json!({"key": {"job": ids[0], "stage": 0, "attempt": 1}, "host": "w2", "outcome": {"outcome": "canceled"}});
    intruder.publish(result_subject("w2"), forged.to_string().into()).await.expect("sent");
    intruder.flush().await.expect("flush");
    refused(&mut errors, "Publish to \"reelbox.result.w2\"").await;
    let progress = progress_subject("w2", ids[0].parse().expect("job id"));
    intruder.publish(progress.clone(), "{}".into()).await.expect("sent");
    intruder.flush().await.expect("flush");
    refused(&mut errors, &format!("Publish to \"{progress}\"")).await;
    let _sub = intruder.subscribe("reelbox.work.w2").await.expect("sent");
    intruder.flush().await.expect("flush");
    refused(&mut errors, "Subscription to \"reelbox.work.w2\"").await;
    let next = "$JS.API.CONSUMER.MSG.NEXT.REELBOX_WORK.box-w2";
    intruder.publish_with_reply(next, "_INBOX_w1.x", "1".into()).await.expect("sent");
    intruder.flush().await.expect("flush");
    refused(&mut errors, next).await;

    // w1's seed binds its own bucket, but can neither write nor read w2's.
    let js = async_nats::jetstream::new(intruder.clone());
    js.get_object_store(object_bucket("w1")).await.expect("w1 binds its own bucket");
    let theirs = object_bucket("w2");
    for api in ["STREAM.INFO", "DIRECT.GET", "STREAM.MSG.GET", "CONSUMER.CREATE"] {
        let subject = format!("$JS.API.{api}.OBJ_{theirs}");
        intruder.publish_with_reply(subject.clone(), "_INBOX_w1.y", "{}".into()).await.expect("sent");
        intruder.flush().await.expect("flush");
        refused(&mut errors, &format!("Publish to \"{subject}\"")).await;
    }
    let chunk = format!("$O.{theirs}.C.forged");
    intruder.publish(chunk.clone(), "bytes".into()).await.expect("sent");
    intruder.flush().await.expect("flush");
    refused(&mut errors, &format!("Publish to \"{chunk}\"")).await;
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(server_log.contains("Violation"), "the server logs what it refused: {server_log}");

    // `cluster status --nats` with a box's own config: refused reading the others'
    // heartbeats, it says why and what to use instead.
    let status = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["cluster", "status", "--nats", &nats.url(), "--config"])
        .arg(dir.path().join("w1").join("cfg").join("config.toml"))
        .output()
        .expect("cluster status --nats");
    let err = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success(), "{err}");
    assert!(
        err.contains("a box's own user may not read the others' heartbeats") && err.contains("head's nkey"),
        "{err}"
    );
}

/// A client with the head's seed (every right).
async fn head_client(nats: &Nats, seeds: &HashMap<String, String>) -> async_nats::Client {
    async_nats::ConnectOptions::with_nkey(seeds["head"].clone())
        .connect(nats.url())
        .await
        .expect("head's seed connects")
}

/// Upgrading a server to per-box users, box first: on a server where an older reelbox left
/// its results stream (one subject, `reelbox.result`) and nothing else, w1 starts before
/// the head. Its user may not make or change a stream, so it waits, saying what it waits
/// for and naming the head, instead of exiting; once the head connects (and updates the
/// stream) w1 joins and runs a stage, and the server never refused anyone anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_started_before_the_head_waits_for_it() {
    use async_nats::jetstream::stream;
    let dir = tempfile::tempdir().expect("tempdir");
    let (conf, seeds) = nats_config(dir.path());
    let log = dir.path().join("nats.log");
    let nats = Nats::start_args(dir.path(), &["-c", &conf, "-l", log.to_str().expect("utf-8")]);
    let admin = head_client(&nats, &seeds).await;
    let js = async_nats::jetstream::new(admin);
    js.create_stream(stream::Config {
        name: "REELBOX_RESULTS".into(),
        subjects: vec!["reelbox.result".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("the older reelbox's results stream");

    let nkey = |name: &str| format!("nkey = {:?}", seeds[name]);
    let w1_log = dir.path().join("w1.log");
    let _w1 = WorkerProc::start_logged(&dir.path().join("w1"), &nats, "w1", &nkey("w1"), &w1_log);
    let t0 = Instant::now();
    let said = loop {
        let text = std::fs::read_to_string(&w1_log).unwrap_or_default();
        if text.contains("waiting for the head") {
            break text;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "w1 never said it waits for the head: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(said.contains("REELBOX_RESULTS is from an older reelbox"), "{said}");
    assert!(said.contains("REELBOX_WORK does not exist yet") && said.contains("reelbox serve"), "{said}");
    // A waiting box stops on SIGTERM (systemctl stop), not after systemd's timeout.
    let mut w2 = WorkerProc::start_cfg(&dir.path().join("w2"), &nats, "w2", &nkey("w2"));
    let stopped = w2.terminate_within(Duration::from_secs(10));
    assert!(
        stopped.is_some_and(|t| t < Duration::from_secs(5)),
        "w2 waiting for the head ignored SIGTERM: {stopped:?}"
    );

    let head = start_head_cfg(&dir.path().join("head"), &nats, &format!("{}\nlocal_work = false", nkey("head")), &[]);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;
    let id = submit_testcard(&http, &head, json!({"steps": 2, "step_ms": 10})).await;
    let j = wait_job(&http, &head, &id, Duration::from_secs(60), is_final).await;
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(stage_devices(&j), ["w1/cpu", "w1/cpu"], "card and summary ran on w1: {j}");
    // The summary's input (the card) crossed in w1's bucket too; nothing is left there.
    assert_buckets_empty(&js.client(), &["w1"]).await;
    let results = js.get_stream("REELBOX_RESULTS").await.expect("results stream");
    assert_eq!(results.cached_info().config.subjects, ["reelbox.result.>"], "the head updated it");
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!server_log.contains("Violation"), "w1 only bound what the head made: {server_log}");
    let w1_said = std::fs::read_to_string(&w1_log).unwrap_or_default();
    assert!(w1_said.contains("stage done"), "w1's log says how its stages ended: {w1_said}");

    // w1's seed pasted into box w3's config: said at once, naming the setting and the box.
    let t0 = Instant::now();
    let out = cluster_support::worker_command(&dir.path().join("w3"), &nats, "w3", &nkey("w1"), &[])
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run w3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "w3 with w1's seed ran: {err}");
    assert!(err.contains("the nkey (cluster.nkey) use box w3's own inbox") && err.contains("another box's"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "said after {:?}: {err}", t0.elapsed());
}

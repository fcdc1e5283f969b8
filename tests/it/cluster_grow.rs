//! A cluster over months, real processes: a box added later with `reelbox cluster
//! nats-config --add-to` joins while the boxes already there keep their seeds (a config
//! from before per-box buckets is upgraded on the way), and the head cleans up the
//! buckets of boxes that left and the shared bucket an older reelbox left behind.

use crate::cluster_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{
    Nats, WorkerProc, assert_buckets_empty, cluster_status, run_testcards, start_head_cfg, start_head_logged,
    wait_boxes, wait_only_boxes,
};
use reelbox::cluster::protocol::object_bucket;

/// The frozen config's seeds (test-only keys, made for it): its head and box `w1`.
const HEAD_SEED: &str = "SUAI4OC75VPXFM2CPQJCEAAQWT3NYPMR2XKI4Z5WNWBH4JNBIZBW2SAGLI";
const W1_SEED: &str = "SUAOUIOTTVRSMM2CUFAPYYXUBMXMHI5UUGR4FUZW2SXRSCZWEHTLQZRZ2M";

/// `reelbox cluster nats-config ARGS`: success, standard output and standard error.
fn nats_config(args: &[&str], conf: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["cluster", "nats-config"])
        .args(args)
        .arg("--add-to")
        .arg(conf)
        .output()
        .expect("run nats-config");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A config from before per-box buckets (head + w1) runs the server; `--add-to` adds w3,
/// keeping head's and w1's keys byte for byte and rewriting w1's rights to its own bucket
/// (and saying so). After a reload, w1 (its process not restarted, its old seed) and w3 (the new
/// seed) both run stages with every artifact through their buckets, and nothing is refused.
/// Then `--remove w1` takes w1's user out (the head and an unknown name are refused, naming
/// the flag; every other user stays byte for byte): after a reload the server refuses w1's
/// seed and drops its connection (w1 says why), and w3 keeps running stages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_added_later_joins_and_the_others_keep_their_seeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("nats.conf");
    let frozen = include_str!("cluster_support/nats-before-per-box-buckets.conf");
    // The store dir in the file too, as the README says: nats-server reloads only then.
    let store = format!("jetstream {{ store_dir: {:?} }}", Nats::store_dir(dir.path()));
    let written = frozen.replace("jetstream {}", &store);
    std::fs::write(&conf, &written).expect("config");
    let log = dir.path().join("nats.log");
    let nats = Nats::start_reloadable(dir.path(), &conf, &["-l", log.to_str().expect("utf-8")]);
    let cfg = |seed: &str| format!("nkey = {seed:?}\ninline_kib = 0");
    let head = start_head_cfg(&dir.path().join("head"), &nats, &format!("{}\nlocal_work = false", cfg(HEAD_SEED)), &[]);
    let w1_log = dir.path().join("w1.log");
    let _w1 = WorkerProc::start_logged(&dir.path().join("w1"), &nats, "w1", &cfg(W1_SEED), &w1_log);
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1"]).await;

    let (ok, stdout, stderr) = nats_config(&["--boxes", "w3"], &conf);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("w1: its rights were an older reelbox's (one artifact bucket shared by all boxes)"),
        "{stdout}"
    );
    let seeds: Vec<(&str, &str)> = stdout.lines().filter_map(|l| l.split_once(": nkey = ")).collect();
    assert_eq!(seeds.iter().map(|s| s.0).collect::<Vec<_>>(), ["w3"], "a seed for the new box only: {stdout}");
    let w3_seed = seeds[0].1.trim_matches('"').to_string();
    let text = std::fs::read_to_string(&conf).expect("extended config");
    for kept in frozen.lines().filter(|l| l.contains("nkey: ") || l.starts_with('#')) {
        let line = kept.split("permissions").next().unwrap_or(kept);
        assert!(text.contains(line), "{line:?} stays byte for byte:\n{text}");
    }
    assert!(!text.contains("\"$O.reelbox_artifacts.>\"") && text.contains("# box \"w3\""), "{text}");
    assert_eq!(std::fs::read_to_string(dir.path().join("nats.conf.bak")).expect("backup"), written);
    let checked = Command::new("nats-server").arg("-t").arg("-c").arg(&conf).output().expect("nats-server -t");
    assert!(checked.status.success(), "nats-server -t refused it: {}", String::from_utf8_lossy(&checked.stderr));

    // A name already there is refused, naming the flag; the file stays.
    let (ok, _, stderr) = nats_config(&["--boxes", "w1"], &conf);
    assert!(!ok && stderr.contains("--boxes") && stderr.contains("\"w1\" is already in"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&conf).expect("config"), text);

    // A reload (the file names its store dir): w1 is not restarted and gets its new rights.
    nats.reload();
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("Reloaded server configuration") {
        let server_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(t0.elapsed() < Duration::from_secs(5), "nats-server did not reload:\n{server_log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _w3 = WorkerProc::start_cfg(&dir.path().join("w3"), &nats, "w3", &cfg(&w3_seed));
    wait_boxes(&http, &head, &["w1", "w3"]).await;
    let (devices, _) = run_testcards(&http, &head, 4, 4, Some(&log)).await;
    assert_eq!(devices, BTreeSet::from(["w1/cpu".to_string(), "w3/cpu".to_string()]), "both boxes ran stages");
    // After the reload: before it, w1's old rights refused its one read of its own heartbeat.
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    let reloaded = server_log.split("Reloaded server configuration").nth(1).unwrap_or_default();
    assert!(!reloaded.contains("Violation"), "w1's upgraded rights and w3's suffice: {server_log}");
    let admin = async_nats::ConnectOptions::with_nkey(HEAD_SEED.into()).connect(nats.url()).await.expect("head seed");
    assert_buckets_empty(&admin, &["w1", "w3"]).await;

    for (name, said) in [("head", "\"head\" is the head's own user"), ("w9", "no box \"w9\" in")] {
        let (ok, _, stderr) = nats_config(&["--remove", name], &conf);
        assert!(!ok && stderr.contains("--remove") && stderr.contains(said), "{stderr}");
        assert_eq!(std::fs::read_to_string(&conf).expect("config"), text, "refused: the file stays");
    }
    let (ok, stdout, stderr) = nats_config(&["--remove", "w1"], &conf);
    assert!(ok && stdout.contains("`nats-server --signal reload` (the file names its store_dir)"), "{stdout}{stderr}");
    let w1_entry = &text[text.find("    # box \"w1\"").expect("w1")..text.find("    # box \"w3\"").expect("w3")];
    let fewer = std::fs::read_to_string(&conf).expect("config without w1");
    assert_eq!(fewer, text.replace(w1_entry, ""), "only w1's user goes; the others stay byte for byte");
    let checked = Command::new("nats-server").arg("-t").arg("-c").arg(&conf).output().expect("nats-server -t");
    assert!(checked.status.success(), "nats-server -t refused it: {}", String::from_utf8_lossy(&checked.stderr));
    nats.reload();
    until(5, "the second reload", async || {
        std::fs::read_to_string(&log).unwrap_or_default().matches("Reloaded server configuration").count() == 2
    })
    .await;
    let refused = async_nats::ConnectOptions::with_nkey(W1_SEED.into()).connect(nats.url()).await;
    assert!(refused.is_err(), "the server still takes the removed box's seed");
    // The server dropped w1's connection: its heartbeat expires, and w1 says why.
    wait_only_boxes(&http, &head, &["w3"]).await;
    let said = std::fs::read_to_string(&w1_log).unwrap_or_default();
    assert!(said.contains("no longer takes the nkey (cluster.nkey)") && said.contains("--remove"), "{said}");
    let (devices, _) = run_testcards(&http, &head, 2, 2, Some(&log)).await;
    assert_eq!(devices, BTreeSet::from(["w3/cpu".to_string()]), "w3 keeps its seed and runs them");
}

/// Waits up to `secs` for `what` to hold; how long it took.
async fn until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    t0.elapsed()
}

/// With `forget_box_after_h = 0.002` (7.2 s): the empty shared bucket an older reelbox left
/// is deleted when the head connects; the bucket of a box killed after its stages goes once
/// its heartbeat has been gone that long, counted across a restart of the head in between
/// (the box still there keeps its own), with its work
/// consumer and heartbeat key, and a box that never ran a stage loses its consumer; the
/// head's log says what went; `reelbox cluster status` shows what a bucket holds; the box
/// comes back and runs a stage in a bucket made again, and the box that only stopped
/// answering makes its consumer again and runs one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_of_boxes_long_gone_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let admin = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(admin.clone());
    let shared =
        async_nats::jetstream::object_store::Config { bucket: "reelbox_artifacts".into(), ..Default::default() };
    js.create_object_store(shared).await.expect("the bucket an older reelbox shared among boxes");

    let log = dir.path().join("head.log");
    let extra = "local_work = false\ninline_kib = 0\nforget_box_after_h = 0.002";
    let mut head = start_head_logged(&dir.path().join("head"), &nats, extra, &log);
    let head_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let exists = async |bucket: String| js.get_stream(format!("OBJ_{bucket}")).await.is_ok();
    let said_shared = "deleted the artifact bucket reelbox_artifacts that boxes shared";
    until(10, "the empty shared bucket deleted, the head saying so", async || {
        !exists("reelbox_artifacts".into()).await && head_log().contains(said_shared)
    })
    .await;

    let _w1 = WorkerProc::start(&dir.path().join("w1"), &nats, "w1");
    let mut w2 = WorkerProc::start(&dir.path().join("w2"), &nats, "w2");
    let http = reqwest::Client::new();
    wait_boxes(&http, &head, &["w1", "w2"]).await;
    let (devices, _) = run_testcards(&http, &head, 4, 4, None).await;
    assert_eq!(devices, BTreeSet::from(["w1/cpu".to_string(), "w2/cpu".to_string()]), "both boxes ran stages");
    assert!(exists(object_bucket("w1")).await && exists(object_bucket("w2")).await);

    // Objects piling up in a box's bucket show in `reelbox cluster status`.
    let w2_bucket = js.get_object_store(object_bucket("w2")).await.expect("w2's bucket");
    w2_bucket.put("leftover", &mut &[7u8; 1500][..]).await.expect("a leftover object");
    until(15, "the head counts the leftover", async || {
        let view: serde_json::Value =
            http.get(head.at("/api/v1/cluster")).send().await.expect("cluster").json().await.expect("json");
        view["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["host"] == "w2" && b["objects"] == 1 && b["bytes"] == 1500)
    })
    .await;
    let status = cluster_status(dir.path(), &head, &[]);
    let table = String::from_utf8_lossy(&status.stdout);
    let row = table.lines().find(|l| l.contains("reelbox_artifacts_w2")).unwrap_or_default();
    assert!(row.contains(" 1 ") && row.contains("1.5 kB") && row.contains("alive"), "{table}");

    // w3 joins and runs nothing (no bucket, only its consumer), then stops answering.
    let w3 = WorkerProc::start(&dir.path().join("w3"), &nats, "w3");
    wait_boxes(&http, &head, &["w1", "w2", "w3"]).await;
    let work = js.get_stream("REELBOX_WORK").await.expect("work stream");
    w3.signal("STOP");
    w2.kill9();
    let killed = Instant::now();
    // The head restarts while w2 is gone, 6 s after, before the setting has run out (w2's
    // heartbeat expires at 2 s): its clock goes on, and the bucket goes ~3 s after the
    // restart, not 7.2 s after it.
    wait_only_boxes(&http, &head, &["w1"]).await;
    tokio::time::sleep_until((killed + Duration::from_secs(6)).into()).await;
    head.kill9();
    let restarted = Instant::now();
    let head = start_head_logged(&dir.path().join("head"), &nats, extra, &log);
    let said_w2 = "deleted the artifact bucket reelbox_artifacts_w2 of box w2";
    until(20, "w2's bucket deleted, the head saying so", async || {
        !exists(object_bucket("w2")).await && head_log().contains(said_w2)
    })
    .await;
    let took = killed.elapsed();
    // Its heartbeat (2 s) expires, then the 7.2 s setting runs.
    assert!(took > Duration::from_millis(3600), "deleted after {took:?}, before the setting");
    assert!(took > Duration::from_millis(7200), "deleted after {took:?}, before the setting");
    let after = restarted.elapsed();
    assert!(after < Duration::from_millis(7200), "the restart reset the clock: deleted {after:?} after it");
    assert!(exists(object_bucket("w1")).await, "w1 is alive: its bucket stays");
    let said = head_log();
    assert!(said.contains("cluster.forget_box_after_h"), "{said}");
    assert!(said.contains("1 leftover object(s) went with it"), "{said}");
    // Its work consumer and heartbeat key went in the same step; w3's consumer too (it had
    // no bucket), the log saying so; w1's stays.
    assert!(said.contains("also deleted its work consumer box-w2 (0 queued stage(s) with it)"), "{said}");
    assert!(said.contains("and its last-seen record"), "{said}");
    until(10, "w3 forgotten, the head saying so", async || {
        head_log().contains("forgot box w3: its heartbeat has been gone for")
    })
    .await;
    for gone in ["box-w2", "box-w3"] {
        assert!(work.consumer_info(gone).await.is_err(), "{gone} is left on the server");
    }
    assert!(work.consumer_info("box-w1").await.is_ok(), "w1 is alive: its consumer stays");
    let boxes_kv = js.get_key_value("reelbox_boxes").await.expect("heartbeat bucket");
    for gone in ["w2", "w3"] {
        assert!(boxes_kv.entry(gone).await.expect("read the key").is_none(), "{gone}'s heartbeat key is left");
    }

    // The box comes back; with w1 gone its stage needs the bucket made again.
    drop(_w1);
    let _w2 = WorkerProc::start(&dir.path().join("w2"), &nats, "w2");
    let (devices, _) = run_testcards(&http, &head, 1, 4, None).await;
    assert_eq!(devices, BTreeSet::from(["w2/cpu".to_string()]), "w2 ran it");
    assert_buckets_empty(&admin, &["w2"]).await;

    // w3 answers again without a restart (a long network cut): it makes its consumer again.
    drop(_w2);
    w3.signal("CONT");
    wait_only_boxes(&http, &head, &["w3"]).await;
    let (devices, _) = run_testcards(&http, &head, 1, 2, None).await;
    assert_eq!(devices, BTreeSet::from(["w3/cpu".to_string()]), "w3 ran it with its consumer made again");
}

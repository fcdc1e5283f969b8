//! The store survives a full disk: a real daemon on a small tmpfs, filled during a job;
//! and below `limits.min_free_disk_bytes` new work is refused before it starts.
//! Needs root (mount); skipped with a line on stderr otherwise.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{DaemonProc, is_final, submit_testcard, wait_job};
use serde_json::{Value, json};

/// Unmounts the tmpfs when the test ends, pass or fail.
pub(crate) struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A 16 MiB tmpfs at `dir` (also `byo_mistakes`' full disk); `None` without root.
pub(crate) fn mount_tmpfs(dir: &Path) -> Option<Mount> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipping: the full-disk test needs root to mount a tmpfs");
        return None;
    }
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(dir).status();
    if !ok.is_ok_and(|s| s.success()) {
        eprintln!("skipping: cannot mount a tmpfs at {}", dir.display());
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

/// Appends zeros to `path` until the filesystem refuses with ENOSPC; called again to take
/// back what the daemon frees (its removed temp files), as a disk kept full would.
fn fill(path: &Path) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open filler");
    let chunk = vec![0u8; 1 << 16];
    loop {
        if let Err(e) = f.write_all(&chunk) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "filling stopped for another reason: {e}");
            return;
        }
    }
}

async fn readyz(c: &reqwest::Client, d: &DaemonProc) -> (u16, String) {
    let resp = c.get(d.at("/readyz")).send().await.expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn wait_ready(c: &reqwest::Client, d: &DaemonProc, want: u16, timeout: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let (status, body) = readyz(c, d).await;
        if status == want {
            return body;
        }
        assert!(t0.elapsed() < timeout, "/readyz stayed {status} ({body}), wanted {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_job_and_the_daemon_recovers_when_space_returns() {
    let outer = tempfile::tempdir().expect("tempdir");
    let data = outer.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let Some(_mount) = mount_tmpfs(&data) else { return };
    // One attempt, so the job ends `failed` rather than being retried after space returns;
    // no free-space floor, so the job starts on the small disk and meets it full.
    let cfg = outer.path().join("c.toml");
    let toml = "[queue]\nmax_attempts = 1\nretry_backoff_s = 0\n[limits]\nmin_free_disk_bytes = 0\n";
    std::fs::write(&cfg, toml).expect("config");
    let env = [("REELBOX_CONFIG", cfg.to_str().expect("utf8"))];
    let c = reqwest::Client::new();
    let d = DaemonProc::start(&data, &env);
    wait_ready(&c, &d, 200, Duration::from_secs(5)).await;

    let id = submit_testcard(&c, &d, json!({"steps": 15, "step_ms": 100, "width": 64, "height": 36})).await;
    wait_job(&c, &d, &id, Duration::from_secs(5), |j| j["state"] == "running").await;
    let filler = data.join("filler");
    fill(&filler);
    let body = wait_ready(&c, &d, 503, Duration::from_secs(5)).await;
    let lower = body.to_lowercase();
    assert!(lower.contains("no space left on device"), "503 body should name the full disk: {body}");
    assert!(body.contains(&data.display().to_string()), "503 body should name the data dir: {body}");
    // Let the job reach its artifact write, which the full disk refuses.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // The daemon frees its temp files after the refused write, so a probe right after one
    // fill can find those pages free: refill until the disk stays full (a kept-full disk).
    let mut still_full = false;
    for _ in 0..20 {
        fill(&filler);
        if readyz(&c, &d).await.0 == 503 {
            still_full = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(still_full, "/readyz should stay 503 while the disk is kept full");

    std::fs::remove_file(&filler).expect("free space");
    wait_ready(&c, &d, 200, Duration::from_secs(10)).await;
    let done = wait_job(&c, &d, &id, Duration::from_secs(10), |j| j["state"] != "running").await;
    assert!(matches!(done["state"].as_str(), Some("failed" | "queued")), "job after a full disk: {done}");
    let error = done["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("no space left on device"), "error should name the full disk: {done}");
    assert!(error.contains(&data.display().to_string().to_lowercase()), "error should name the data dir: {done}");

    // No restart: a new job runs to success.
    let again = submit_testcard(&c, &d, json!({"steps": 2, "step_ms": 10, "width": 64, "height": 36})).await;
    let ok = wait_job(&c, &d, &again, Duration::from_secs(10), is_final).await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    drop(d);

    // The database opens intact after all that.
    let d = DaemonProc::start(&data, &env);
    let list: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("list").json().await.expect("list json");
    let text = list.to_string();
    assert!(text.contains(&id) && text.contains(&again), "both jobs listed after restart: {list}");
}

async fn disk_view(c: &reqwest::Client, d: &DaemonProc) -> Value {
    let v: Value = c.get(d.at("/api/v1/system")).send().await.expect("system").json().await.expect("json");
    v["disk"].clone()
}

/// A 16 MiB disk keeping 8 MiB free: work is taken while there is room, refused (507,
/// saying what to delete) once a file takes the disk below the floor, nothing of it is
/// queued or stored, a job queued before waits saying why, and work is taken and the
/// waiting job runs once the file is gone; `/api/v1/system` shows the disk as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_floor_new_work_is_refused_until_space_returns() {
    let outer = tempfile::tempdir().expect("tempdir");
    let data = outer.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let Some(_mount) = mount_tmpfs(&data) else { return };
    let cfg = outer.path().join("c.toml");
    std::fs::write(&cfg, format!("[limits]\nmin_free_disk_bytes = {}\n", 8 << 20)).expect("config");
    let c = reqwest::Client::new();
    let d = DaemonProc::start(&data, &[("REELBOX_CONFIG", cfg.to_str().expect("utf8"))]);
    let card = json!({"steps": 1, "step_ms": 0, "width": 64, "height": 36});
    let first = submit_testcard(&c, &d, card.clone()).await;
    wait_job(&c, &d, &first, Duration::from_secs(10), is_final).await;

    // A job queued while there was room, held behind a pause until the disk is low.
    let pause = |what: &'static str| c.post(d.at(&format!("/api/v1/queue/{what}"))).send();
    assert!(pause("pause").await.expect("pause").status().is_success());
    let held = submit_testcard(&c, &d, card.clone()).await;

    // Leave 4 MiB free.
    let disk = disk_view(&c, &d).await;
    let free = disk["data"]["free_bytes"].as_u64().expect("free bytes");
    assert_eq!(disk["min_free_bytes"], 8 << 20, "{disk}");
    let filler = data.join("filler");
    std::fs::write(&filler, vec![0u8; (free - (4 << 20)) as usize]).expect("fill");
    let disk = disk_view(&c, &d).await;
    assert!(disk["data"]["free_bytes"].as_u64().is_some_and(|f| f < 8 << 20), "{disk}");

    let resp = c.post(d.at("/api/v1/jobs")).json(&json!({"kind": "testcard", "params": card})).send().await;
    let resp = resp.expect("submit");
    assert_eq!(resp.status().as_u16(), 507);
    let v: Value = resp.json().await.expect("json");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(v["error"]["code"], "disk_low", "{v}");
    assert!(message.contains("data dir") && message.contains("limits.min_free_disk_bytes"), "{v}");
    assert!(message.contains("reelbox jobs rm"), "says how to free space: {v}");
    let picture = common::media::png(&common::media::test_picture(32, 32, 1));
    let form =
        reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(picture).file_name("a.png"));
    let resp = c.post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status().as_u16(), 507, "an upload too");
    let list: Value = c.get(d.at("/api/v1/jobs")).send().await.expect("list").json().await.expect("json");
    assert_eq!(list["jobs"].as_array().map(Vec::len), Some(2), "nothing more queued: {list}");

    // Accepted work does not start while the disk is low, and says why it waits.
    assert!(pause("resume").await.expect("resume").status().is_success());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let job: Value =
        c.get(d.at(&format!("/api/v1/jobs/{held}"))).send().await.expect("job").json().await.expect("json");
    assert_eq!(job["state"], "queued", "{job}");
    assert!(job["waiting"].as_str().is_some_and(|w| w.contains("start once space is freed")), "{job}");

    std::fs::remove_file(&filler).expect("free space");
    // It starts by itself once there is room.
    let done = wait_job(&c, &d, &held, Duration::from_secs(10), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let again = submit_testcard(&c, &d, card).await;
    let done = wait_job(&c, &d, &again, Duration::from_secs(10), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// A pull resumed after the disk filled asks only for what its in-progress file lacks: on a
/// 16 MiB disk holding 11.5 MiB of a 12 MiB file, the check lets it go on (here to its
/// source, which is missing), where counting the whole file refused it.
#[test]
fn a_resumed_pull_asks_the_disk_only_for_what_it_lacks() {
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    let Some(_mount) = mount_tmpfs(&models) else { return };
    let share = home.path().join("share");
    std::fs::create_dir_all(share.join("models")).expect("manifest dir");
    let size = 12u64 << 20;
    let manifest = format!(
        "name = \"big\"\nkind = \"upscale\"\nsources = [\"bundled:payload\"]\n\n\
         [[files]]\npath = \"model.onnx\"\nsize = {size}\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    std::fs::write(share.join("models/big.toml"), manifest).expect("manifest");
    let staged = models.join(".staging/big");
    std::fs::create_dir_all(&staged).expect("staging");
    let partial = reelbox::durable::temp_of(&staged.join("model.onnx"));
    std::fs::write(&partial, vec![0u8; (size - (1 << 19)) as usize]).expect("partial");
    let config = home.path().join("c.toml");
    std::fs::write(&config, "[limits]\nmin_free_disk_bytes = 0\n").expect("config");
    let out = common::tools::reelbox_cli(home.path(), &models)
        .args(["pull", "big"])
        .env("REELBOX_SHARE_DIR", &share)
        .env("REELBOX_CONFIG", &config)
        .output()
        .expect("pull");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("models dir"), "the disk check let it on: {err}");
    assert!(err.contains("could not fetch big"), "{err}");
}

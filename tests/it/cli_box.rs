//! The CLI as a family member runs it from a laptop against the box (`--url`, `--key`): a
//! job followed off a terminal says each stage as it goes, `jobs cancel` shows the cancel
//! taking effect, and a missing or refused key is said in the CLI's own terms.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::api::{call, create_key};
use common::daemon::DaemonProc;
use common::tools::{Lines, reelbox_cli, run_ok};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// `reelbox --url <d> ARGS…` as the laptop runs it, with no key unless `ARGS` give one.
fn cli(d: &DaemonProc, home: &Path, args: &[&str]) -> Command {
    let mut cmd = reelbox_cli(home, &home.join("models"));
    cmd.args(["--url", &d.url]).args(args).stdin(Stdio::null());
    cmd
}

#[test]
fn off_a_terminal_watch_says_each_stage_and_cancel_shows_the_job_canceled() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    // A testcard of a minute: running for certain when it is canceled.
    let out = run_ok(&mut cli(&d, home.path(), &["submit", "testcard", "-p", "steps=600", "-p", "step_ms=100"]));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut watch = cli(&d, home.path(), &["jobs", "watch", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("reelbox jobs watch");
    let mut said = Lines::of(watch.stderr.take().expect("stderr"));
    // Before, a script or a pipe got nothing at all until the job ended.
    assert!(said.until("stage 1/2 card: started"), "{}", said.seen.join("\n"));

    let out = run_ok(&mut cli(&d, home.path(), &["jobs", "cancel", &id]));
    let answer = String::from_utf8_lossy(&out.stdout);
    // Before, the answer showed the job still `running`, which reads as a refused cancel.
    let state = answer.lines().find_map(|l| l.strip_prefix("state")).map(str::trim);
    assert_eq!(state, Some("canceled"), "{answer}");
    assert!(answer.contains("canceled by"), "says why: {answer}");

    let out = watch.wait_with_output().expect("reelbox jobs watch");
    let stderr = said.rest();
    assert!(!out.status.success(), "a canceled job is no success: {stderr}");
    assert!(stderr.contains(&format!("job {id} canceled")), "{stderr}");
    assert!(!stderr.contains('\r'), "no bar drawn into a pipe: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_without_a_key_or_with_a_revoked_one_is_told_what_to_pass() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, mum) = create_key(&d, None, json!({"name": "mum", "scope": "admin"})).await;
    let (kid_id, kid) = create_key(&d, Some(&mum), json!({"name": "kid"})).await;
    let refused = |key: Option<&str>| {
        let mut cmd = cli(&d, home.path(), &["profiles", "list"]);
        if let Some(k) = key {
            cmd.args(["--key", k]);
        }
        let out = cmd.output().expect("reelbox profiles list");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{stderr}");
        stderr
    };

    // Before: "send `Authorization: Bearer KEY`", words for an HTTP client, not a CLI user.
    let missing = refused(None);
    assert!(missing.contains("pass --key KEY or set REELBOX_KEY"), "{missing}");
    assert!(missing.contains("whoever runs the box makes one with `reelbox keys create NAME`"), "{missing}");
    assert!(!missing.contains("Authorization"), "{missing}");

    let mistyped = refused(Some("rb_not-the-key"));
    assert!(mistyped.contains("refused the key given with --key or REELBOX_KEY"), "{mistyped}");
    assert!(mistyped.contains("not valid (mistyped or revoked)"), "the daemon's reason stays: {mistyped}");

    let (status, v) = call(Some(&mum), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let revoked = refused(Some(&kid));
    assert!(revoked.contains("--key or REELBOX_KEY") && revoked.contains("\"kid\" was revoked at"), "{revoked}");
}

#[test]
fn a_box_that_does_not_answer_is_said_and_its_work_is_not_run_on_the_laptop_instead() {
    let home = tempfile::tempdir().expect("tempdir");
    let out_file = home.path().join("hello.wav");
    // A documentation address (TEST-NET-1): nothing answers there.
    let mut cmd = reelbox_cli(home.path(), &home.path().join("models"));
    cmd.args(["--url", "http://192.0.2.7:8470", "say", "Hello.", "-o"]).arg(&out_file).stdin(Stdio::null());
    let out = cmd.output().expect("reelbox say");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It ran "in this process" on the laptop, with the laptop's models (none).
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the box at http://192.0.2.7:8470 does not answer"), "{stderr}");
    assert!(stderr.contains("nothing was sent") && !stderr.contains("running in this process"), "{stderr}");
    assert!(!out_file.exists());
}

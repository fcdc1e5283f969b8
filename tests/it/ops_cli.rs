//! The CLI as whoever looks after the box runs it over SSH: a broken config is said rather
//! than guessed around, and keys are made the way the hints say.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::daemon::DaemonProc;
use common::tools::{reelbox_cli, run_ok};

/// `reelbox ARGS…` on the box, with no key, URL or config unless the test gives one.
fn on_box(home: &Path, args: &[&str]) -> Command {
    let mut cmd = reelbox_cli(home, &home.join("models"));
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn failed(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run reelbox");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{cmd:?} should fail: {stderr}");
    (out.status.code(), stderr)
}

#[test]
fn a_broken_config_is_named_instead_of_sending_people_to_the_default_port() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let bind = d.url.trim_start_matches("http://");
    let config = home.path().join("c.toml");
    // The admin's typo in a config the running daemon has not read yet.
    std::fs::write(&config, format!("bind = \"{bind}\"\n\n[queue]\nmax_queued = \"lots\"\n")).expect("config");

    let (code, stderr) = failed(on_box(home.path(), &["jobs", "list"]).env("REELBOX_CONFIG", &config));
    assert_eq!(code, Some(1), "{stderr}");
    // Before: "no reelbox daemon answers at http://127.0.0.1:8470 (start one …)".
    assert!(!stderr.contains("8470") && !stderr.contains("no reelbox daemon answers"), "{stderr}");
    assert!(stderr.contains("the config is invalid"), "{stderr}");
    assert!(stderr.contains(&config.display().to_string()) && stderr.contains("line 4"), "file:line: {stderr}");
    assert!(stderr.contains("max_queued") && stderr.contains("pass --url"), "{stderr}");

    // With the address given, the config is not needed to find the daemon.
    run_ok(on_box(home.path(), &["--url", &d.url, "jobs", "list"]).env("REELBOX_CONFIG", &config));
}

#[test]
fn keys_are_made_as_the_hints_say_and_the_box_itself_is_told_it_needs_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let cli = |args: &[&str]| {
        let mut cmd = on_box(home.path(), &["--url", &d.url]);
        cmd.args(args);
        cmd
    };

    // Before: "error: unexpected argument 'admin' found", exit 2.
    let out = run_ok(&mut cli(&["keys", "create", "admin", "--scope", "admin"]));
    let admin = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(admin.starts_with("rb_"), "{admin}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("every reelbox command needs one, on the box itself too"), "{said}");

    // The 401 on the box itself says that its own CLI now needs the key too.
    let (_, stderr) = failed(&mut cli(&["keys", "list"]));
    assert!(stderr.contains("pass --key KEY or set REELBOX_KEY (on this box too"), "{stderr}");
    let hint = "`reelbox keys create NAME`";
    assert!(stderr.contains(hint), "{stderr}");

    // The name as the hint writes it works, and as the flag it always was.
    run_ok(cli(&["keys", "create", "laptop"]).env("REELBOX_KEY", &admin));
    run_ok(cli(&["keys", "create", "--name", "phone"]).env("REELBOX_KEY", &admin));
    let (code, stderr) = failed(cli(&["keys", "create", "a", "--name", "b"]).env("REELBOX_KEY", &admin));
    assert_eq!(code, Some(2), "{stderr}");
    let (code, stderr) = failed(cli(&["keys", "create"]).env("REELBOX_KEY", &admin));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("<NAME>"), "{stderr}");
    let out = run_ok(cli(&["keys", "list"]).env("REELBOX_KEY", &admin));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("laptop") && list.contains("phone") && !list.contains(" a "), "{list}");
}

#[test]
fn status_sums_the_box_up_on_one_screen_and_says_when_no_daemon_answers() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    // Before: "unrecognized subcommand 'status'", with a tip pointing at `setup`.
    let out = run_ok(&mut on_box(home.path(), &["--url", &d.url, "status"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("reelbox  {} at {}", env!("CARGO_PKG_VERSION"), d.url)), "{said}");
    assert!(said.lines().any(|l| l.starts_with("device   cpu: 0 of ")), "{said}");
    assert!(said.contains("jobs     0 running, 0 queued"), "{said}");
    assert!(said.contains("disk     data dir: ") && said.contains("models   "), "{said}");
    drop(d);

    // Port 9 (discard): nothing of reelbox answers there.
    let (code, stderr) = failed(&mut on_box(home.path(), &["--url", "http://127.0.0.1:9", "status"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no reelbox daemon answers at http://127.0.0.1:9"), "{stderr}");
}

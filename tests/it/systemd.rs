//! The service protocol systemd's `Type=notify` + `WatchdogSec=` unit relies on, spoken to
//! a notify socket the test owns.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn messages_until(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < timeout {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("no {want} within {timeout:?}; got {seen:?}");
}

#[test]
fn serve_notifies_ready_pings_the_watchdog_and_notifies_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let path = path.to_string_lossy().into_owned();
    // systemd names the watched process in WATCHDOG_PID; `exec` keeps the shell's pid.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve --bind 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_reelbox"))
        .arg(dir.path().join("data"))
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .env("REELBOX_LOG", "warn")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn reelbox serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    assert!(line.starts_with("reelbox listening on"), "{line}");
    messages_until(&sock, "READY=1", Duration::from_secs(5));
    // Half the 400 ms interval: several pings in a second.
    let t0 = Instant::now();
    for _ in 0..3 {
        messages_until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    }
    assert!(t0.elapsed() < Duration::from_millis(1500), "pings every ~200 ms, took {:?}", t0.elapsed());
    Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(child.wait().expect("wait").success());
    messages_until(&sock, "STOPPING=1", Duration::from_secs(1));
}

/// The character-device groups of `/proc/devices` that the unit's `DeviceAllow=char-NAME`
/// lines let through, for each device major in `proc_devices`.
fn allowed_majors(unit: &str, proc_devices: &str) -> Vec<u32> {
    let allowed: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("DeviceAllow=char-"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    proc_devices
        .lines()
        .skip_while(|l| !l.starts_with("Character devices:"))
        .take_while(|l| !l.starts_with("Block devices:"))
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(_, name)| allowed.contains(name))
        .filter_map(|(major, _)| major.parse().ok())
        .collect()
}

#[test]
fn unit_lets_the_service_open_every_nvidia_device_node() {
    for name in ["reelbox.service", "reelbox-worker.service"] {
        let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd").join(name))
            .expect("read the unit");
        check_nvidia_nodes(name, &unit);
    }
}

/// Every package format ships both units: the worker's installed (not enabled) beside the head's.
#[test]
fn packages_ship_the_worker_unit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read packaging file");
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let meta = &manifest["package"]["metadata"];
    // cargo-deb installs the units it lists and writes their maintainer-script snippets:
    // the worker's restarted on upgrade when running, stopped on remove, forgotten on purge.
    let units = meta["deb"]["systemd-units"].as_array().expect("deb systemd-units");
    let worker = units.iter().find(|u| u["unit-name"].as_str() == Some("reelbox-worker")).expect("deb worker unit");
    assert_eq!(
        worker["enable"].as_bool(),
        Some(false),
        "a box is a head or a worker: the package enables neither twice"
    );
    let rpm = meta["generate-rpm"]["assets"].as_array().expect("rpm assets");
    assert!(
        rpm.iter().any(|a| a["source"].as_str() == Some("systemd/reelbox-worker.service")
            && a["dest"].as_str() == Some("/usr/lib/systemd/system/reelbox-worker.service")),
        "rpm assets lack the worker unit"
    );
    assert!(
        read("packaging/arch/PKGBUILD").contains("systemd/reelbox-worker.service"),
        "PKGBUILD lacks the worker unit"
    );
    assert!(read("packaging/ci-deb.sh").contains("reelbox-worker.service"), "ci-deb.sh does not check the worker unit");
}

/// The unit's `DeviceAllow=` lines let CUDA open every NVIDIA device node.
fn check_nvidia_nodes(name: &str, unit: &str) {
    // /proc/devices (character part) and the device nodes CUDA opens, as read on an NVIDIA
    // H200 with driver 580.159.04, and the older drivers' name for major 195.
    let driver_580 = "Character devices:\n  1 mem\n195 nvidia\n195 nvidiactl\n238 nvidia-uvm\n\
                      239 nvidia-nvswitch\n240 nvidia-nvlink\n241 nvidia-caps\n\nBlock devices:\n  8 sd\n";
    let older = "Character devices:\n195 nvidia-frontend\n237 nvidia-uvm\n\nBlock devices:\n";
    // /dev/nvidia0 and /dev/nvidiactl (195), /dev/nvidia-uvm(-tools), /dev/nvidia-caps/*.
    for (proc_devices, nodes) in [(driver_580, vec![195, 238, 241]), (older, vec![195, 237])] {
        let majors = allowed_majors(unit, proc_devices);
        for major in nodes {
            assert!(
                majors.contains(&major),
                "{name}: major {major} is not allowed by the unit's DeviceAllow lines: {majors:?}"
            );
        }
    }
}

/// `systemctl enable --now reelbox-worker` on a box whose config has no `[cluster]` (the
/// package's own): the unit's start fails at once saying what to add and where.
#[test]
fn the_worker_unit_without_a_cluster_section_says_what_to_add_and_where() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("config.toml");
    let packaged = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml"))
        .expect("packaging/config.toml");
    let data = tmp.path().join("data");
    std::fs::write(&config, packaged.replace("/var/lib/reelbox", &data.display().to_string())).expect("config");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .arg("worker")
        .env("REELBOX_CONFIG", &config)
        .env_remove("REELBOX_DATA_DIR")
        .env_remove("REELBOX_MODELS_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run reelbox worker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // EX_CONFIG, which the unit's RestartPreventExitStatus= names: no restart every 5 s.
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed only after {:?}", started.elapsed());
    for unit in ["systemd/reelbox.service", "systemd/reelbox-worker.service"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(unit)).expect("unit");
        assert!(text.lines().any(|l| l == "RestartPreventExitStatus=78"), "{unit}");
    }
    for want in ["[cluster]", "role = \"worker\"", "nats_url", "/etc/reelbox/config.toml", "reelbox-worker.service"] {
        assert!(stderr.contains(want), "no {want:?} in: {stderr}");
    }
    // The daemon's own unit the same way: a config it cannot read stops it for good.
    std::fs::write(&config, "bind = \"not an address\"\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .arg("serve")
        .env("REELBOX_CONFIG", &config)
        .stdin(Stdio::null())
        .output()
        .expect("run reelbox serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("bind"), "{stderr}");
}

/// Every package format puts the services' environment file where the units read it (the
/// RPM shipped `/etc/sysconfig/reelbox`, which no unit read), and stops both units when
/// it is removed (the RPM and Arch packages left them running a deleted binary).
#[test]
fn packages_give_the_units_their_environment_file_and_stop_both_on_removal() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).expect("read packaging file");
    let unit = read("systemd/reelbox.service");
    assert!(unit.contains("EnvironmentFile=-/etc/default/reelbox"), "the unit reads another file");
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    let rpm = &manifest["package"]["metadata"]["generate-rpm"];
    let dests: Vec<&str> =
        rpm["assets"].as_array().expect("rpm assets").iter().filter_map(|a| a["dest"].as_str()).collect();
    assert!(dests.contains(&"/etc/default/reelbox"), "rpm: {dests:?}");
    assert!(read("packaging/arch/PKGBUILD").contains("\"$pkgdir/etc/default/reelbox\""));
    let stop = "disable --now reelbox.service reelbox-worker.service";
    let preun = rpm["pre_uninstall_script"].as_str().expect("rpm %preun");
    assert!(read(preun).contains(stop), "{preun} does not stop both units");
    let install = read("packaging/arch/reelbox.install");
    let pre_remove = install.split("pre_remove()").nth(1).expect("pre_remove in reelbox.install");
    assert!(pre_remove.contains(stop), "pre_remove does not stop both units");
}

//! `reelbox setup` and `reelbox doctor` as library calls, on the provisioned data dir.

use crate::common;

use common::provision;
use reelbox::config::Config;
use reelbox::setup::{CheckStatus, GpuChoice, ModelOutcome, PieceOutcome, SetupOptions, doctor, render_checks, setup};

fn opts() -> SetupOptions {
    SetupOptions {
        gpu: GpuChoice::Cpu,
        install_system: false,
        models: Some(vec![provision::JOE.to_string()]),
        skip_models: false,
        force: false,
        quiet: true,
        make_defaults: false,
    }
}

fn provisioned_config() -> Config {
    let mut c = Config { data_dir: provision::root(), models_dir: Some(provision::models_dir()), ..Config::default() };
    c.runtime.onnxruntime = None;
    c
}

#[test]
fn setup_run_twice_does_nothing_the_second_time() {
    provision::joe_voice();
    let config = provisioned_config();
    let run = || {
        provision::locked(|| {
            let config = config.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(async move { setup(&config, &opts()).await })
            })
            .join()
            .expect("setup thread")
        })
    };
    let first = run().expect("setup succeeds");
    assert!(first.runtime.library.starts_with(provision::root()), "{}", first.runtime.library.display());
    let second = run().expect("setup succeeds again");
    assert!(second.runtime.already_installed, "runtime reinstalled");
    // The pinned espeak-ng 1.52 is installed once, like the runtime.
    assert!(
        matches!(&second.espeak, reelbox::setup::EspeakOutcome::Installed(e) if e.already_installed),
        "{:?}",
        second.espeak
    );
    assert!(second.runtime.version.starts_with("1.31"), "{}", second.runtime.version);
    match &second.models[..] {
        [ModelOutcome::Pulled(r)] => assert!(r.already_installed, "voice pulled again"),
        other => panic!("unexpected model outcome {other:?}"),
    }
    for (piece, outcome) in &second.system {
        assert!(matches!(outcome, PieceOutcome::Present { .. }), "{piece:?}: {outcome:?}");
    }
    assert!(second.complete());
}

#[test]
fn doctor_reports_each_piece_found_with_its_path_or_version() {
    provision::joe_voice();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = provision::test_config(tmp.path());
    let checks = doctor(&config);
    let get = |name: &str| checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name}"));
    let ort = get("onnxruntime");
    assert_eq!(ort.status, CheckStatus::Ok, "{ort:?}");
    assert!(ort.detail.contains(&provision::runtime().display().to_string()), "{}", ort.detail);
    assert_eq!(get("espeak-ng").status, CheckStatus::Ok, "fix: apt-get install libespeak-ng1 espeak-ng-data");
    assert!(get("espeak-ng").detail.contains("espeak-ng 1."));
    assert_eq!(get("ffmpeg").status, CheckStatus::Ok, "fix: apt-get install ffmpeg");
    let joe = get("model en_US-joe-medium");
    assert_eq!(joe.status, CheckStatus::Ok, "{joe:?}");
    assert_eq!(get("data-dir").status, CheckStatus::Ok);
    eprintln!("{}", render_checks(&checks));
}

//! `hf:` sources against a local server that behaves like the Hugging Face hub
//! (`tests/common/hub.rs`: resolve URLs, the CDN redirect, ranges, a gated repository that
//! needs the token, the tree API listing folders in pages). Pulls run the real
//! `reelbox models pull` (and `reelbox setup --models real`) with `HF_ENDPOINT` pointing at
//! the local hub.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::hub::{BIG, COMMIT, Shared, TOKEN, blob_sha1, lfs, payload, sha256_hex, small, start};
use reelbox::models::Manifest;

/// A home with a share dir holding `manifest` (TOML) and an empty models dir.
fn home_with(manifest: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(home.path().join("share/models")).expect("share");
    let m = Manifest::parse(manifest).expect("test manifest is valid");
    std::fs::write(home.path().join(format!("share/models/{}.toml", m.name)), manifest).expect("write manifest");
    home
}

fn models_dir(home: &Path) -> PathBuf {
    home.join("models")
}

/// Runs `reelbox models pull NAME` against the hub at `endpoint`.
async fn pull(home: &Path, endpoint: &str, token: Option<&str>, name: &str) -> std::process::Output {
    reelbox(home, endpoint, token, &["models", "pull", name]).await
}

/// Runs `reelbox ARGS` on `home` against the hub at `endpoint`.
async fn reelbox(home: &Path, endpoint: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_reelbox"));
    cmd.args(args)
        .env_remove("REELBOX_CONFIG")
        .env_remove("HF_TOKEN")
        .env("XDG_CONFIG_HOME", home.join("no-config"))
        .env("REELBOX_DATA_DIR", home.join("data"))
        .env("REELBOX_MODELS_DIR", models_dir(home))
        .env("REELBOX_SHARE_DIR", home.join("share"))
        .env("REELBOX_LOG", "warn")
        .env("HF_ENDPOINT", endpoint);
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    cmd.output().await.expect("run reelbox")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_lfs_file_resumes_in_parts_from_the_cdn_and_the_token_stays_on_the_hub() {
    let big = payload(BIG, 7);
    let sha = sha256_hex(&big);
    let hub = Shared::default();
    {
        let mut h = hub.lock().expect("lock");
        h.repos.insert("org/gated".into(), BTreeMap::from([("onnx/unet/model.onnx".to_string(), lfs(big.clone()))]));
        h.gated.push("org/gated".into());
        h.cut_once = Some(3 << 20);
    }
    let endpoint = start(hub.clone()).await;
    let manifest = format!(
        "name = \"hf-gated\"\nkind = \"diffusion\"\nlicense = \"MIT\"\nsources = [\"hf:org/gated@main/onnx\"]\n\n[[files]]\npath = \"unet/model.onnx\"\nsha256 = \"{sha}\"\n"
    );
    let home = home_with(&manifest);

    let refused = pull(home.path(), &endpoint, None, "hf-gated").await;
    assert!(!refused.status.success(), "a gated repository needs the token");
    assert!(text(&refused).contains("HF_TOKEN"), "{}", text(&refused));

    let out = pull(home.path(), &endpoint, Some(TOKEN), "hf-gated").await;
    assert!(out.status.success(), "{}", text(&out));
    let installed = models_dir(home.path()).join("hf-gated/unet/model.onnx");
    assert_eq!(std::fs::read(&installed).expect("installed file"), big);

    let h = hub.lock().expect("lock");
    let bearer = format!("Bearer {TOKEN}");
    assert!(h.auth.iter().any(|(at, a)| *at == "hub" && *a == bearer), "the hub got the token");
    assert!(h.auth.iter().filter(|(at, _)| *at == "cdn").all(|(_, a)| a.is_empty()), "the CDN never did: {:?}", h.auth);
    // Three parts (8 + 8 + 4 MiB); the cut one was continued from where it dropped.
    let starts: Vec<usize> =
        h.ranges.iter().filter_map(|r| r.strip_prefix("bytes=")?.split('-').next()?.parse().ok()).collect();
    assert!(starts.len() >= 4, "three parts and one resumption: {:?}", h.ranges);
    assert!(starts.iter().any(|s| s % (8 << 20) != 0), "a part resumed mid-way: {:?}", h.ranges);

    let recorded = Manifest::parse(
        &std::fs::read_to_string(models_dir(home.path()).join("hf-gated.toml")).expect("installed manifest"),
    )
    .expect("valid");
    assert_eq!(recorded.sources, [format!("hf:org/gated@{COMMIT}/onnx")], "the resolved commit is recorded");
    assert_eq!((recorded.files[0].size, recorded.files[0].sha256.as_str()), (BIG as u64, sha.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_mismatch_installs_nothing() {
    let hub = Shared::default();
    hub.lock().expect("lock").repos.insert(
        "org/plain".into(),
        BTreeMap::from([("wav2lip.onnx".to_string(), lfs(payload(1000, 1))), ("a.json".to_string(), small(b"{}"))]),
    );
    let endpoint = start(hub).await;
    let wrong = sha256_hex(b"other bytes");
    let manifest = format!(
        "name = \"hf-bad\"\nkind = \"lipsync\"\nsources = [\"hf:org/plain@{COMMIT}/wav2lip.onnx\"]\n\n[[files]]\npath = \"model.onnx\"\nsize = 1000\nsha256 = \"{wrong}\"\n"
    );
    let home = home_with(&manifest);
    let out = pull(home.path(), &endpoint, None, "hf-bad").await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("sha256 mismatch"), "{}", text(&out));
    let models = models_dir(home.path());
    assert!(!models.join("hf-bad").exists(), "no model directory");
    assert!(!models.join("hf-bad.toml").exists(), "no installed manifest");
    assert!(!models.join(".staging/hf-bad/model.onnx.partial").exists(), "the bad bytes are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_cannot_be_reached_is_said_once_with_what_to_do() {
    let endpoint = common::hub::unreachable();
    let manifest = format!(
        "name = \"hf-far\"\nkind = \"lipsync\"\nsources = [\"hf:org/plain@{COMMIT}/wav2lip.onnx\"]\n\n[[files]]\npath = \"model.onnx\"\nsize = 1000\n"
    );
    let home = home_with(&manifest);
    let out = pull(home.path(), &endpoint, None, "hf-far").await;
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    // It said the URL twice around reqwest's layers ("request to URL failed: error sending
    // request for url (URL): client error (Connect): …") and nothing to do.
    assert!(said.contains("cannot reach 127.0.0.1 (") && said.contains("HF_ENDPOINT"), "{said}");
    assert!(!said.contains("error sending request"), "{said}");
    assert!(!models_dir(home.path()).join("hf-far").exists(), "nothing installed");
}

/// A plain `https:` source (ultraface-320's, on GitHub) out of reach says the same as the
/// hub's: it gave reqwest's raw chain ("error sending request for url (…): client error
/// (Connect): dns error: …") with nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_source_that_cannot_be_reached_says_so_as_the_hub_does() {
    let endpoint = common::hub::unreachable();
    let manifest = format!(
        "name = \"far-face\"\nkind = \"face\"\nsources = [\"{endpoint}/version-RFB-320.onnx\"]\n\n[[files]]\npath = \"model.onnx\"\nsize = 1000\nsha256 = \"{}\"\n",
        "0".repeat(64)
    );
    let home = home_with(&manifest);
    let out = pull(home.path(), &endpoint, None, "far-face").await;
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("cannot reach 127.0.0.1 (") && said.contains("is this box online?"), "{said}");
    assert!(!said.contains("error sending request"), "{said}");
}

/// `reelbox pull NAME` beside a running daemon (or the web studio's Pull) is a `model_pull`
/// job: with the hub out of reach it fails on its first attempt, saying so once. It was
/// tried three times, ~16 s of backoff, for the same sentence once per file each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_job_that_cannot_reach_the_hub_fails_at_once_saying_so() {
    let endpoint = common::hub::unreachable();
    let manifest = format!(
        "name = \"hf-far\"\nkind = \"diffusion\"\nsources = [\"hf:org/plain@{COMMIT}/onnx\"]\n\n\
         [[files]]\npath = \"unet/model.onnx\"\nsize = 1000\n\n[[files]]\npath = \"unet/config.json\"\nsize = 10\n"
    );
    let home = home_with(&manifest);
    let (models, share) = (models_dir(home.path()), home.path().join("share"));
    let env = [
        ("HF_ENDPOINT", endpoint.as_str()),
        ("REELBOX_MODELS_DIR", models.to_str().expect("utf-8 path")),
        ("REELBOX_SHARE_DIR", share.to_str().expect("utf-8 path")),
    ];
    let d = common::daemon::DaemonProc::start(&home.path().join("data"), &env);
    let http = reqwest::Client::new();
    let (_, job) = common::daemon::pull_job(&http, &d, "hf-far", std::time::Duration::from_secs(120)).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 1, "not tried again: {job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot reach 127.0.0.1 ("), "{error}");
    assert_eq!(error.matches("cannot reach").count(), 1, "said once, not once per file: {error}");
    assert!(!models.join("hf-far").exists(), "nothing installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpinned_files_are_checked_by_lfs_sha256_and_git_blob_sha1() {
    let weights = payload(5000, 3);
    let config = br#"{"sample_size": 64}"#;
    let hub = Shared::default();
    {
        let mut h = hub.lock().expect("lock");
        h.repos.insert(
            "org/plain".into(),
            BTreeMap::from([
                ("unet/model.onnx".to_string(), lfs(weights.clone())),
                ("unet/config.json".to_string(), small(config)),
            ]),
        );
        let mut liar = small(config);
        liar.etag = Some(blob_sha1(b"something else"));
        h.repos.insert("org/liar".into(), BTreeMap::from([("unet/config.json".to_string(), liar)]));
    }
    let endpoint = start(hub).await;
    let manifest = |name: &str, repo: &str| {
        format!(
            "name = \"{name}\"\nkind = \"diffusion\"\nsources = [\"hf:{repo}@{COMMIT}\"]\n\n[[files]]\npath = \"unet/config.json\"\n\n[[files]]\npath = \"unet/model.onnx\"\n"
        )
    };
    let home = home_with(&manifest("hf-open", "org/plain"));
    let out = pull(home.path(), &endpoint, None, "hf-open").await;
    assert!(out.status.success(), "{}", text(&out));
    let recorded = Manifest::parse(
        &std::fs::read_to_string(models_dir(home.path()).join("hf-open.toml")).expect("installed manifest"),
    )
    .expect("valid");
    let hashes: Vec<(&str, u64, &str)> =
        recorded.files.iter().map(|f| (f.path.as_str(), f.size, f.sha256.as_str())).collect();
    let (config_sha, weights_sha) = (sha256_hex(config), sha256_hex(&weights));
    assert_eq!(
        hashes,
        [
            ("unet/config.json", config.len() as u64, config_sha.as_str()),
            ("unet/model.onnx", 5000, weights_sha.as_str())
        ]
    );

    std::fs::write(
        home.path().join("share/models/hf-liar.toml"),
        manifest("hf-liar", "org/liar").replace("\n\n[[files]]\npath = \"unet/model.onnx\"\n", "\n"),
    )
    .expect("write manifest");
    let out = pull(home.path(), &endpoint, None, "hf-liar").await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("git blob SHA-1 mismatch"), "{}", text(&out));
    assert!(!models_dir(home.path()).join("hf-liar").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_continues_the_parts_an_interrupted_one_left_behind() {
    let big = payload(BIG, 9);
    let sha = sha256_hex(&big);
    let hub = Shared::default();
    hub.lock()
        .expect("lock")
        .repos
        .insert("org/big".into(), BTreeMap::from([("w.onnx".to_string(), lfs(big.clone()))]));
    let endpoint = start(hub.clone()).await;
    let manifest = format!(
        "name = \"hf-resume\"\nkind = \"upscale\"\nsources = [\"hf:org/big@{COMMIT}/w.onnx\"]\n\n[[files]]\npath = \"model.onnx\"\nsize = {BIG}\nsha256 = \"{sha}\"\n"
    );
    let home = home_with(&manifest);
    // What a killed pull leaves: the first part whole, the second half done, the third not begun.
    let staging = models_dir(home.path()).join(".staging/hf-resume");
    std::fs::create_dir_all(&staging).expect("staging");
    let mut partial = vec![0u8; BIG];
    let (part, half) = (8 << 20, 4 << 20);
    partial[..part + half].copy_from_slice(&big[..part + half]);
    std::fs::write(staging.join("model.onnx.partial"), &partial).expect("partial");
    std::fs::write(staging.join("model.onnx.partial.parts"), format!("{part}\n{half}\n0\n")).expect("parts");

    let out = pull(home.path(), &endpoint, None, "hf-resume").await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(models_dir(home.path()).join("hf-resume/model.onnx")).expect("installed"), big);
    let ranges = hub.lock().expect("lock").ranges.clone();
    let want = [format!("bytes={}-{}", part + half, 2 * part - 1), format!("bytes={}-{}", 2 * part, BIG - 1)];
    let mut got = ranges.clone();
    got.sort();
    assert_eq!(got, want, "only what was missing was fetched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_folders_come_from_the_tree_api_once_the_licence_is_accepted() {
    let (unet, unet_data, weights) = (payload(3000, 5), payload(4000, 6), payload(2000, 8));
    let hub = Shared::default();
    hub.lock().expect("lock").repos.insert(
        "org/sd".into(),
        BTreeMap::from([
            ("onnx/model_index.json".to_string(), small(br#"{"_class_name": "StableDiffusionPipeline"}"#)),
            ("onnx/unet/model.onnx".to_string(), lfs(unet.clone())),
            ("onnx/unet/model.onnx_data".to_string(), lfs(unet_data.clone())),
            ("onnx/unet/diffusion_pytorch_model.safetensors".to_string(), lfs(weights)),
            ("onnx/unet/config.json".to_string(), small(b"{}")),
            ("onnx/tokenizer/vocab.json".to_string(), small(br#"{"a": 0}"#)),
            ("onnx/tokenizer/merges.txt".to_string(), small(b"#version: 0.2\n")),
            ("other/unrelated.onnx".to_string(), small(b"x")),
        ]),
    );
    let endpoint = start(hub.clone()).await;
    let manifest = format!(
        "name = \"sd-nc\"\nkind = \"diffusion\"\nlicense = \"Test Non-Commercial Licence\"\nnoncommercial = true\n\
         sources = [\"hf:org/sd@{COMMIT}/onnx\"]\nfolders = [\"unet\", \"tokenizer\"]\nexclude = [\".safetensors\"]\n\n\
         [[files]]\npath = \"model_index.json\"\n\n[[files]]\npath = \"unet/model.onnx\"\nsha256 = \"{}\"\n",
        sha256_hex(&unet)
    );
    let home = home_with(&manifest);

    let refused = pull(home.path(), &endpoint, None, "sd-nc").await;
    assert!(!refused.status.success(), "{}", text(&refused));
    let said = text(&refused);
    assert!(said.contains("Test Non-Commercial Licence") && said.contains("--accept-license"), "{said}");
    assert!(hub.lock().expect("lock").auth.is_empty(), "nothing was asked of the hub before acceptance");

    let out = reelbox(home.path(), &endpoint, None, &["models", "pull", "sd-nc", "--accept-license"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let dir = models_dir(home.path()).join("sd-nc");
    assert_eq!(std::fs::read(dir.join("unet/model.onnx_data")).expect("external weights"), unet_data);
    assert!(dir.join("tokenizer/merges.txt").is_file() && dir.join("unet/config.json").is_file());
    assert!(!dir.join("unet/diffusion_pytorch_model.safetensors").exists(), "excluded by its ending");
    let recorded =
        Manifest::parse(&std::fs::read_to_string(models_dir(home.path()).join("sd-nc.toml")).expect("manifest"))
            .expect("valid");
    let paths: Vec<&str> = recorded.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "model_index.json",
            "tokenizer/merges.txt",
            "tokenizer/vocab.json",
            "unet/config.json",
            "unet/model.onnx",
            "unet/model.onnx_data"
        ]
    );
    let data_entry = recorded.files.iter().find(|f| f.path == "unet/model.onnx_data").expect("listed");
    assert_eq!((data_entry.size, data_entry.sha256.clone()), (4000, sha256_hex(&unet_data)), "from the tree's LFS oid");
    let trees = hub.lock().expect("lock").trees.clone();
    assert!(trees.iter().filter(|t| t.as_str() == "onnx/unet").count() >= 2, "unet listed in pages: {trees:?}");

    // Installed: pulling again asks the hub nothing.
    let asked = hub.lock().expect("lock").auth.len();
    let again = pull(home.path(), &endpoint, None, "sd-nc").await;
    assert!(again.status.success() && text(&again).contains("already installed"), "{}", text(&again));
    assert_eq!(hub.lock().expect("lock").auth.len(), asked, "no listing or download for an installed model");

    // Accepted once: after removing the model a plain pull goes ahead.
    let rm = reelbox(home.path(), &endpoint, None, &["models", "rm", "sd-nc"]).await;
    assert!(rm.status.success(), "{}", text(&rm));
    let again = pull(home.path(), &endpoint, None, "sd-nc").await;
    assert!(again.status.success(), "acceptance is remembered: {}", text(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_models_real_pulls_a_set_for_this_box_and_makes_each_the_default() {
    let hub = Shared::default();
    hub.lock().expect("lock").repos.insert(
        "org/real".into(),
        BTreeMap::from([
            ("sd/model_index.json".to_string(), small(b"{}")),
            ("sd/unet/model.onnx".to_string(), lfs(payload(3000, 1))),
            ("wav2lip.onnx".to_string(), lfs(payload(2500, 2))),
            ("esrgan.onnx".to_string(), lfs(payload(2000, 3))),
            ("face.onnx".to_string(), small(b"tiny face detector")),
            ("voice/en_US-joe-medium.onnx".to_string(), lfs(payload(1500, 4))),
            ("voice/en_US-joe-medium.onnx.json".to_string(), small(b"{}")),
        ]),
    );
    let endpoint = start(hub).await;
    let home = tempfile::tempdir().expect("tempdir");
    let share = home.path().join("share/models");
    std::fs::create_dir_all(&share).expect("share");
    let one = |name: &str, kind: &str, extra: &str, source: &str| {
        format!(
            "name = \"{name}\"\nkind = \"{kind}\"\nlicense = \"L\"\n{extra}sources = [\"hf:org/real@{COMMIT}/{source}\"]\n\n[[files]]\npath = \"model.onnx\"\n"
        )
    };
    let manifests = [
        (
            "sd-turbo",
            format!(
                "name = \"sd-turbo\"\nkind = \"diffusion\"\nlicense = \"NC\"\nnoncommercial = true\napprox_size = 2600000000\n\
             sources = [\"hf:org/real@{COMMIT}/sd\"]\nfolders = [\"unet\"]\n\n[[files]]\npath = \"model_index.json\"\n"
            ),
        ),
        ("wav2lip", one("wav2lip", "lipsync", "noncommercial = true\n", "wav2lip.onnx")),
        ("realesrgan-x4", one("realesrgan-x4", "upscale", "", "esrgan.onnx")),
        ("ultraface-320", one("ultraface-320", "face", "", "face.onnx")),
        (
            "en_US-joe-medium",
            format!(
                "name = \"en_US-joe-medium\"\nkind = \"tts\"\nsources = [\"hf:org/real@{COMMIT}/voice\"]\n\n\
             [[files]]\npath = \"en_US-joe-medium.onnx\"\n\n[[files]]\npath = \"en_US-joe-medium.onnx.json\"\n"
            ),
        ),
    ];
    for (name, text) in &manifests {
        Manifest::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        std::fs::write(share.join(format!("{name}.toml")), text).expect("write manifest");
    }
    // The provisioned ONNX Runtime stands in for the one setup would download.
    let data = home.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let runtime = common::provision::runtime();
    std::os::unix::fs::symlink(runtime.parent().expect("runtime dir"), data.join("runtime")).expect("link runtime");

    let data_arg = data.to_string_lossy().into_owned();
    let args = ["setup", "--models", "real", "--yes", "--accept-license", "--gpu", "no", "--data-dir", &data_arg];
    let out = reelbox(home.path(), &endpoint, None, &args).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("total download: about 2.6 GB"), "the size is shown first: {said}");
    for (name, _) in &manifests {
        assert!(models_dir(home.path()).join(name).is_dir(), "{name} pulled: {said}");
    }
    let defaults = reelbox(home.path(), &endpoint, None, &["--json", "models", "default"]).await;
    let defaults: serde_json::Value = serde_json::from_slice(&defaults.stdout).expect("defaults json");
    assert_eq!(
        defaults,
        serde_json::json!({"diffusion": "sd-turbo", "tts": "en_US-joe-medium", "lipsync": "wav2lip",
            "upscale": "realesrgan-x4", "face": "ultraface-320"})
    );
}

//! `reelbox voices list` and `reelbox pull piper:NAME` against a local server that behaves
//! like the Hugging Face hub (`tests/common/hub.rs`) for `rhasspy/piper-voices@v1.0.0`:
//! small files (`voices.json`, a voice's `.onnx.json`, its `MODEL_CARD`) answered on the
//! resolve URL with their git blob SHA-1 as `ETag`, the `.onnx` redirected (302) to a
//! second "CDN" server with `X-Linked-Etag`/`X-Linked-Size`. The voices are the tiny parity voices, so a pulled
//! voice really speaks.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::fixture;
use common::hub::{COMMIT, HubFile, Shared, lfs, small};
use md5::{Digest, Md5};

const REPO: &str = "rhasspy/piper-voices";

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// A voice of the served index: its files and its `voices.json` entry.
fn add_voice(
    files: &mut BTreeMap<String, HubFile>,
    index: &mut serde_json::Map<String, serde_json::Value>,
    spec: (&str, &str, &str, &str, u32),
) {
    let (key, lang, country, tiny, speakers) = spec;
    let (code, rest) = key.split_once('-').expect("key");
    let (name, quality) = rest.split_once('-').expect("key");
    let family = code.split('_').next().expect("code");
    let dir = format!("{family}/{code}/{name}/{quality}");
    let onnx = std::fs::read(fixture(&format!("models/tiny-piper/{tiny}/tiny-{tiny}.onnx"))).expect("tiny voice");
    let json = std::fs::read(fixture(&format!("models/tiny-piper/{tiny}/tiny-{tiny}.onnx.json"))).expect("tiny config");
    let card = format!("# Model card for {name} ({quality})\n\n* License: CC0\n").into_bytes();
    let mut listed = serde_json::Map::new();
    for (file, data, lfs) in [
        (format!("{key}.onnx"), onnx, true),
        (format!("{key}.onnx.json"), json, false),
        ("MODEL_CARD".to_string(), card, false),
    ] {
        listed.insert(
            format!("{dir}/{file}"),
            serde_json::json!({"size_bytes": data.len(), "md5_digest": md5_hex(&data)}),
        );
        files.insert(format!("{dir}/{file}"), if lfs { self::lfs(data) } else { small(&data) });
    }
    let speaker_id_map: serde_json::Map<String, serde_json::Value> =
        (0..speakers).filter(|_| speakers > 1).map(|i| (format!("speaker_{i}"), serde_json::json!(i))).collect();
    index.insert(
        key.to_string(),
        serde_json::json!({
            "key": key, "name": name, "quality": quality, "num_speakers": speakers,
            "language": {"code": code, "family": family, "region": code.split('_').nth(1),
                         "name_native": lang, "name_english": lang, "country_english": country},
            "speaker_id_map": speaker_id_map, "files": listed, "aliases": []
        }),
    );
}

/// Starts the hub with three voices at `v1.0.0`; returns its endpoint and the hub (tests
/// change its files).
async fn start_hub() -> (String, Shared) {
    let mut files = BTreeMap::new();
    let mut index = serde_json::Map::new();
    add_voice(&mut files, &mut index, ("de_DE-thorsten-medium", "German", "Germany", "de", 1));
    add_voice(&mut files, &mut index, ("en_GB-vctk-medium", "English", "Great Britain", "en", 3));
    add_voice(&mut files, &mut index, ("fr_FR-siwis-low", "French", "France", "fr", 1));
    let text = serde_json::to_vec_pretty(&serde_json::Value::Object(index)).expect("index");
    files.insert("voices.json".into(), small(&text));
    let hub = Shared::default();
    {
        let mut h = hub.lock().expect("lock");
        h.repos.insert(REPO.into(), files);
        h.revisions.push("v1.0.0".into());
    }
    (common::hub::start(hub.clone()).await, hub)
}

async fn reelbox(home: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(args)
        .env_remove("REELBOX_CONFIG")
        .env_remove("HF_TOKEN")
        .env_remove("REELBOX_URL")
        .env("REELBOX_ONNXRUNTIME", common::provision::runtime())
        .env("XDG_CONFIG_HOME", home.join("no-config"))
        .env("REELBOX_DATA_DIR", home.join("data"))
        .env("REELBOX_MODELS_DIR", home.join("models"))
        .env("REELBOX_LOG", "warn")
        .env("HF_ENDPOINT", endpoint)
        .output()
        .await
        .expect("run reelbox")
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn listed(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "voices list failed: {}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voices_list_from_the_served_index_then_pull_one_that_speaks() {
    let (endpoint, _) = start_hub().await;
    let home = tempfile::tempdir().expect("tempdir");

    let german = listed(&reelbox(home.path(), &endpoint, &["voices", "list", "--lang", "de", "--json"]).await);
    assert_eq!(german.len(), 1, "only the German voice: {german:?}");
    assert_eq!(german[0]["name"], "de_DE-thorsten-medium");
    assert_eq!(german[0]["quality"], "medium");
    assert_eq!(german[0]["installed"], false);

    let table = reelbox(home.path(), &endpoint, &["voices", "list"]).await;
    let table = text(&table);
    assert!(table.contains("en_GB-vctk-medium") && table.contains("speaker_0, speaker_1, speaker_2"), "{table}");
    assert!(table.contains("fr_FR (French)"), "{table}");

    let pull = reelbox(home.path(), &endpoint, &["pull", "piper:de_DE-thorsten-medium"]).await;
    assert!(pull.status.success(), "pull failed: {}", text(&pull));
    let dir = home.path().join("models/de_DE-thorsten-medium");
    for f in ["de_DE-thorsten-medium.onnx", "de_DE-thorsten-medium.onnx.json", "MODEL_CARD"] {
        assert!(dir.join(f).is_file(), "{f} installed");
    }
    let installed = std::fs::read_to_string(home.path().join("models/de_DE-thorsten-medium.toml")).expect("manifest");
    assert!(installed.contains(&format!("hf:{REPO}@{COMMIT}/de/de_DE/thorsten/medium")), "{installed}");

    let german = listed(&reelbox(home.path(), &endpoint, &["voices", "list", "--lang", "de_DE", "--json"]).await);
    assert_eq!(german[0]["installed"], true);

    // The pulled voice is one tts model of the catalog and speaks German by its name.
    let models = reelbox(home.path(), &endpoint, &["models", "list", "--json"]).await;
    assert!(models.status.success(), "{}", text(&models));
    let models: serde_json::Value = serde_json::from_slice(&models.stdout).expect("models JSON");
    let listed: Vec<&serde_json::Value> =
        models["models"].as_array().expect("models").iter().filter(|m| m["name"] == "de_DE-thorsten-medium").collect();
    assert_eq!(listed.len(), 1, "listed once: {models}");
    assert_eq!(listed[0]["kind"], "tts");
    let wav = home.path().join("guten-tag.wav");
    let wav_arg = wav.to_str().expect("utf-8 path");
    let args = ["say", "--local", "--voice", "de_DE-thorsten-medium", "Guten Tag. Wie geht's?", "-o", wav_arg];
    let say = reelbox(home.path(), &endpoint, &args).await;
    assert!(say.status.success(), "say failed: {}", text(&say));
    let spec = hound::WavReader::open(&wav).expect("a WAV file").spec();
    assert_eq!(spec.sample_rate, 22050);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_match_the_index_md5_is_refused_and_nothing_stays_installed() {
    let (endpoint, hub) = start_hub().await;
    let home = tempfile::tempdir().expect("tempdir");
    // The hub serves changed bytes with its own matching hashes; only the index's md5 knows.
    let card = "fr/fr_FR/siwis/low/MODEL_CARD";
    {
        let mut h = hub.lock().expect("lock");
        let served = &mut h.repos.get_mut(REPO).expect("repo").get_mut(card).expect("card").data;
        served.extend_from_slice(b"tampered\n");
        // Same size as listed, so only the md5 can tell.
        served.drain(..9);
    }
    let pull = reelbox(home.path(), &endpoint, &["models", "pull", "piper:fr_FR-siwis-low"]).await;
    assert!(!pull.status.success(), "a tampered voice must not install");
    assert!(text(&pull).contains("md5"), "the error names the md5 check: {}", text(&pull));
    assert!(!home.path().join("models/fr_FR-siwis-low").exists());
    assert!(!home.path().join("models/fr_FR-siwis-low.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_voice_names_close_ones() {
    let (endpoint, _) = start_hub().await;
    let home = tempfile::tempdir().expect("tempdir");
    let pull = reelbox(home.path(), &endpoint, &["pull", "piper:de_DE-thorsten-high"]).await;
    assert!(!pull.status.success());
    let msg = text(&pull);
    assert!(msg.contains("no Piper voice \"de_DE-thorsten-high\"") && msg.contains("de_DE-thorsten-medium"), "{msg}");
}

/// What `reelbox pull piper:NAME` installs, `POST /api/v1/models/pull` installs too (the web
/// studio's Pull, a script, a user's pull through the service): one job with byte progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_pulls_a_piper_voice_by_name_and_refuses_an_unknown_one_naming_close_ones() {
    let (endpoint, _) = start_hub().await;
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    let models_env = models.to_str().expect("utf-8 path");
    let d = common::daemon::DaemonProc::start(
        &home.path().join("data"),
        &[("HF_ENDPOINT", endpoint.as_str()), ("REELBOX_MODELS_DIR", models_env)],
    );
    let http = reqwest::Client::new();
    let name = "piper:de_DE-thorsten-medium";
    let (id, job) = common::daemon::pull_job(&http, &d, name, std::time::Duration::from_secs(60)).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let events = http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let events = common::sse::read_events(events, |seen| {
        seen.iter().any(|(_, e)| e["type"] == "state" && e["state"] == "succeeded")
    })
    .await;
    let progress: Vec<&serde_json::Value> = events.iter().map(|(_, e)| e).filter(|e| e["type"] == "progress").collect();
    assert!(
        progress.last().is_some_and(|e| e["total"].as_u64().is_some_and(|t| t > 0) && e["step"] == e["total"]),
        "byte progress to the end: {progress:?}"
    );
    assert!(models.join("de_DE-thorsten-medium/de_DE-thorsten-medium.onnx").is_file());

    // The index is cached now: a misspelt voice is refused before any job, with the close name.
    let body = serde_json::json!({"name": "piper:de_DE-thorsten-high"});
    let (status, err) = common::daemon::post_json(&http, &d, "/api/v1/models/pull", body).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "name", "{err}");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("de_DE-thorsten-medium"), "names the close voice: {message}");
}

/// `reelbox voices list` offline on a box whose voice was installed without the index being
/// kept (the joe voice `reelbox setup` installs, a pull on another day): the installed voices
/// are listed, table and `--json` alike, with one line saying why not the rest and how to
/// fetch it. It failed outright. With no voice installed either it fails, naming the cause,
/// and leaves no empty cache folder behind. `--refresh` offline with the index cached lists
/// the cached index (it listed only the installed voices), saying it was not refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voices_list_offline_shows_the_installed_voices_and_says_why_not_the_rest() {
    let (endpoint, _) = start_hub().await;
    let home = tempfile::tempdir().expect("tempdir");
    let pull = reelbox(home.path(), &endpoint, &["pull", "piper:de_DE-thorsten-medium"]).await;
    assert!(pull.status.success(), "pull failed: {}", text(&pull));
    let offline = common::hub::unreachable();

    let out = reelbox(home.path(), &offline, &["voices", "list", "--refresh"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    for voice in ["de_DE-thorsten-medium", "en_GB-vctk-medium", "fr_FR-siwis-low"] {
        assert!(said.lines().any(|l| l.starts_with(voice)), "the cached index lists {voice}: {said}");
    }
    let note: Vec<&str> = said.lines().filter(|l| l.contains("could not be refreshed")).collect();
    assert_eq!(note.len(), 1, "one line says it is the cached copy: {said}");
    assert!(note[0].contains("cannot reach 127.0.0.1 ("), "and why: {}", note[0]);

    std::fs::remove_dir_all(home.path().join("models/.cache")).expect("the cached index goes");

    let out = reelbox(home.path(), &offline, &["voices", "list"]).await;
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let row = said.lines().find(|l| l.starts_with("de_DE-thorsten-medium")).unwrap_or_else(|| panic!("listed: {said}"));
    assert!(row.contains("medium") && row.contains("installed"), "{row}");
    let note: Vec<&str> = said.lines().filter(|l| l.contains("cannot reach 127.0.0.1 (")).collect();
    assert_eq!(note.len(), 1, "one line says why: {said}");
    assert!(note[0].contains("reelbox voices list --refresh"), "and how to fetch the rest: {}", note[0]);

    let rows = listed(&reelbox(home.path(), &offline, &["voices", "list", "--json"]).await);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "de_DE-thorsten-medium");
    assert_eq!(rows[0]["installed"], true);
    assert!(rows[0]["size"].as_u64().is_some_and(|s| s > 0), "{rows:?}");

    let bare = tempfile::tempdir().expect("tempdir");
    let out = reelbox(bare.path(), &offline, &["voices", "list"]).await;
    assert!(!out.status.success(), "nothing to list: {}", text(&out));
    assert!(text(&out).contains("cannot reach 127.0.0.1 ("), "the cause is named: {}", text(&out));
    assert!(!bare.path().join("models/.cache").exists(), "a failed fetch leaves no empty cache folder");
}

//! A family's presenter profiles on the real daemon: made with a portrait and a voice
//! sample, shown, changed (face box and preset from the CLI too) and deleted by their name as `reelbox profiles list` shows it,
//! hidden from the other keys (an admin's list says whose each is), and deleting one gives its uploads' bytes back to its
//! owner's storage quota, except what a queued job still uses; one person's two profiles
//! cannot share a name, and two that an older version let share one are never guessed between;
//! a name with `/ ? # %` in it is one path segment to the CLI, so it reaches its own profile.

use crate::common;

use std::path::Path;

use common::api::{call, create_key};
use common::compat::{TINY_SD, models_dir, start_daemon_with};
use common::daemon::DaemonProc;
use common::media::{png, test_picture};
use common::tools::{reelbox_cli, run_ok};
use reelbox::store::codec::{decode, encode};
use reelbox::store::records::Profile;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// One second of a quiet tone, as a phone's voice memo turned WAV.
fn wav() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec =
        hound::WavSpec { channels: 1, sample_rate: 8000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::new(&mut out, spec).expect("wav");
    for i in 0..8000 {
        w.write_sample(((i as f32 * 0.3).sin() * 3000.0) as i16).expect("sample");
    }
    w.finalize().expect("finalize");
    out.into_inner()
}

/// Creates a profile `name` for `key` with a portrait (and a voice sample); its JSON. Each
/// name has a picture of its own: one person's same photo would be one upload, shared.
async fn create_profile(d: &DaemonProc, key: &str, name: &str, sample: bool) -> Value {
    let seed = name.bytes().map(u32::from).sum();
    let mut form = Form::new()
        .text("name", name.to_string())
        .part("portrait", Part::bytes(png(&test_picture(64, 64, seed))).file_name("me.png"));
    if sample {
        form = form.part("voice_sample", Part::bytes(wav()).file_name("hello.wav"));
    }
    let resp = reqwest::Client::new().post(d.at("/api/v1/profiles")).bearer_auth(key).multipart(form);
    let resp = resp.send().await.expect("create");
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.expect("json")
}

/// Bytes of artifacts the key holds, as `GET /api/v1/keys` tells it.
async fn storage_bytes(d: &DaemonProc, key: &str) -> u64 {
    let (_, keys) = call(Some(key), Method::GET, d.at("/api/v1/keys"), None).await;
    keys[0]["storage_bytes"].as_u64().expect("storage_bytes")
}

/// Whether artifact `id` has a file under the data dir (sharded by its last two characters).
fn on_disk(data: &Path, id: &str) -> bool {
    let shard = data.join("artifacts").join(&id[id.len() - 2..]);
    std::fs::read_dir(shard).is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().contains(id)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_go_by_name_stay_private_and_deleting_one_frees_its_uploads() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let models = models_dir(false);
    let d = start_daemon_with(&data, models.path(), &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum", "max_storage_bytes": 10_000_000})).await;
    let (_, dad) = create_key(&d, Some(&admin), json!({"name": "dad"})).await;

    let grandma = create_profile(&d, &mum, "grandma", true).await;
    let (portrait, sample) = (grandma["portrait"].as_str().expect("portrait"), grandma["voice_sample"].as_str());
    let sample = sample.expect("voice sample").to_string();
    let held = storage_bytes(&d, &mum).await;
    assert!(held > 0, "the uploads count against mum's storage");

    // By the name `profiles list` shows, as renders take it.
    let (status, shown) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["id"], grandma["id"]);
    let (status, changed) =
        call(Some(&mum), Method::PATCH, d.at("/api/v1/profiles/grandma"), Some(json!({"prompt_prefix": "warm light"})))
            .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    // Another person's key finds nothing by id or by name.
    let id = grandma["id"].as_str().expect("id");
    for path in ["/api/v1/profiles/grandma".to_string(), format!("/api/v1/profiles/{id}")] {
        let (status, v) = call(Some(&dad), Method::GET, d.at(&path), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(call(Some(&dad), Method::DELETE, d.at(&path), None).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, dads) = call(Some(&dad), Method::GET, d.at("/api/v1/profiles"), None).await;
    assert_eq!(dads, json!([]), "dad sees mum's profile");
    // Dad's own "grandma" is his by that name; the admin, seeing both, is asked for an id.
    let his = create_profile(&d, &dad, "grandma", false).await;
    let (_, shown) = call(Some(&dad), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(shown["id"], his["id"]);
    let (_, shown) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(shown["id"], grandma["id"]);
    let (status, v) = call(Some(&admin), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains(his["id"].as_str().expect("id")), "{v}");
    // The admin's list says whose each one is, by key name.
    let home_dir = home.path();
    let out = run_ok(reelbox_cli(home_dir, models.path()).args(["profiles", "list", "--url", &d.url, "--key", &admin]));
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    let owners: Vec<&str> = list.lines().skip(1).filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(owners, ["mum", "dad"], "{list}");
    // Once the admin has a "grandma" of their own, that is the one they mean by the name.
    let own = create_profile(&d, &admin, "grandma", false).await;
    let (_, shown) = call(Some(&admin), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(shown["id"], own["id"], "{shown}");

    // A preset the box has not is refused when set, not when a render later uses it; the
    // CLI moves the face box and sets the preset, as the API does.
    let (status, v) =
        call(Some(&mum), Method::PATCH, d.at("/api/v1/profiles/grandma"), Some(json!({"preset": "nonsense"}))).await;
    assert_eq!((status, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("preset")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("known: "), "{v}");
    let update = ["--json", "profiles", "update", "grandma", "--face-box", "8,8,40,40", "--preset", "fast"];
    let out = run_ok(reelbox_cli(home_dir, models.path()).args(update).args(["--url", &d.url, "--key", &mum]));
    let updated: Value = serde_json::from_slice(&out.stdout).expect("profile JSON");
    assert_eq!((&updated["face_box"], &updated["style"]["preset"]), (&json!([8, 8, 40, 40]), &json!("fast")));
    // A face box that is not x,y,w,h is refused by the CLI naming the flag, for create as for update.
    for args in [&["profiles", "create", "--name", "grandpa"][..], &["profiles", "update", "grandma"]] {
        let out = reelbox_cli(home_dir, models.path()).args(args).args(["--face-box", "8,8,40"]).output().expect("cli");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && stderr.contains("--face-box") && stderr.contains("x,y,w,h"), "{stderr}");
    }

    // A second profile whose portrait a queued picture job starts from.
    let grandpa = create_profile(&d, &mum, "grandpa", false).await;
    let in_use = grandpa["portrait"].as_str().expect("portrait").to_string();
    assert_eq!(call(Some(&admin), Method::POST, d.at("/api/v1/queue/pause"), None).await.0, StatusCode::OK);
    let job = json!({"kind": "image", "params": {"prompt": "a portrait", "model": TINY_SD, "steps": 2,
        "width": 64, "height": 64, "init_image": in_use, "strength": 0.5}});
    let (status, queued) = call(Some(&mum), Method::POST, d.at("/api/v1/jobs"), Some(job)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let before = storage_bytes(&d, &mum).await;
    assert_eq!(
        call(Some(&mum), Method::DELETE, d.at("/api/v1/profiles/grandpa"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(on_disk(&data, &in_use), "the queued job's starting picture was deleted with the profile");
    assert_eq!(storage_bytes(&d, &mum).await, before, "bytes a queued job holds stay counted");

    // A face box that does not fit the uploaded portrait is refused, and nothing is kept.
    let holding = storage_bytes(&d, &mum).await;
    let form = Form::new()
        .text("name", "grandpa")
        .text("face_box", "40,40,40,40")
        .part("portrait", Part::bytes(png(&test_picture(64, 64, 0))).file_name("me.png"));
    let resp = reqwest::Client::new().post(d.at("/api/v1/profiles")).bearer_auth(&mum).multipart(form);
    let resp = resp.send().await.expect("create");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["field"], "face_box", "{v}");
    assert_eq!(storage_bytes(&d, &mum).await, holding, "the refused profile's portrait was kept");

    // Deleting grandma (by name) removes her portrait and voice sample and frees their bytes.
    assert!(on_disk(&data, portrait) && on_disk(&data, &sample));
    assert_eq!(
        call(Some(&mum), Method::DELETE, d.at("/api/v1/profiles/grandma"), None).await.0,
        StatusCode::NO_CONTENT
    );
    assert!(!on_disk(&data, portrait) && !on_disk(&data, &sample), "the profile's uploads stayed on disk");
    let after = storage_bytes(&d, &mum).await;
    assert_eq!(after, before - held, "deleting grandma gives back her uploads' bytes, no more");
    let (status, _) = call(Some(&mum), Method::GET, d.at(&format!("/api/v1/artifacts/{portrait}")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles/grandma"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// An error's message, field and code.
fn refusal(v: &Value) -> (&str, &str, &str) {
    let e = &v["error"];
    (
        e["message"].as_str().unwrap_or_default(),
        e["field"].as_str().unwrap_or_default(),
        e["code"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_have_two_profiles_of_one_name_and_old_duplicates_are_never_guessed() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let mut d = DaemonProc::start(&data, &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum"})).await;
    let (_, dad) = create_key(&d, Some(&admin), json!({"name": "dad"})).await;
    let anna = create_profile(&d, &mum, "anna", false).await;
    let anna_id = anna["id"].as_str().expect("id").to_string();

    // A second "anna" of mum's, with a portrait: refused naming the first, nothing kept.
    let held = storage_bytes(&d, &mum).await;
    let form = Form::new()
        .text("name", "anna ")
        .part("portrait", Part::bytes(png(&test_picture(64, 64, 0))).file_name("me.png"));
    let resp = reqwest::Client::new().post(d.at("/api/v1/profiles")).bearer_auth(&mum).multipart(form);
    let resp = resp.send().await.expect("create");
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let v: Value = resp.json().await.expect("json");
    let (msg, field, code) = refusal(&v);
    assert!((field, code) == ("name", "name_taken") && msg.contains("\"anna\"") && msg.contains(&anna_id), "{v}");
    assert_eq!(storage_bytes(&d, &mum).await, held, "the refused profile's portrait was kept");
    let (_, mine) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles"), None).await;
    assert_eq!(mine.as_array().map(Vec::len), Some(1), "{mine}");
    // Nor by renaming another one to it; keeping one's own name is no clash.
    let ben = create_profile(&d, &mum, "ben", false).await;
    let (status, v) =
        call(Some(&mum), Method::PATCH, d.at("/api/v1/profiles/ben"), Some(json!({"name": "anna"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(refusal(&v).0.contains(&anna_id) && refusal(&v).1 == "name", "{v}");
    let (status, v) = call(Some(&mum), Method::PATCH, d.at("/api/v1/profiles/ben"), Some(json!({"name": "ben"}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The CLI says the same.
    let models = home.path().join("models");
    let create = ["profiles", "create", "--name", "anna", "--url", &d.url, "--key", &mum];
    let out = reelbox_cli(home.path(), &models).args(create).output().expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("already exists") && stderr.contains(&anna_id), "{stderr}");
    // Dad may have his own "anna".
    create_profile(&d, &dad, "anna", false).await;

    // A store from before this rule may hold two of mum's "anna": write one in, as it did.
    assert!(d.terminate().0.success());
    let copy_id = ulid::Ulid::new();
    {
        use redb::ReadableTable;
        let table = redb::TableDefinition::<u128, &[u8]>::new("profiles");
        let db = redb::Database::open(data.join("reelbox.redb")).expect("the daemon's database");
        let txn = db.begin_write().expect("write");
        {
            let mut profiles = txn.open_table(table).expect("profiles");
            let first = ulid::Ulid::from_string(&anna_id).expect("ulid").0;
            let stored = profiles.get(first).expect("read").expect("anna").value().to_vec();
            let mut copy: Profile = decode(&stored).expect("decode");
            copy.id = copy_id;
            profiles.insert(copy_id.0, encode(&copy).as_slice()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let d = DaemonProc::start(&data, &[]);
    // The name is not resolved to either: the error lists both, for profiles and renders.
    let (status, v) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles/anna"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let msg = refusal(&v).0;
    assert!(msg.contains(&anna_id) && msg.contains(&copy_id.to_string()), "{v}");
    let picture = json!({"kind": "image", "params": {"prompt": "a cat", "profile": "anna"}});
    let (status, v) = call(Some(&mum), Method::POST, d.at("/api/v1/jobs"), Some(picture)).await;
    assert_eq!((status, refusal(&v).1), (StatusCode::BAD_REQUEST, "profile"), "{v}");
    assert!(refusal(&v).0.contains(&copy_id.to_string()), "{v}");
    // Each stays editable by id; renaming one sorts the name out.
    let copy_path = format!("/api/v1/profiles/{copy_id}");
    let (status, v) = call(Some(&mum), Method::PATCH, d.at(&copy_path), Some(json!({"prompt_prefix": "oil"}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = call(Some(&mum), Method::PATCH, d.at(&copy_path), Some(json!({"name": "anna 2"}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, shown) = call(Some(&mum), Method::GET, d.at("/api/v1/profiles/anna"), None).await;
    assert_eq!((status, shown["id"].as_str()), (StatusCode::OK, Some(anna_id.as_str())), "{shown}");
    assert_eq!(ben["name"], "ben");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_slash_question_hash_or_percent_is_shown_changed_and_deleted_from_the_cli() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, mum) = create_key(&d, None, json!({"name": "mum", "scope": "admin"})).await;
    let models = home.path().join("models");
    let cli = |args: &[&str]| {
        let mut cmd = reelbox_cli(home.path(), &models);
        cmd.arg("--json").args(args).args(["--url", &d.url, "--key", &mum]);
        cmd
    };
    // "who? #1" written into the path as it is would be "who" with a query: that profile
    // would be shown, changed and deleted instead.
    let who = create_profile(&d, &mum, "who", false).await;
    for name in ["who? #1", "mum/dad 50% off", "back\\slash"] {
        let made: Value = serde_json::from_slice(&run_ok(&mut cli(&["profiles", "create", "--name", name])).stdout)
            .expect("profile JSON");
        let shown: Value =
            serde_json::from_slice(&run_ok(&mut cli(&["profiles", "show", name])).stdout).expect("profile JSON");
        assert_eq!((&shown["id"], shown["name"].as_str()), (&made["id"], Some(name)), "{name}: {shown}");
        let update = ["profiles", "update", name, "--style", "warm light"];
        let changed: Value = serde_json::from_slice(&run_ok(&mut cli(&update)).stdout).expect("profile JSON");
        assert_eq!((&changed["id"], &changed["style"]["prompt_prefix"]), (&made["id"], &json!("warm light")), "{name}");
        run_ok(&mut cli(&["profiles", "rm", name]));
        let out = cli(&["profiles", "show", name]).output().expect("cli");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && stderr.contains("404"), "{name} is still there: {stderr}");
    }
    let who_path = format!("/api/v1/profiles/{}", who["id"].as_str().expect("id"));
    let (status, kept) = call(Some(&mum), Method::GET, d.at(&who_path), None).await;
    assert_eq!((status, &kept["style"]["prompt_prefix"]), (StatusCode::OK, &json!("")), "{kept}");
}

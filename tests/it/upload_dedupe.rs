//! A file sent again is the upload its sender already has: the same key's same bytes, on any
//! upload route and after a restart, are answered with that artifact (200 on the native
//! route) and stored and counted once; another key's same photo is its own; an upload its
//! owner deleted is stored afresh when sent again. Sent again, it keeps when it was first
//! sent, and is the type its bytes are whatever name it came under.

use crate::common;

use common::api::{create_key, storage_bytes, upload_answer};
use common::daemon::DaemonProc;
use common::media::{png, speechy_16k, test_picture, wav_bytes};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// Creates profile `name` with `portrait` for `key`; its JSON.
async fn profile_with(d: &DaemonProc, key: &str, name: &str, portrait: Vec<u8>) -> Value {
    let form = Form::new().text("name", name.to_string()).part("portrait", Part::bytes(portrait).file_name("me.png"));
    let resp = reqwest::Client::new().post(d.at("/api/v1/profiles")).bearer_auth(key).multipart(form);
    let resp = resp.send().await.expect("create profile");
    assert_eq!(resp.status(), StatusCode::CREATED);
    resp.json().await.expect("profile json")
}

/// The bytes of artifact `id` as `key` downloads them, or the status when it cannot.
async fn download(d: &DaemonProc, key: &str, id: &str) -> Result<Vec<u8>, StatusCode> {
    let resp = reqwest::Client::new().get(d.at(&format!("/api/v1/artifacts/{id}"))).bearer_auth(key).send().await;
    let resp = resp.expect("download");
    match resp.status() {
        StatusCode::OK => Ok(resp.bytes().await.expect("bytes").to_vec()),
        other => Err(other),
    }
}

/// The names of a JSON object's fields, sorted.
fn fields(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_photo_sent_again_by_one_key_is_one_upload_on_every_route_and_after_a_restart() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let mut d = DaemonProc::start(&data, &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "root", "scope": "admin"})).await;
    let photo = png(&test_picture(64, 48, 3));
    let size = photo.len() as u64;
    // Room for this one photo: what it holds costs nothing more, on any route.
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum", "max_storage_bytes": size})).await;
    let (_, dad) = create_key(&d, Some(&admin), json!({"name": "dad"})).await;

    let (status, first) = upload_answer(&d, Some(&mum), "IMG_0001.png", photo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let id = first["id"].as_str().expect("id").to_string();
    assert_eq!(storage_bytes(&d, &mum).await, size);

    // The phone sends it again after the box restarted: the same upload, charged once.
    assert!(d.terminate().0.success());
    let d = DaemonProc::start(&data, &[]);
    let (status, again) = upload_answer(&d, Some(&mum), "IMG_0001 (1).png", photo.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id.as_str(), "{again}");
    assert_eq!(fields(&again), fields(&first), "a fresh upload's answer: {again}");
    assert_eq!((&again["width"], &again["height"]), (&json!(64), &json!(48)));
    assert_eq!(storage_bytes(&d, &mum).await, size, "counted once");

    // ComfyUI's upload and a profile's portrait are that upload too.
    let form = Form::new()
        .part("image", Part::bytes(photo.clone()).file_name("door.png").mime_str("image/png").expect("mime"));
    let resp = reqwest::Client::new().post(d.at("/upload/image")).bearer_auth(&mum).multipart(form);
    let comfy: Value = resp.send().await.expect("comfy upload").json().await.expect("json");
    let name = comfy["name"].as_str().expect("name");
    assert_eq!(name, format!("door_{id}.png"), "a name LoadImage finds: {comfy}");
    let view = reqwest::Client::new().get(d.at("/view")).query(&[("filename", name)]).bearer_auth(&mum);
    assert_eq!(view.send().await.expect("view").bytes().await.expect("bytes").as_ref(), photo.as_slice());
    let profile = profile_with(&d, &mum, "grandma", photo.clone()).await;
    assert_eq!(profile["portrait"], id.as_str(), "{profile}");
    assert_eq!(storage_bytes(&d, &mum).await, size, "still counted once");

    // Another key's same photo is its own: nothing says one key holds the other's bytes.
    let (status, dads) = upload_answer(&d, Some(&dad), "IMG_0001.png", photo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{dads}");
    assert_ne!(dads["id"], id.as_str());
    assert_eq!((storage_bytes(&d, &dad).await, storage_bytes(&d, &mum).await), (size, size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiles_deletion_keeps_the_photo_the_key_also_sent_and_a_deleted_one_is_stored_afresh() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, mum) = create_key(&d, None, json!({"name": "mum", "scope": "admin"})).await;
    let (photo, other) = (png(&test_picture(64, 48, 4)), png(&test_picture(64, 48, 5)));
    let delete =
        |name: &str| reqwest::Client::new().delete(d.at(&format!("/api/v1/profiles/{name}"))).bearer_auth(&mum).send();

    // A portrait the key also sends on its own is the one upload of those bytes...
    let portrait = profile_with(&d, &mum, "grandma", photo.clone()).await["portrait"].clone();
    let (status, sent) = upload_answer(&d, Some(&mum), "grandma.png", photo.clone()).await;
    assert_eq!((status, &sent["id"]), (StatusCode::OK, &portrait), "the portrait it already holds: {sent}");
    // ...and deleting the profile leaves it: the id the client kept still reads.
    assert_eq!(delete("grandma").await.expect("delete").status(), StatusCode::NO_CONTENT);
    let portrait = portrait.as_str().expect("portrait id");
    assert_eq!(download(&d, &mum, portrait).await.as_deref(), Ok(photo.as_slice()));
    assert_eq!(storage_bytes(&d, &mum).await, photo.len() as u64);

    // A portrait sent only as one goes with its profile; sent again, it is stored afresh.
    let gone = profile_with(&d, &mum, "grandpa", other.clone()).await["portrait"].clone();
    let gone = gone.as_str().expect("portrait id").to_string();
    assert_eq!(delete("grandpa").await.expect("delete").status(), StatusCode::NO_CONTENT);
    assert_eq!(download(&d, &mum, &gone).await, Err(StatusCode::NOT_FOUND));
    assert_eq!(storage_bytes(&d, &mum).await, photo.len() as u64);
    let (status, fresh) = upload_answer(&d, Some(&mum), "grandpa.png", other.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    let fresh = fresh["id"].as_str().expect("id");
    assert_ne!(fresh, gone);
    assert_eq!(download(&d, &mum, fresh).await.as_deref(), Ok(other.as_slice()), "its file reads back");
    assert_eq!(storage_bytes(&d, &mum).await, (photo.len() + other.len()) as u64);
}

/// The metadata of artifact `id` as `key` reads it.
async fn meta(d: &DaemonProc, key: &str, id: &str) -> Value {
    let resp = reqwest::Client::new().get(d.at(&format!("/api/v1/artifacts/{id}/meta"))).bearer_auth(key);
    resp.send().await.expect("meta").json().await.expect("meta json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_again_keeps_when_it_was_first_sent_and_is_the_type_its_bytes_are() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, mum) = create_key(&d, None, json!({"name": "mum", "scope": "admin"})).await;

    // A photo sent again later is the upload it was, still sent when it first was.
    let photo = png(&test_picture(64, 48, 6));
    let (_, first) = upload_answer(&d, Some(&mum), "IMG_0002.png", photo.clone()).await;
    let id = first["id"].as_str().expect("id").to_string();
    let sent = meta(&d, &mum, &id).await["created_at"].clone();
    assert!(sent.is_string(), "{first}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (status, again) = upload_answer(&d, Some(&mum), "IMG_0002.png", photo).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &json!(id)), "{again}");
    assert_eq!(again["created_at"], sent, "the answer: {again}");
    assert_eq!(meta(&d, &mum, &id).await["created_at"], sent, "the record keeps its first created_at");

    // A voice memo first sent under a wrong name, then under its own: one upload, a WAV.
    let memo = wav_bytes(speechy_16k(8000), 16_000);
    let (status, first) = upload_answer(&d, Some(&mum), "memo.mp3", memo.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let memo_id = first["id"].as_str().expect("id").to_string();
    let (status, again) = upload_answer(&d, Some(&mum), "memo.wav", memo.clone()).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &json!(memo_id)), "{again}");
    assert_eq!(again["media_type"], "audio/wav", "{again}");
    assert_eq!(meta(&d, &mum, &memo_id).await["media_type"], "audio/wav");
    let resp = reqwest::Client::new().get(d.at(&format!("/api/v1/artifacts/{memo_id}"))).bearer_auth(&mum);
    let resp = resp.send().await.expect("download");
    assert_eq!(resp.headers()["content-type"], "audio/wav", "served as what it is");
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), memo.as_slice());
}

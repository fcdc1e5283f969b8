//! Plain API calls as a key's holder makes them: status and JSON, nothing assumed.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::daemon::DaemonProc;

/// One request with `key` (none: unauthenticated) and a JSON `body`; the status and the
/// JSON answer (null when the answer is not JSON).
pub async fn call(key: Option<&str>, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a key with `by`'s key (none: the first key of a keyless box); its id and secret.
pub async fn create_key(d: &DaemonProc, by: Option<&str>, body: Value) -> (String, String) {
    let (status, v) = call(by, Method::POST, d.at("/api/v1/keys"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (v["id"].as_str().expect("id").to_string(), v["key"].as_str().expect("key").to_string())
}

/// Uploads `bytes` as `name` with `key` (none: unauthenticated); the artifact's answer,
/// stored now (201) or the one the key already held with these bytes (200).
pub async fn upload(d: &DaemonProc, key: Option<&str>, name: &str, bytes: Vec<u8>) -> Value {
    let (status, art) = upload_answer(d, key, name, bytes).await;
    assert!(matches!(status, StatusCode::CREATED | StatusCode::OK), "upload of {name}: {status} {art}");
    art
}

/// As [`upload`], whatever the answer: its status and JSON (null when it is not JSON).
pub async fn upload_answer(d: &DaemonProc, key: Option<&str>, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    let mut r = reqwest::Client::new().post(d.at("/api/v1/artifacts")).multipart(form);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.expect("upload");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The bytes the holder of `key` has stored (`GET /api/v1/keys`: a client key sees its own).
pub async fn storage_bytes(d: &DaemonProc, key: &str) -> u64 {
    let (_, keys) = call(Some(key), Method::GET, d.at("/api/v1/keys"), None).await;
    keys[0]["storage_bytes"].as_u64().unwrap_or_else(|| panic!("storage_bytes: {keys}"))
}

/// A client that sends `key` with every request (for the shared job helpers that take a
/// client: `submit`, `wait_job`, `get_json`).
pub fn keyed_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {key}").parse().expect("header");
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

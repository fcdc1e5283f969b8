//! A family box's keys over a week, as its owner meets them on the real daemon: one admin
//! key, a key per person with quotas, `reelbox keys list` read by a person, a second admin,
//! revoking by name, and the last admin key kept from being revoked (a lost one is replaced offline, as
//! README's "Keys, quotas and limits" says); a revoked key's jobs canceled, its event streams
//! and ComfyUI sockets ended, and a second revoke saying when the first was.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::api::{call, create_key, keyed_client};
use common::daemon::{DaemonProc, get_json, is_final, submit_testcard, wait_job};
use common::sse::read_events;
use common::tools::{reelbox_cli, run_ok};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A daemon on `data` with an admin key and the kid's client key: (daemon, admin key, the
/// kid's key id, the kid's key).
async fn box_with_a_kid(data: &Path) -> (DaemonProc, String, String, String) {
    let d = DaemonProc::start(data, &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (kid_id, kid) = create_key(&d, Some(&admin), json!({"name": "kid"})).await;
    (d, admin, kid_id, kid)
}

/// `reelbox ARGS` on the data dir `data` (no daemon needed for `--offline`).
fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    let home = data.parent().expect("home");
    run_ok(reelbox_cli(home, &home.join("models")).env("REELBOX_DATA_DIR", data).args(args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_admin_key_cannot_be_revoked_and_a_lost_one_is_replaced_offline() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let mut d = DaemonProc::start(&data, &[]);
    let (admin_id, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum", "max_queued": 3})).await;
    let (_, kid) = create_key(&d, Some(&admin), json!({"name": "kid", "max_storage_bytes": 50_000_000})).await;

    // Revoking the only admin key would leave the family's keys with nobody to manage them.
    let (status, v) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{admin_id}")), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("last admin key") && msg.contains("--scope admin"), "{msg}");
    assert_eq!(call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::OK, "still works");

    // With a second admin, the first can go; the second then is the last one.
    let (second_id, second) = create_key(&d, Some(&admin), json!({"name": "dad", "scope": "admin"})).await;
    let (status, v) = call(Some(&second), Method::DELETE, d.at(&format!("/api/v1/keys/{admin_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = call(Some(&second), Method::DELETE, d.at(&format!("/api/v1/keys/{second_id}")), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "the remaining admin key was revoked");

    // Lost: stop the daemon, write a new admin key into its database, start it again.
    assert!(d.terminate().0.success());
    let out = cli(&data, &["keys", "create", "--name", "rescue", "--scope", "admin", "--offline"]);
    let rescue = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(rescue.starts_with("rb_"), "{rescue}");
    let d = DaemonProc::start(&data, &[]);
    let (status, v) = call(Some(&rescue), Method::DELETE, d.at(&format!("/api/v1/keys/{second_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "the rescue key revokes the lost one: {v}");
    assert_eq!(call(Some(&mum), Method::GET, d.at("/api/v1/keys"), None).await.0, StatusCode::OK, "mum's key lives on");

    // The kid is logged in to the web studio when the key goes.
    let browser = reqwest::Client::new();
    let login = browser.post(d.at("/api/v1/session")).header("Origin", &d.url).json(&json!({"key": kid}));
    let login = login.send().await.expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let set_cookie = login.headers()[reqwest::header::SET_COOKIE].to_str().expect("ascii").to_string();
    let cookie = set_cookie.split(';').next().expect("cookie").to_string();

    // The owner reads the list and revokes by the name it shows.
    let list = cli(&data, &["keys", "list", "--url", &d.url, "--key", &rescue]);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.contains("0 B/50.0 MB"), "storage in units people read:\n{list}");
    let out = cli(&data, &["keys", "revoke", "kid", "--url", &d.url, "--key", &rescue]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked key \"kid\""));
    // The list says who revoked each key: the kid's by the rescue key, the first admin's by dad's.
    let list = cli(&data, &["keys", "list", "--url", &d.url, "--key", &rescue]);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    let state_of = |name: &str| {
        let row = list.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap_or_default();
        row.split_once("revoked ").map(|(_, s)| s.to_string()).unwrap_or_default()
    };
    assert!(state_of("kid").ends_with(" by key \"rescue\""), "{list}");
    assert!(state_of("admin").ends_with(" by key \"dad\""), "{list}");
    // Everywhere the kid is told the key was revoked, by whom, and who gives a new one.
    let told = |v: &Value| {
        let msg = v["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(
            msg.contains("\"kid\" was revoked at") && msg.contains("by key \"rescue\"; ask whoever runs the box"),
            "{v}"
        );
    };
    let (status, v) = call(Some(&kid), Method::GET, d.at("/api/v1/keys"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    told(&v);
    let page = browser.get(d.at("/api/v1/jobs")).header("Origin", &d.url).header("Cookie", &cookie);
    let page = page.send().await.expect("page");
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    let v: Value = page.json().await.expect("json");
    assert_eq!(v["error"]["code"], "session_expired", "{v}");
    told(&v);
    let again = browser.post(d.at("/api/v1/session")).header("Origin", &d.url).json(&json!({"key": kid}));
    let again = again.send().await.expect("login again");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    told(&again.json().await.expect("json"));
    let home = data.parent().expect("home");
    let out = reelbox_cli(home, &home.join("models")).args(["jobs", "list", "--url", &d.url, "--key", &kid]).output();
    let stderr = String::from_utf8_lossy(&out.expect("cli").stderr).to_string();
    assert!(
        stderr.contains("was revoked") && stderr.contains("by key \"rescue\"") && stderr.contains("new key"),
        "{stderr}"
    );

    // Mum gives her own key up: she is told she did.
    let (status, v) = call(Some(&mum), Method::DELETE, d.at("/api/v1/keys/mum"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["revoked_by"], "its own holder", "{v}");
    let (_, v) = call(Some(&mum), Method::GET, d.at("/api/v1/keys"), None).await;
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("by its own holder;")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusals_name_the_key_as_people_know_it_and_a_fix_they_can_make() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let (id, kid) =
        create_key(&d, Some(&admin), json!({"name": "kid", "max_queued": 1, "max_storage_bytes": 1000})).await;
    assert_eq!(call(Some(&admin), Method::POST, d.at("/api/v1/queue/pause"), None).await.0, StatusCode::OK);
    let job = json!({"kind": "testcard", "params": {"steps": 1}});
    assert_eq!(call(Some(&kid), Method::POST, d.at("/api/v1/jobs"), Some(job.clone())).await.0, StatusCode::ACCEPTED);
    let (status, v) = call(Some(&kid), Method::POST, d.at("/api/v1/jobs"), Some(job)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("key \"kid\" already has 1 queued") && !msg.contains(&id), "{msg}");

    // A 32×32 picture of noise: a few kB of PNG, over the 1000-byte quota.
    let mut png = Vec::new();
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([((x * 97) ^ (y * 31)) as u8, (x * y * 13) as u8, (x + y * 57) as u8])
    })
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .expect("png");
    assert!(png.len() > 1000, "{} bytes", png.len());
    let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(png).file_name("me.png"));
    let resp = reqwest::Client::new().post(d.at("/api/v1/artifacts")).bearer_auth(&kid).multipart(form);
    let resp = resp.send().await.expect("upload");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.expect("json");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.starts_with("key \"kid\" holds 0 bytes") && !msg.contains(&id), "{msg}");
    assert!(msg.contains("delete finished jobs or profiles") && !msg.contains("delete artifacts"), "{msg}");
}

/// A quota is a whole number the OpenAPI document's int64 holds, 1 or more: 0 (read as "no
/// limit" by many, but refusing everything) and one past 2^63 − 1 (which a generated client
/// cannot send back, and the box took) are refused naming the field, and no key is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_of_zero_or_past_the_documents_int64_is_refused_naming_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(&home.path().join("data"), &[]);
    let (_, admin) = create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let past = json!(9_223_372_036_854_775_808_u64);
    for (field, value, words) in [
        ("max_storage_bytes", past.clone(), "must be at most 9223372036854775807"),
        ("gpu_seconds_per_day", past, "must be at most 9223372036854775807"),
        ("max_queued", json!(0), "must be at least 1"),
        // The bound in words is the document's, exactly (not 9223372036854776000).
        ("max_queued", json!("many"), "must be a whole number from 1 to 9223372036854775807; got \"many\""),
    ] {
        let body = json!({"name": "kid", field: value});
        let (status, v) = call(Some(&admin), Method::POST, d.at("/api/v1/keys"), Some(body)).await;
        assert_eq!((status, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains(words)), "{v}");
    }
    let (_, keys) = call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await;
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "only the admin key: {keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_opened_before_its_key_was_revoked_ends_with_it() {
    let home = tempfile::tempdir().expect("tempdir");
    let (d, admin, kid_id, kid) = box_with_a_kid(&home.path().join("data")).await;
    let job = json!({"kind": "testcard", "params": {"steps": 300, "step_ms": 100}});
    let (status, v) = call(Some(&kid), Method::POST, d.at("/api/v1/jobs"), Some(job)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    // The stream of all the kid's events, which outlives any one job (the revoke cancels
    // this one): it would flow on, keep-alives at least, for as long as the box runs.
    let resp = reqwest::Client::new().get(d.at("/api/v1/events")).bearer_auth(&kid);
    let mut stream = resp.send().await.expect("stream").bytes_stream();
    use futures::StreamExt;
    assert!(stream.next().await.is_some(), "the stream flows");

    let (status, _) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!(status, StatusCode::OK);
    let mut parser = reelbox::api::sse::SseParser::default();
    let mut messages = Vec::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(chunk)) = stream.next().await {
            messages.extend(parser.push(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the revoked key's event stream still flows 5 s later");
    // Its last event says so, in the words a request with the key now gets.
    let last = messages.last().expect("events");
    assert_eq!(last.event, "revoked", "{last:?}");
    let said: Value = serde_json::from_str(&last.data).expect("json");
    let (_, refusal) = call(Some(&kid), Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(said["message"], refusal["error"]["message"], "{said}");
    assert!(said["message"].as_str().unwrap_or_default().starts_with("the key \"kid\" was revoked at "), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_cancels_its_waiting_and_running_jobs_and_keeps_its_finished_ones() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let (d, admin, kid_id, kid) = box_with_a_kid(&data).await;
    let (_, mum) = create_key(&d, Some(&admin), json!({"name": "mum"})).await;
    let (kid_http, admin_http) = (keyed_client(&kid), keyed_client(&admin));

    // One render the kid already has, then two that run (the box runs two at once) and
    // one that waits behind them, 30 s each; mum's quick one waits behind those.
    let done = submit_testcard(&kid_http, &d, json!({"steps": 1, "step_ms": 0})).await;
    let done = wait_job(&kid_http, &d, &done, Duration::from_secs(60), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(submit_testcard(&kid_http, &d, json!({"steps": 300, "step_ms": 100})).await);
    }
    let mums = submit_testcard(&keyed_client(&mum), &d, json!({"steps": 2, "step_ms": 10})).await;
    for id in &live[..2] {
        wait_job(&admin_http, &d, id, Duration::from_secs(60), |j| j["state"] == "running").await;
    }

    let out = cli(&data, &["keys", "revoke", "kid", "--url", &d.url, "--key", &admin]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("revoked key \"kid\"") && said.contains("canceled 3 of its jobs"), "{said}");

    // Each ends canceled, saying why, on the events its watchers read.
    for id in &live {
        let job = wait_job(&admin_http, &d, id, Duration::from_secs(30), is_final).await;
        assert_eq!(job["state"], "canceled", "{job}");
        let resp = admin_http.get(d.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
        let events = read_events(resp, |e| e.last().is_some_and(|(_, v)| v["state"] == "canceled")).await;
        let end = events.last().map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(end["error"], "canceled because the key \"kid\" was revoked", "{end}");
    }
    // The finished one stays, with its picture; mum's job runs as it would have.
    let kept = get_json(&admin_http, &d, &format!("/api/v1/jobs/{}", done["id"].as_str().expect("id"))).await;
    assert_eq!(kept["state"], "succeeded", "{kept}");
    let artifact = kept["stages"][0]["artifacts"][0].as_str().expect("an artifact");
    let file = admin_http.get(d.at(&format!("/api/v1/artifacts/{artifact}"))).send().await.expect("file");
    assert_eq!(file.status(), StatusCode::OK);
    let mums = wait_job(&admin_http, &d, &mums, Duration::from_secs(60), is_final).await;
    assert_eq!(mums["state"], "succeeded", "{mums}");

    // Again: the same answer, truthful: revoked when it was, nothing canceled twice.
    let (_, first) = call(Some(&admin), Method::GET, d.at("/api/v1/keys"), None).await;
    let revoked_at = first.as_array().and_then(|ks| ks.iter().find(|k| k["id"] == kid_id.as_str()));
    let revoked_at = revoked_at.map(|k| k["revoked_at"].clone()).unwrap_or_default();
    assert!(revoked_at.is_string(), "{first}");
    let (status, v) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["already_revoked"].clone(), v["canceled_jobs"].clone()), (json!(true), json!(0)), "{v}");
    assert_eq!(v["revoked_at"], revoked_at, "a second revoke moved the revoke time");
    let out = cli(&data, &["keys", "revoke", "kid", "--url", &d.url, "--key", &admin]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let when = revoked_at.as_str().unwrap_or_default();
    assert!(said.contains(&format!("was already revoked at {when}")) && said.contains("nothing changed"), "{said}");
    // The answer is documented as it is.
    let doc = get_json(&admin_http, &d, "/openapi.json").await;
    let answer = &doc["paths"]["/api/v1/keys/{id}"]["delete"]["responses"]["200"]["content"]["application/json"];
    assert!(answer["schema"]["$ref"].as_str().is_some_and(|r| r.ends_with("/RevokedKeyView")), "{answer}");
    let view = doc["components"]["schemas"]["RevokedKeyView"].to_string();
    assert!(view.contains("canceled_jobs") && view.contains("already_revoked") && view.contains("KeyView"), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comfyui_socket_of_a_revoked_key_is_closed_saying_so() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let home = tempfile::tempdir().expect("tempdir");
    let (d, admin, kid_id, kid) = box_with_a_kid(&home.path().join("data")).await;
    let url = format!("{}/ws?clientId=laptop&token={kid}", d.url.replacen("http://", "ws://", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.expect("the kid's socket opens");
    let hello = socket.next().await.expect("a message").expect("readable");
    assert!(hello.to_text().is_ok_and(|t| t.contains("\"status\"")), "{hello:?}");

    let (status, _) = call(Some(&admin), Method::DELETE, d.at(&format!("/api/v1/keys/{kid_id}")), None).await;
    assert_eq!(status, StatusCode::OK);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame.map(|f| f.reason.as_str().to_string()),
                Ok(_) => {}
                Err(e) => panic!("the socket broke instead of closing: {e}"),
            }
        }
        None
    })
    .await
    .expect("the revoked key's socket is still open 5 s later");
    let reason = closed.expect("a close frame with a reason");
    assert!(reason.contains("\"kid\" was revoked at") && reason.contains("ask whoever runs the box"), "{reason}");
}

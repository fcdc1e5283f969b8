//! A web page the owner opens must not drive the keyless daemon on 127.0.0.1: cross-site
//! requests (a CORS "simple" POST, a WebSocket) and DNS rebinding (a hostile name that
//! resolves to 127.0.0.1) are refused, while scripts without an `Origin` and LAN clients
//! using the box's address or `.local` name keep working — against the real daemon.

use crate::common;

use common::daemon::DaemonProc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const EVIL: &str = "http://evil.example";

/// A keyless daemon with its queue paused and one testcard waiting in it.
async fn daemon_with_a_waiting_job(env: &[(&str, &str)]) -> (DaemonProc, tempfile::TempDir, String) {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), env);
    let http = reqwest::Client::new();
    assert!(http.post(d.at("/api/v1/queue/pause")).send().await.expect("pause").status().is_success());
    let job: Value = http
        .post(d.at("/api/v1/jobs"))
        .json(&json!({"kind": "testcard", "params": {"steps": 1}}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    let id = job["id"].as_str().expect("job id").to_string();
    (d, data, id)
}

async fn state_of(d: &DaemonProc, id: &str) -> String {
    let job: Value = reqwest::get(d.at(&format!("/api/v1/jobs/{id}"))).await.expect("get").json().await.expect("json");
    job["state"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_page_cannot_clear_the_queue_or_submit_work() {
    let (d, _data, id) = daemon_with_a_waiting_job(&[]).await;
    let http = reqwest::Client::new();
    // What a page on evil.example can send without a CORS preflight.
    for (path, body) in [
        ("/queue", r#"{"clear":true}"#),
        ("/api/queue", r#"{"clear":true}"#),
        ("/api/v1/jobs", r#"{"kind":"testcard","params":{}}"#),
        ("/interrupt", ""),
        (&format!("/api/v1/jobs/{id}/cancel") as &str, ""),
    ] {
        let resp = http
            .post(d.at(path))
            .header("origin", EVIL)
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        let err: Value = resp.json().await.expect("json error");
        // Each in its route's family's shape: ComfyUI's names the code `type`.
        let code = if path.starts_with("/api/v1/") { &err["error"]["code"] } else { &err["error"]["type"] };
        assert_eq!(code, "forbidden_origin", "{path}: {err}");
    }
    assert_eq!(state_of(&d, &id).await, "queued", "the waiting job is untouched");
    // The daemon's own page (same origin) and scripts without an Origin still work.
    let own = d.url.clone();
    let resp = http
        .post(d.at("/api/v1/jobs"))
        .header("origin", own)
        .json(&json!({"kind": "testcard", "params": {"steps": 1}}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = http.post(d.at("/api/v1/jobs")).json(&json!({"kind": "testcard", "params": {"steps": 1}})).send().await;
    assert_eq!(resp.expect("post").status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_name_is_refused_and_lan_names_are_served() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[("REELBOX_ALLOWED_HOSTS", "films.example.com")]);
    let http = reqwest::Client::new();
    let port = d.url.rsplit(':').next().expect("port").to_string();
    let status = |host: String| {
        let req = http.get(d.at("/api/v1/system")).header("host", host);
        async move { req.send().await.expect("get").status() }
    };
    assert_eq!(status(format!("evil.example:{port}")).await, StatusCode::FORBIDDEN);
    assert_eq!(status(format!("127.0.0.1.evil.example:{port}")).await, StatusCode::FORBIDDEN);
    assert_eq!(status("localhost.evil.com".into()).await, StatusCode::FORBIDDEN);
    for ok in [
        format!("localhost:{port}"),
        format!("studio.local:{port}"),
        "192.168.1.20:8470".into(),
        "films.example.com".into(),
    ] {
        assert_eq!(status(ok.clone()).await, StatusCode::OK, "{ok}");
    }
    // The probes are behind the same check: a rebinding page learns nothing there either.
    let probe = http.get(d.at("/healthz")).header("host", "evil.example").send().await.expect("get");
    assert_eq!(probe.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_page_cannot_open_the_websocket() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[]);
    let ws = d.url.replacen("http://", "ws://", 1) + "/ws?clientId=page";
    let mut req = ws.clone().into_client_request().expect("request");
    req.headers_mut().insert("origin", EVIL.parse().expect("header"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), StatusCode::FORBIDDEN),
        other => panic!("a foreign page opened the socket: {:?}", other.map(|(_, r)| r.status())),
    }
    let mut own = ws.into_client_request().expect("request");
    own.headers_mut().insert("origin", d.url.parse().expect("header"));
    let (socket, _) = tokio_tungstenite::connect_async(own).await.expect("the daemon's own page connects");
    drop(socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_origin_may_call_and_forwarded_loopback_requests_are_not_the_local_admin() {
    let studio = "https://studio.example.com";
    let (d, _data, id) = daemon_with_a_waiting_job(&[("REELBOX_ALLOWED_ORIGINS", studio)]).await;
    let http = reqwest::Client::new();
    let resp = http.get(d.at(&format!("/api/v1/jobs/{id}"))).header("origin", studio).send().await.expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    // A reverse proxy on this host connects from 127.0.0.1 for LAN clients: not the owner.
    for (name, value) in
        [("x-forwarded-for", "192.168.1.9"), ("forwarded", "for=192.168.1.9"), ("x-real-ip", "192.168.1.9")]
    {
        let resp =
            http.post(d.at(&format!("/api/v1/jobs/{id}/cancel"))).header(name, value).send().await.expect("post");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{name}");
        // The refusal says why this box's own caller is not its admin (it read like a bug).
        let body: Value = resp.json().await.expect("json");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("proxy header")), "{body}");
    }
    assert_eq!(state_of(&d, &id).await, "queued");
}

/// A web page served on another loopback port (another origin); its origin.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let page = axum::Router::new()
        .route("/", axum::routing::get(|| async { axum::response::Html("<!doctype html><title>tool</title>") }));
    tokio::spawn(async move { axum::serve(listener, page).await });
    origin
}

/// What the page's script sees of `GET /api/v1/system` and a JSON `POST /api/v1/jobs` with `key`.
const CALLS: &str = r#"
const [api, key, done] = arguments;
(async () => {
  try {
    const auth = {Authorization: "Bearer " + key};
    const system = await fetch(api + "/api/v1/system", {headers: auth});
    const job = await fetch(api + "/api/v1/jobs", {method: "POST", body: JSON.stringify({kind: "testcard", params: {steps: 1}}),
      headers: {...auth, "Content-Type": "application/json", "Idempotency-Key": "page-1"}});
    done({system: system.status, version: (await system.json()).version ?? null, job: job.status, id: (await job.json()).id ?? null});
  } catch (e) { done({error: String(e)}); }
})();
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_page_calls_the_api_from_a_browser_and_an_unlisted_one_cannot() {
    let (listed, unlisted) = (serve_page().await, serve_page().await);
    let data = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(data.path(), &[("REELBOX_ALLOWED_ORIGINS", &listed)]);
    let (_, key) = common::api::create_key(&d, None, json!({"name": "tool", "scope": "admin"})).await;
    let downloads = tempfile::tempdir().expect("downloads");
    let b = crate::web_studio::browser::browser(downloads.path()).await;

    b.client.goto(&listed).await.expect("listed page");
    let got = b.client.execute_async(CALLS, vec![json!(d.url), json!(key)]).await.expect("script");
    assert_eq!((got["system"].as_u64(), got["job"].as_u64()), (Some(200), Some(202)), "{got}");
    assert!(got["version"].is_string() && got["id"].is_string(), "the page reads the answers: {got}");

    b.client.goto(&unlisted).await.expect("unlisted page");
    let got = b.client.execute_async(CALLS, vec![json!(d.url), json!(key)]).await.expect("script");
    assert!(got["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{got}");
    let jobs: Value = common::api::call(Some(&key), reqwest::Method::GET, d.at("/api/v1/jobs"), None).await.1;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1), "only the listed page's job: {jobs}");

    // What caches are told: the answer depends on the origin.
    let resp = reqwest::Client::new().get(d.at("/api/v1/system")).bearer_auth(&key).header("origin", &listed);
    let resp = resp.send().await.expect("get");
    assert_eq!(resp.headers()["access-control-allow-origin"], listed.as_str());
    let vary: Vec<_> = resp.headers().get_all("vary").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(vary.iter().any(|v| v.to_ascii_lowercase().contains("origin")), "{vary:?}");
}

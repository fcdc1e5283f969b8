//! Who may call what: API keys, isolation between clients, trusted-proxy mode, the
//! refusal to serve a LAN without keys, quotas and limits — against the real daemon.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::daemon::{DaemonProc, is_final, testcard};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A caller: no key, a given key, or a client bound to a source address.
#[derive(Clone)]
struct As {
    http: reqwest::Client,
    key: Option<String>,
}

impl As {
    fn key(key: Option<&str>) -> Self {
        Self { http: reqwest::Client::new(), key: key.map(str::to_string) }
    }

    fn req(&self, method: Method, url: String) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn status(&self, method: Method, url: String) -> StatusCode {
        self.req(method, url).send().await.expect("request").status()
    }

    async fn json(&self, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.req(method, url);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn create_key(d: &DaemonProc, by: &As, body: Value) -> (String, String) {
    let (status, v) = by.json(Method::POST, d.at("/api/v1/keys"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (v["id"].as_str().expect("id").to_string(), v["key"].as_str().expect("key shown once").to_string())
}

/// Submits a testcard job as `by`; the status is the test's to check (refusals are the point).
async fn submit_as(d: &DaemonProc, by: &As, params: Value) -> (StatusCode, Value) {
    by.json(Method::POST, d.at("/api/v1/jobs"), Some(testcard(params))).await
}

async fn wait_final(d: &DaemonProc, by: &As, id: &str) -> Value {
    for _ in 0..400 {
        let (_, job) = by.json(Method::GET, d.at(&format!("/api/v1/jobs/{id}")), None).await;
        if is_final(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} did not finish");
}

/// Reads an SSE response until it ends or `timeout`; returns the data objects.
async fn sse_events(resp: reqwest::Response, timeout: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                out.push(serde_json::from_str(data.trim()).expect("event json"));
            }
        }
    }
    out
}

fn write_config(dir: &Path, toml: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_isolate_clients_on_every_route_family() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let anon = As::key(None);

    // Keyless on loopback: open, like Ollama; the first key must be an admin key.
    assert_eq!(anon.status(Method::GET, d.at("/api/v1/jobs")).await, 200);
    let (status, v) =
        anon.json(Method::POST, d.at("/api/v1/keys"), Some(json!({"name": "laptop", "scope": "client"}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("admin"), "{v}");
    let (_, admin_key) = create_key(&d, &anon, json!({"name": "root", "scope": "admin"})).await;
    let admin = As::key(Some(&admin_key));

    // From now on nothing answers without a key but the probes.
    assert_eq!(anon.status(Method::GET, d.at("/api/v1/jobs")).await, 401);
    let resp = anon.req(Method::POST, d.at("/api/v1/keys")).json(&json!({"name": "x"})).send().await.expect("req");
    assert_eq!(resp.status(), 401, "the first key can be made only once");
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(anon.status(Method::GET, d.at("/healthz")).await, 200);
    assert_eq!(anon.status(Method::GET, d.at("/readyz")).await, 200);

    let (a_id, a_key) = create_key(&d, &admin, json!({"name": "alice"})).await;
    let (_, b_key) = create_key(&d, &admin, json!({"name": "bob"})).await;
    let a = As::key(Some(&a_key));
    let b = As::key(Some(&b_key));
    let bad = As::key(Some("rb_0000000000000000000000000000000000000000000000000000000000000000"));
    let (status, _) = a.json(Method::POST, d.at("/api/v1/keys"), Some(json!({"name": "mine"}))).await;
    assert_eq!(status, 403, "client keys cannot make keys");

    // A's job, artifact and profile.
    let (status, job) = submit_as(&d, &a, json!({"steps": 2, "step_ms": 10, "width": 32, "height": 32})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["owner"], a_id, "records belong to the key id");
    let job_id = job["id"].as_str().expect("id").to_string();
    assert_eq!(wait_final(&d, &a, &job_id).await["state"], "succeeded");
    let (_, arts) = a.json(Method::GET, d.at(&format!("/api/v1/jobs/{job_id}/artifacts")), None).await;
    let art = arts[0]["id"].as_str().expect("an artifact").to_string();
    let (status, profile) = a.json(Method::POST, d.at("/api/v1/profiles"), Some(json!({"name": "Ada"}))).await;
    assert_eq!(status, 201, "{profile}");
    let profile_id = profile["id"].as_str().expect("id").to_string();

    // Route × caller → status. B gets 404 (never 403, never the data); admin sees all.
    let routes: Vec<(Method, String, [u16; 5])> = vec![
        //                                             none bad  A    B    admin
        (Method::GET, format!("/api/v1/jobs/{job_id}"), [401, 401, 200, 404, 200]),
        (Method::GET, format!("/api/v1/jobs/{job_id}/artifacts"), [401, 401, 200, 404, 200]),
        (Method::GET, format!("/api/v1/jobs/{job_id}/events"), [401, 401, 200, 404, 200]),
        (Method::POST, format!("/api/v1/jobs/{job_id}/cancel"), [401, 401, 409, 404, 409]),
        (Method::GET, format!("/api/v1/artifacts/{art}"), [401, 401, 200, 404, 200]),
        (Method::GET, format!("/api/v1/artifacts/{art}/meta"), [401, 401, 200, 404, 200]),
        (Method::GET, format!("/api/v1/profiles/{profile_id}"), [401, 401, 200, 404, 200]),
        // (0: not asked here; A deletes its own last.)
        (Method::DELETE, format!("/api/v1/profiles/{profile_id}"), [401, 401, 0, 404, 0]),
        (Method::GET, "/api/v1/jobs".into(), [401, 401, 200, 200, 200]),
        (Method::GET, "/api/v1/profiles".into(), [401, 401, 200, 200, 200]),
        (Method::GET, "/api/v1/system".into(), [401, 401, 200, 200, 200]),
        (Method::GET, "/api/v1/keys".into(), [401, 401, 200, 200, 200]),
        (Method::POST, "/api/v1/queue/resume".into(), [401, 401, 403, 403, 200]),
        (Method::GET, "/openapi.json".into(), [401, 401, 200, 200, 200]),
        (Method::GET, "/metrics".into(), [401, 401, 200, 200, 200]),
        // The compatibility layers sit behind the same gate.
        (Method::GET, "/v1/models".into(), [401, 401, 200, 200, 200]),
        (Method::POST, "/prompt".into(), [401, 401, 400, 400, 400]),
        (Method::GET, "/api/queue".into(), [401, 401, 200, 200, 200]),
        (Method::GET, "/healthz".into(), [200, 200, 200, 200, 200]),
    ];
    let callers = [("no key", &anon), ("bad key", &bad), ("A", &a), ("B", &b), ("admin", &admin)];
    for (method, path, want) in &routes {
        for ((name, who), &expected) in callers.iter().zip(want) {
            if expected == 0 {
                continue;
            }
            let got = who.status(method.clone(), d.at(path)).await;
            assert_eq!(got.as_u16(), expected, "{method} {path} as {name}");
        }
    }
    assert_eq!(a.status(Method::GET, d.at(&format!("/api/v1/profiles/{profile_id}"))).await, 200, "B's delete left it");

    // Listings: B sees none of A's records; admin sees them.
    let (_, b_jobs) = b.json(Method::GET, d.at("/api/v1/jobs"), None).await;
    assert!(b_jobs["jobs"].as_array().expect("jobs").is_empty(), "{b_jobs}");
    let (_, b_profiles) = b.json(Method::GET, d.at("/api/v1/profiles"), None).await;
    assert!(b_profiles.as_array().expect("profiles").is_empty());
    let (_, all) = admin.json(Method::GET, d.at("/api/v1/jobs"), None).await;
    assert!(all["jobs"].as_array().expect("jobs").iter().any(|j| j["id"] == job_id.as_str()));
    let (_, b_keys) = b.json(Method::GET, d.at("/api/v1/keys"), None).await;
    assert_eq!(b_keys.as_array().expect("keys").len(), 1, "a client key sees only itself: {b_keys}");
    assert!(b_keys.to_string().find("\"key\"").is_none(), "keys are never shown again");

    // SSE: B's firehose replays from the start but carries none of A's events.
    let (_, b_job) = submit_as(&d, &b, json!({"steps": 2, "step_ms": 10, "width": 32, "height": 32})).await;
    let b_job_id = b_job["id"].as_str().expect("id").to_string();
    wait_final(&d, &b, &b_job_id).await;
    let resp = b.req(Method::GET, d.at("/api/v1/events?after=0")).send().await.expect("sse");
    let events = sse_events(resp, Duration::from_millis(800)).await;
    assert!(events.iter().any(|e| e["job"] == b_job_id.as_str()), "B sees its own events");
    assert!(events.iter().all(|e| e["job"] != job_id.as_str()), "B never sees A's events");
    let resp = admin.req(Method::GET, d.at("/api/v1/events?after=0")).send().await.expect("sse");
    let events = sse_events(resp, Duration::from_millis(800)).await;
    assert!(events.iter().any(|e| e["job"] == job_id.as_str()), "admin sees A's events");

    // Browser-style clients: `?token=` works on event streams and WebSocket upgrades only.
    let url = d.at(&format!("/api/v1/jobs/{job_id}/events?token={a_key}"));
    assert_eq!(anon.status(Method::GET, url).await, 200);
    assert_eq!(anon.status(Method::GET, d.at(&format!("/api/v1/jobs?token={a_key}"))).await, 401);
    let ws = |token: &str| {
        anon.http
            .get(d.at(&format!("/ws?token={token}")))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    assert_eq!(ws("rb_nope").await.expect("ws").status(), 401);
    assert_eq!(ws(&a_key).await.expect("ws").status(), 101, "authenticated by ?token= on the upgrade");

    // Revoking a key stops it at once.
    let (_, keys) = admin.json(Method::GET, d.at("/api/v1/keys"), None).await;
    let b_id = keys.as_array().expect("keys").iter().find(|k| k["name"] == "bob").expect("bob")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(admin.status(Method::DELETE, d.at(&format!("/api/v1/keys/{b_id}"))).await, 200);
    assert_eq!(b.status(Method::GET, d.at("/api/v1/jobs")).await, 401);
    assert_eq!(a.status(Method::DELETE, d.at(&format!("/api/v1/profiles/{profile_id}"))).await, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_limits_answer_4xx_naming_what_was_exceeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[limits]\nmax_body_bytes = 4096\nmax_upload_bytes = 8192\nmax_prompt_chars = 100\nmax_image_side = 512\nmax_streams_per_key = 1\n",
    );
    let mut d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    let anon = As::key(None);
    let (_, admin_key) = create_key(&d, &anon, json!({"name": "root", "scope": "admin"})).await;
    let admin = As::key(Some(&admin_key));
    let (c_id, c_key) = create_key(&d, &admin, json!({"name": "capped", "max_queued": 2})).await;
    let c = As::key(Some(&c_key));

    // max_queued: with the queue paused, the third queued job is refused.
    assert_eq!(admin.status(Method::POST, d.at("/api/v1/queue/pause")).await, 200);
    for _ in 0..2 {
        assert_eq!(submit_as(&d, &c, json!({"steps": 1, "step_ms": 0})).await.0, 202);
    }
    let (status, v) = submit_as(&d, &c, json!({"steps": 1, "step_ms": 0})).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded");
    // Named once: it read "quota max_queued: … its quota max_queued is 2".
    assert_eq!(v["error"]["message"].as_str().unwrap_or("").matches("max_queued").count(), 1, "{v}");
    assert_eq!(submit_as(&d, &admin, json!({"steps": 1, "step_ms": 0})).await.0, 202, "other keys unaffected");
    assert_eq!(admin.status(Method::POST, d.at("/api/v1/queue/resume")).await, 200);

    // Limits: each names its field and config key.
    let (status, v) = submit_as(&d, &c, json!({"width": 1024})).await;
    assert_eq!((status.as_u16(), v["error"]["field"].as_str()), (400, Some("width")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("limits.max_image_side"), "{v}");
    let (status, v) = submit_as(&d, &c, json!({"prompt": "x".repeat(101)})).await;
    assert_eq!((status.as_u16(), v["error"]["field"].as_str()), (400, Some("prompt")), "{v}");
    let (status, v) = submit_as(&d, &c, json!({"pad": "x".repeat(5000)})).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("max_body_bytes"), "{v}");

    let form = reqwest::multipart::Form::new()
        .text("name", "big")
        .part("portrait", reqwest::multipart::Part::bytes(vec![0u8; 20_000]).file_name("p.png"));
    let resp = c.req(Method::POST, d.at("/api/v1/profiles")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("limits.max_upload_bytes"), "{v}");

    // One event stream per key here: a second is refused until the first closes.
    let first = c.req(Method::GET, d.at("/api/v1/events")).send().await.expect("sse");
    assert_eq!(first.status(), 200);
    let (status, v) = c.json(Method::GET, d.at("/api/v1/events"), None).await;
    assert_eq!(status, 429, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("max_streams_per_key"), "{v}");
    drop(first);
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.status(Method::GET, d.at("/api/v1/events")).await == 200 {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "the slot frees when the client goes away");

    // The per-key queued count follows the jobs as they start.
    let mut drained = false;
    for _ in 0..100 {
        let (_, keys) = admin.json(Method::GET, d.at("/api/v1/keys"), None).await;
        let capped = keys.as_array().expect("keys").iter().find(|k| k["id"] == c_id.as_str()).cloned();
        if capped.is_some_and(|k| k["queued"] == 0) {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "queued count of the capped key went back to 0");

    // GPU-seconds per day: charge the key's day in the database, then submit.
    let (g_id, g_key) = create_key(&d, &admin, json!({"name": "gpu", "gpu_seconds_per_day": 10})).await;
    d.terminate();
    {
        let store = reelbox::store::Store::open(dir.path(), true, 8).expect("open");
        let today = reelbox::store::quota::day_of(reelbox::store::records::now_ms());
        store.add_gpu_ms(&g_id, today, 10_500).await.expect("charge");
        store.close();
    }
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    let g = As::key(Some(&g_key));
    let resp = g.req(Method::POST, d.at("/api/v1/jobs")).json(&json!({"kind": "testcard"})).send().await.expect("req");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.expect("json");
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("gpu_seconds_per_day") && msg.contains("10 of 10") && msg.contains("resets at"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_a_burst_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[limits]\nrequests_per_second = 0.5\nrequest_burst = 3\n");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    let (_, key) = create_key(&d, &As::key(None), json!({"name": "root", "scope": "admin"})).await;
    let k = As::key(Some(&key));
    for _ in 0..3 {
        assert_eq!(k.status(Method::GET, d.at("/api/v1/jobs")).await, 200);
    }
    let resp = k.req(Method::GET, d.at("/api/v1/jobs")).send().await.expect("req");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limited");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("requests_per_second"), "{v}");
    assert_eq!(k.status(Method::GET, d.at("/healthz")).await, 200, "probes are never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_bind_without_a_key_is_refused_and_serves_once_one_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        DaemonProc::command(dir.path(), "0.0.0.0:0", &[]).stderr(Stdio::piped()).output().expect("run reelbox serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.contains("refusing")).unwrap_or_else(|| panic!("no refusal in {stderr:?}"));
    assert!(line.contains("without an API key") && line.contains("reelbox keys create"), "{line}");

    // The first key is made offline (daemon stopped), then the LAN bind serves.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["--json", "keys", "create", "--offline", "--name", "root", "--scope", "admin"])
        .env("REELBOX_DATA_DIR", dir.path())
        .env_remove("REELBOX_CONFIG")
        .env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .output()
        .expect("keys create --offline");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).expect("json");
    let key = created["key"].as_str().expect("key in --json output").to_string();

    let mut d = DaemonProc::start_on(dir.path(), "0.0.0.0:0", &[]);
    d.url = d.url.replace("0.0.0.0", "127.0.0.1");
    assert_eq!(As::key(None).status(Method::GET, d.at("/api/v1/jobs")).await, 401, "keys exist: no open mode");
    assert_eq!(As::key(Some(&key)).status(Method::GET, d.at("/api/v1/jobs")).await, 200);

    // The CLI sends the key from REELBOX_KEY.
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
        .args(["--json", "keys", "list", "--url", &d.url])
        .env("REELBOX_KEY", &key)
        .output()
        .expect("keys list");
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"root\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_header_counts_only_from_the_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[auth]\nmode = \"trusted-proxy\"\ntrusted_proxies = [\"127.0.0.2\"]\nadmin_users = [\"root@example.com\"]\nproxy_user_max_queued = 1\n",
    );
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    let direct = reqwest::Client::new();
    let resp = direct.get(d.at("/api/v1/jobs")).header("X-Webui-Email", "root@example.com").send().await.expect("req");
    assert_eq!(resp.status(), 401, "the header from a non-proxy address is a spoof");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["code"], "untrusted_proxy");

    let proxy = reqwest::Client::builder().local_address("127.0.0.2".parse().ok()).build().expect("client");
    let as_user = |user: &'static str| proxy.post(d.at("/api/v1/jobs")).header("X-Webui-Email", user);
    let pause = proxy.post(d.at("/api/v1/queue/pause")).header("X-Webui-Email", "root@example.com").send().await;
    assert_eq!(pause.expect("req").status(), 200, "admin_users are admins");
    let resp = as_user("alice@example.com").json(&json!({"kind": "testcard"})).send().await.expect("req");
    assert_eq!(resp.status(), 202);
    let job: Value = resp.json().await.expect("json");
    let again = as_user("alice@example.com").json(&json!({"kind": "testcard"})).send().await.expect("req");
    assert_eq!(again.status(), 429, "auth.proxy_user_max_queued applies per user");
    assert_eq!(job["owner"], "user:alice@example.com");
    let id = job["id"].as_str().expect("id");
    let other = proxy.get(d.at(&format!("/api/v1/jobs/{id}"))).header("X-Webui-Email", "eve@example.com").send().await;
    assert_eq!(other.expect("req").status(), 404);
    let root = proxy.get(d.at(&format!("/api/v1/jobs/{id}"))).header("X-Webui-Email", "root@example.com").send().await;
    assert_eq!(root.expect("req").status(), 200, "admin_users see everyone's");
    let bare = proxy.get(d.at("/api/v1/jobs")).send().await.expect("req");
    assert_eq!(bare.status(), 401, "the proxy itself is nobody without the header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("self-signed cert");
    let cert_pem = cert.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).expect("write key");
    let config = write_config(
        dir.path(),
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            dir.path().join("cert.pem").display().to_string(),
            dir.path().join("key.pem").display().to_string()
        ),
    );
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    assert!(d.url.starts_with("https://"), "{}", d.url);
    let port = d.url.rsplit(':').next().expect("port");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .resolve("localhost", format!("127.0.0.1:{port}").parse().expect("addr"))
        .build()
        .expect("client");
    let resp = client.get(format!("https://localhost:{port}/healthz")).send().await.expect("https request");
    assert_eq!(resp.status(), 200);
    // URLs the box hands out are the https ones it serves (an OpenAI client told its base
    // URL), over HTTP/2 too, which names the host in `:authority`, not in a Host header.
    let resp = client.post(format!("https://localhost:{port}/images/generations")).json(&serde_json::json!({}));
    let resp = resp.send().await.expect("https request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "the client and the daemon speak HTTP/2");
    let told: serde_json::Value = resp.json().await.expect("json");
    let message = told["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("base_url https://localhost:{port}/v1")), "{told}");
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_reelbox"))
            .args(["--json", "--url", &format!("https://localhost:{port}")])
            .args(extra)
            .args(["jobs", "list"])
            .env_remove("REELBOX_CACERT")
            .output()
            .expect("run the CLI")
    };
    let cacert = dir.path().join("cert.pem").display().to_string();
    let out = cli(&["--cacert", &cacert]);
    assert!(out.status.success(), "CLI over HTTPS with --cacert: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!cli(&[]).status.success(), "an unknown certificate is refused");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send().await;
    assert!(plain.is_err() || !plain.expect("resp").status().is_success(), "plain HTTP is not served");
}

/// A daemon with an admin key and a client key.
async fn admin_and_client() -> (tempfile::TempDir, DaemonProc, As, As) {
    admin_and_client_with("").await
}

/// [`admin_and_client`] on a daemon with `config` (TOML) as its config file.
async fn admin_and_client_with(config: &str) -> (tempfile::TempDir, DaemonProc, As, As) {
    let data = tempfile::tempdir().expect("tempdir");
    let config = write_config(data.path(), config);
    let d = DaemonProc::start(data.path(), &[("REELBOX_CONFIG", &config)]);
    let anon = As::key(None);
    let (_, admin_key) = create_key(&d, &anon, json!({"name": "root", "scope": "admin"})).await;
    let admin = As::key(Some(&admin_key));
    let (_, client_key) = create_key(&d, &admin, json!({"name": "laptop", "scope": "client"})).await;
    let client = As::key(Some(&client_key));
    (data, d, admin, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_the_box_on_any_route() {
    let (_data, d, admin, client) = admin_and_client().await;
    let pull = json!({"kind": "model_pull", "params": {"name": "demo-upscaler"}});
    let (status, body) = client.json(Method::POST, d.at("/api/v1/jobs"), Some(pull.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "admin_only", "{body}");
    let (status, _) =
        client.json(Method::POST, d.at("/api/v1/models/pull"), Some(json!({"name": "demo-upscaler"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = admin.json(Method::POST, d.at("/api/v1/jobs"), Some(pull)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_keys_cannot_jump_the_queue_hold_a_worker_for_days_or_fill_the_queue() {
    // The request rate limit (burst 100) is another test's subject: here it would refuse the
    // 100th submission before the queue limit is reached whenever the box is fast enough.
    let (_data, d, admin, client) = admin_and_client_with("[limits]\nrequest_burst = 1000\n").await;
    assert!(admin.status(Method::POST, d.at("/api/v1/queue/pause")).await.is_success());
    let job = |params: Value, priority: i32| Some(json!({"kind": "testcard", "params": params, "priority": priority}));
    let (status, body) = client.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 1}), 1000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "priority", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("limits.max_client_priority"), "{body}");
    // Nor by raising it once the job is accepted (what `+` in `reelbox top` sends).
    let (status, body) = client.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 1}), 0)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let queued = d.at(&format!("/api/v1/jobs/{}", body["id"].as_str().expect("id")));
    let (status, body) = client.json(Method::PATCH, queued.clone(), Some(json!({"priority": 1000}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "priority", "{body}");
    let (status, body) = client.json(Method::PATCH, queued.clone(), Some(json!({"priority": 100}))).await;
    assert_eq!((status, &body["priority"]), (StatusCode::OK, &json!(100)), "{body}");
    let (status, body) = admin.json(Method::PATCH, queued.clone(), Some(json!({"priority": 1000}))).await;
    assert_eq!((status, &body["priority"]), (StatusCode::OK, &json!(1000)), "{body}");
    let (status, body) = client.json(Method::POST, format!("{queued}/cancel"), None).await;
    assert!(status.is_success(), "the client cancels its own queued job: {status} {body}");
    // 10000 steps of 60 s: a week on one worker.
    let (status, body) =
        client.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 10000, "step_ms": 60000}), 0)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("limits.max_job_seconds"), "{body}");
    // Admins are trusted with both.
    let (status, _) =
        admin.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 10000, "step_ms": 60000}), 1000)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A client without its own quota gets limits.client_max_queued (100) jobs, not the whole queue.
    for i in 0..100 {
        let (status, body) = client.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 1}), 50)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "job {i}: {body}");
    }
    let (status, body) = client.json(Method::POST, d.at("/api/v1/jobs"), job(json!({"steps": 1}), 0)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_onnx_runtime_model_jobs_are_refused_at_submission_with_the_fix() {
    let data = tempfile::tempdir().expect("tempdir");
    // A model is installed (so only the runtime is missing); an empty ORT_DYLIB_PATH is
    // ignored and the data dir has no runtime.
    let models = common::models_with_demo_shapes(data.path());
    let d = DaemonProc::start(
        &data.path().join("data"),
        &[
            ("ORT_DYLIB_PATH", ""),
            ("REELBOX_ONNXRUNTIME", "/nonexistent/libonnxruntime.so"),
            ("REELBOX_MODELS_DIR", models.to_str().expect("utf8")),
        ],
    );
    let anon = As::key(None);
    let (status, body) = anon
        .json(Method::POST, d.at("/api/v1/images"), Some(json!({"prompt": "a red circle", "model": "demo-shapes"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "runtime_missing", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("reelbox setup"), "{body}");
    // The OpenAI route answers the same in OpenAI's error shape (it used to accept the job and 500).
    let (status, body) =
        anon.json(Method::POST, d.at("/v1/images/generations"), Some(json!({"prompt": "a red circle"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("reelbox setup"), "{body}");
    // Nothing was queued, and jobs that need no model still run.
    let (_, jobs) = anon.json(Method::GET, d.at("/api/v1/jobs"), None).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
    let (status, _) = submit_as(&d, &anon, json!({"steps": 1})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_telemetry_streams_count_against_the_stream_caps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[limits]\nmax_streams_per_key = 2\n");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", &config)]);
    let anon = As::key(None);
    let telemetry = || anon.req(Method::GET, d.at("/api/v1/telemetry")).header("accept", "text/event-stream").send();
    let first = telemetry().await.expect("stream");
    assert_eq!(first.status(), StatusCode::OK);
    let ws_url = d.url.replacen("http://", "ws://", 1) + "/ws?clientId=cap";
    let (socket, _) = tokio_tungstenite::connect_async(&ws_url).await.expect("the second stream opens");
    // Two streams are open (one SSE, one socket): a third of either kind is refused.
    let third = telemetry().await.expect("request");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key("retry-after"));
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS)
        }
        other => panic!("a third stream opened: {:?}", other.map(|(_, r)| r.status())),
    }
    // Closing the socket frees its slot.
    drop(socket);
    let mut freed = false;
    for _ in 0..50 {
        if telemetry().await.expect("request").status() == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the closed socket's slot came back");
    drop(first);
}

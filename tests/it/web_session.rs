//! The web studio's HTTP side against the real daemon: the embedded page (content types,
//! CSP, ETag revalidation) and the browser session cookie's rules (HttpOnly, SameSite,
//! same-origin only, logout and key revocation end it, isolation as with keys).

use crate::common;

use common::daemon::{DaemonProc, testcard};
use reqwest::header::{CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LISTED_ORIGIN: &str = "https://studio.example.com";

async fn call(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = r.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_types_a_strict_csp_and_an_etag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    // Keys exist: the page must still load (it shows the login form), the API must not.
    let (_, key) = call(c.post(d.at("/api/v1/keys")).json(&json!({"name": "root", "scope": "admin"}))).await;
    assert!(key["key"].is_string(), "{key}");
    for (path, kind) in [
        ("/", "text/html"),
        ("/web/app.js", "text/javascript"),
        ("/web/style.css", "text/css"),
        ("/web/icon.svg", "image/svg+xml"),
    ] {
        let resp = c.get(d.at(path)).send().await.expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert!(h[CONTENT_TYPE].to_str().unwrap_or("").starts_with(kind), "{path}: {:?}", h[CONTENT_TYPE]);
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let etag = h["etag"].clone();
        let again = c.get(d.at(path)).header("if-none-match", etag).send().await.expect("get");
        assert_eq!(again.status(), 304, "{path}: an unchanged file is not sent again");
    }
    assert_eq!(c.get(d.at("/web/nothing.js")).send().await.expect("get").status(), 404);
    // A browser opening the studio by a name the box does not answer to (a router's
    // `box.fritz.box`) reads a page naming the setting, not JSON; the name is escaped.
    let port = d.url.rsplit(':').next().expect("port").to_string();
    for (name, shown) in [("box.fritz.box", "box.fritz.box"), ("<b>x.example", "&lt;b&gt;x.example")] {
        let resp = c
            .get(d.at("/"))
            .header(reqwest::header::HOST, format!("{name}:{port}"))
            .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 403);
        assert!(resp.headers()[CONTENT_TYPE].to_str().unwrap_or("").starts_with("text/html"), "{name}");
        let page = resp.text().await.expect("text");
        assert!(page.contains(shown) && page.contains("server.allowed_hosts") && !page.contains("<b>x"), "{page}");
    }
    let (status, body) =
        call(c.get(d.at("/api/v1/jobs")).header(reqwest::header::HOST, format!("box.fritz.box:{port}"))).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (403, Some("forbidden_host")),
        "API clients get JSON"
    );
    assert_eq!(c.get(d.at("/api/v1/jobs")).send().await.expect("get").status(), 401, "the API still needs a key");
}

/// The cookie value (`reelbox_session=…`) of a login answer, with the whole header.
fn session_cookie(resp: &reqwest::Response) -> (String, String) {
    let header = resp.headers()[SET_COOKIE].to_str().expect("ascii").to_string();
    let pair = header.split(';').next().expect("pair").trim().to_string();
    (pair, header)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_logs_a_browser_in_with_a_same_origin_only_cookie_until_logout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_ALLOWED_ORIGINS", LISTED_ORIGIN)]);
    let c = reqwest::Client::new();
    let own = d.url.clone();
    let (_, admin) = call(c.post(d.at("/api/v1/keys")).json(&json!({"name": "root", "scope": "admin"}))).await;
    let admin = admin["key"].as_str().expect("admin key").to_string();
    let mut keys = Vec::new();
    for name in ["alice", "bob"] {
        let (status, k) = call(c.post(d.at("/api/v1/keys")).bearer_auth(&admin).json(&json!({"name": name}))).await;
        assert_eq!(status, 201, "{k}");
        keys.push((k["id"].as_str().expect("id").to_string(), k["key"].as_str().expect("key").to_string()));
    }
    let (alice_id, alice_key) = keys[0].clone();

    // A wrong key is refused, naming the field; nothing is set.
    let resp = c.post(d.at("/api/v1/session")).header(ORIGIN, &own).json(&json!({"key": "rb_nope"})).send().await;
    let resp = resp.expect("login");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(SET_COOKIE).is_none());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["field"], "key", "{body}");

    let resp = c.post(d.at("/api/v1/session")).header(ORIGIN, &own).json(&json!({"key": alice_key})).send().await;
    let resp = resp.expect("login");
    assert_eq!(resp.status(), 200);
    let (cookie, header) = session_cookie(&resp);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(attr), "{attr} missing from {header}");
    }
    assert!(!header.contains("Secure"), "plain HTTP cannot keep a Secure cookie: {header}");
    assert!(!header.contains(&alice_key), "the cookie is a session token, not the key");
    let who: Value = resp.json().await.expect("json");
    assert_eq!(who["owner"], alice_id.as_str(), "{who}");
    assert_eq!(who["admin"], false);

    // Reads from the page work; the session is Alice's scope.
    let bob_job = call(c.post(d.at("/api/v1/jobs")).bearer_auth(&keys[1].1).json(&testcard(json!({})))).await;
    assert_eq!(bob_job.0, 202, "{}", bob_job.1);
    let (status, who) = call(c.get(d.at("/api/v1/session")).header(COOKIE, &cookie)).await;
    assert_eq!((status, who["owner"].as_str()), (StatusCode::OK, Some(alice_id.as_str())));
    let with_cookie = |m: Method, path: &str| c.request(m, d.at(path)).header(COOKIE, &cookie);
    let (status, page) = call(with_cookie(Method::GET, "/api/v1/jobs").header("sec-fetch-site", "same-origin")).await;
    assert_eq!(status, 200);
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(0), "Alice's session never sees Bob's job: {page}");
    let (status, _) = call(with_cookie(Method::GET, "/api/v1/jobs").header("sec-fetch-site", "cross-site")).await;
    assert_eq!(status, 403, "a read another site started is refused");

    // Changes need the daemon's own Origin: none, a foreign one, or a merely listed one are refused.
    let submit = || with_cookie(Method::POST, "/api/v1/jobs").json(&testcard(json!({})));
    let (status, body) = call(submit()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("cross_origin_session")));
    let (status, _) = call(submit().header(ORIGIN, "http://evil.example")).await;
    assert_eq!(status, 403);
    let (status, body) = call(submit().header(ORIGIN, LISTED_ORIGIN)).await;
    assert_eq!(status, 403, "allowed_origins admits key-carrying clients, not the cookie: {body}");
    let (status, job) = call(submit().header(ORIGIN, &own)).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["owner"], alice_id.as_str());

    // Logout ends the session on the daemon, not only in the browser.
    let resp = with_cookie(Method::DELETE, "/api/v1/session").header(ORIGIN, &own).send().await.expect("logout");
    assert_eq!(resp.status(), 204);
    assert!(session_cookie(&resp).1.contains("Max-Age=0"), "the browser drops the cookie");
    let (status, body) = call(with_cookie(Method::GET, "/api/v1/jobs")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("session_expired")));

    // Revoking the key ends its sessions too.
    let resp = c.post(d.at("/api/v1/session")).json(&json!({"key": alice_key})).send().await.expect("login");
    let (cookie, _) = session_cookie(&resp);
    let resp = c.delete(d.at(&format!("/api/v1/keys/{alice_id}"))).bearer_auth(&admin).send().await.expect("revoke");
    assert!(resp.status().is_success(), "{}", resp.status());
    let (status, _) = call(c.get(d.at("/api/v1/jobs")).header(COOKIE, &cookie)).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_the_session_cookie_is_secure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("self-signed cert");
    let cert_pem = cert.cert.pem();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert_path.display(), key_path.display()))
        .expect("write config");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    let port = d.url.rsplit(':').next().expect("port");
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .resolve("localhost", format!("127.0.0.1:{port}").parse().expect("addr"))
        .build()
        .expect("client");
    let base = format!("https://localhost:{port}");
    let (_, key) = call(c.post(format!("{base}/api/v1/keys")).json(&json!({"name": "root", "scope": "admin"}))).await;
    let key = key["key"].as_str().expect("admin key");
    let resp = c.post(format!("{base}/api/v1/session")).json(&json!({"key": key})).send().await.expect("login");
    assert_eq!(resp.status(), 200);
    let (_, header) = session_cookie(&resp);
    assert!(header.contains("; Secure") && header.contains("HttpOnly"), "{header}");
}

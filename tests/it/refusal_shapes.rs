//! The refusals given before a route's handler — the Host/Origin guard's 403, authentication's
//! 401, the request rate's and the stream cap's 429 — come in the error shape of the route's
//! family (ComfyUI's, OpenAI's, A1111's, the native one), as `/openapi.json` lists them for
//! each operation; against the real daemon.

use crate::common;

use common::api::{call, create_key};
use common::daemon::DaemonProc;
use reqwest::header::{HeaderName, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The schema `$ref` of `op`'s answer `status`, by its component's name.
fn schema_of<'a>(op: &'a Value, status: &str) -> Option<&'a str> {
    op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

/// Checks that `body` has every field schema `schema` (a component of `doc`, or inline)
/// requires, in every object it nests: what a client generated from the document reads.
fn holds_to(doc: &Value, schema: &Value, body: &Value, at: &str) {
    let schema = match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &doc["components"]["schemas"][name],
        None => schema,
    };
    for field in schema["required"].as_array().into_iter().flatten() {
        let field = field.as_str().expect("a field name");
        assert!(body.get(field).is_some(), "{at}: no `{field}` in {body}");
    }
    for (field, inner) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(value) = body.get(field).filter(|v| v.is_object()) {
            holds_to(doc, inner, value, &format!("{at}.{field}"));
        }
    }
}

/// Checks that `doc` lists `method` `path`'s answer `status` (its operation's path: ComfyUI's
/// bare one) as schema `shape`, and that `body` holds to it; the code the body names (A1111's
/// shape names the exception's class, `HTTPException`).
fn as_listed<'a>(doc: &Value, method: &str, path: &str, status: StatusCode, shape: &str, body: &'a Value) -> &'a Value {
    let at = format!("{method} {path} {status}");
    assert_eq!(schema_of(&doc["paths"][path][method], status.as_str()), Some(shape), "{at}");
    holds_to(doc, &json!({"$ref": format!("#/components/schemas/{shape}")}), body, &at);
    // ComfyUI's shape names the code `type`.
    match shape {
        COMFY => &body["error"]["type"],
        A1111 => &body["error"],
        _ => &body["error"]["code"],
    }
}

const COMFY: &str = "ComfyErrorBody";
const OPENAI: &str = "OpenAiErrorBody";
const NATIVE: &str = "ErrorBody";
const A1111: &str = "A1111ErrorBody";

/// Each family's routes refuse in their own shape before the handler too: ComfyUI's 401 (no
/// key, a revoked key) and 429 (past the rate, past the stream cap) came in the native shape,
/// which ComfyUI clients do not read; `WWW-Authenticate` and `Retry-After` stay. The Host/Origin
/// guard's 403 is in the route's family's shape, and `/openapi.json` lists it on every
/// operation (it listed none) and 401/429 on every ComfyUI one as `ComfyErrorBody` (it said
/// `ErrorBody`); each real refusal carries the fields its listed schema requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_handler_come_in_each_familys_shape_as_the_document_lists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.toml");
    let limits = "[limits]\nrequests_per_second = 0.2\nrequest_burst = 4\nmax_streams_per_key = 1\n";
    std::fs::write(&config, limits).expect("config");
    let d = DaemonProc::start(dir.path(), &[("REELBOX_CONFIG", config.to_str().expect("utf8"))]);
    let (_, admin) = create_key(&d, None, json!({"name": "root", "scope": "admin"})).await;
    let (status, doc) = call(Some(&admin), Method::GET, d.at("/openapi.json"), None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");

    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let family = match op["tags"][0].as_str() {
                Some("openai") => OPENAI,
                Some("comfyui") => COMFY,
                Some("a1111") => A1111,
                _ => NATIVE,
            };
            assert_eq!(schema_of(op, "403"), Some(family), "{method} {path}");
            if family == COMFY || family == A1111 {
                assert_eq!(
                    (schema_of(op, "401"), schema_of(op, "429")),
                    (Some(family), Some(family)),
                    "{method} {path}"
                );
            }
        }
    }

    // 401: no key, a key the box does not know; on each family's routes.
    let http = reqwest::Client::new();
    for (asked, listed, method, key, shape, code) in [
        ("/prompt", "/prompt", Method::POST, None, COMFY, "missing_key"),
        ("/api/queue", "/queue", Method::GET, Some("not-a-key"), COMFY, "invalid_key"),
        ("/v1/models", "/v1/models", Method::GET, None, OPENAI, "missing_key"),
        ("/sdapi/v1/sd-models", "/sdapi/v1/sd-models", Method::GET, None, A1111, "HTTPException"),
        ("/api/v1/jobs", "/api/v1/jobs", Method::GET, None, NATIVE, "missing_key"),
    ] {
        let mut req = http.request(method.clone(), d.at(asked)).json(&json!({}));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.expect("request");
        let (status, challenge) = (resp.status(), resp.headers().contains_key(WWW_AUTHENTICATE));
        let body: Value = resp.json().await.expect("json");
        let said = as_listed(&doc, &method.as_str().to_lowercase(), listed, status, shape, &body);
        assert_eq!((status, said.as_str()), (StatusCode::UNAUTHORIZED, Some(code)), "{asked}: {body}");
        assert!(challenge, "{asked}: WWW-Authenticate");
    }

    // 403: a foreign page's Origin, an unknown Host name; the guard answers before the key.
    let port = d.url.rsplit(':').next().expect("port").to_string();
    let origin = (ORIGIN, "http://evil.example".to_string());
    let host = (HeaderName::from_static("host"), format!("evil.example:{port}"));
    for (asked, listed, method, (header, value), shape, code) in [
        ("/api/prompt", "/prompt", Method::POST, origin.clone(), COMFY, "forbidden_origin"),
        ("/v1/models", "/v1/models", Method::GET, origin.clone(), OPENAI, "forbidden_origin"),
        ("/sdapi/v1/options", "/sdapi/v1/options", Method::GET, origin.clone(), A1111, "HTTPException"),
        ("/api/v1/system", "/api/v1/system", Method::GET, origin, NATIVE, "forbidden_origin"),
        ("/history", "/history", Method::GET, host.clone(), COMFY, "forbidden_host"),
        ("/healthz", "/healthz", Method::GET, host, NATIVE, "forbidden_host"),
    ] {
        let req = http.request(method.clone(), d.at(asked)).bearer_auth(&admin).header(header, value);
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        let said = as_listed(&doc, &method.as_str().to_lowercase(), listed, status, shape, &body);
        assert_eq!((status, said.as_str()), (StatusCode::FORBIDDEN, Some(code)), "{asked}: {body}");
    }

    // 429: a second socket past `max_streams_per_key`, then requests past the rate.
    let ws = d.url.replacen("http://", "ws://", 1) + "/ws?clientId=cap";
    let socket_of = || {
        let mut req = ws.clone().into_client_request().expect("request");
        req.headers_mut().insert("authorization", format!("Bearer {admin}").parse().expect("header"));
        tokio_tungstenite::connect_async(req)
    };
    let (open, _) = socket_of().await.expect("the first socket opens");
    match socket_of().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert!(resp.headers().contains_key(RETRY_AFTER), "Retry-After");
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("json");
            let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
            assert_eq!(as_listed(&doc, "get", "/ws", status, COMFY, &body), "too_many_streams", "{body}");
        }
        other => panic!("a second socket opened: {:?}", other.map(|(_, r)| r.status())),
    }
    drop(open);
    let mut limited = None;
    for _ in 0..20 {
        let resp = http.get(d.at("/api/queue")).bearer_auth(&admin).send().await.expect("request");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("the rate refuses at last");
    assert!(resp.headers().contains_key(RETRY_AFTER), "Retry-After");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(as_listed(&doc, "get", "/queue", StatusCode::TOO_MANY_REQUESTS, COMFY, &body), "rate_limited", "{body}");
}

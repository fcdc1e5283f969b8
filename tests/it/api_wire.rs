//! What the API says on the wire, against the real daemon over real HTTP: the served
//! OpenAPI document declares each parameter where it is sent, and refusals are JSON in the
//! route family's own shape, naming the field and what it takes in a person's words.

use crate::common;

use std::collections::BTreeSet;

use common::api::misfit;
use common::daemon::{DaemonProc, get_json, post_json};
use serde_json::{Value, json};

/// Query parameters a route cannot do without: each one is listed here on purpose.
const REQUIRED_QUERY: [(&str, &str); 1] = [("/view", "filename")];

/// A daemon with a small body limit (4 kB), its log in `log`.
fn daemon(data: &std::path::Path, log: &std::path::Path) -> DaemonProc {
    let config = data.join("config.toml");
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::write(&config, "[limits]\nmax_body_bytes = 4096\nmax_upload_bytes = 8192\n").expect("config");
    DaemonProc::start_logged(data, &[("REELBOX_CONFIG", config.to_str().expect("utf-8"))], log)
}

#[tokio::test]
async fn the_openapi_document_declares_each_parameter_where_it_is_sent() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = daemon(&home.path().join("data"), &home.path().join("log"));
    let doc = get_json(&reqwest::Client::new(), &d, "/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let template: BTreeSet<&str> =
            path.split('{').skip(1).filter_map(|p| p.split_once('}')).map(|(name, _)| name).collect();
        for (method, op) in item.as_object().expect("path item") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: BTreeSet<&str> =
                params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect();
            // Every path parameter is in the template and every `{name}` is declared.
            assert_eq!(in_path, template, "{method} {path}: path parameters {in_path:?}");
            for p in params.iter().filter(|p| p["in"] == "query") {
                let name = p["name"].as_str().unwrap_or_default();
                if p["required"] == true {
                    assert!(REQUIRED_QUERY.contains(&(path.as_str(), name)), "{method} {path}: ?{name} required: {p}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} query parameters found");
    // Each operation has its own id: generated clients name their methods by it (three
    // `show`s and five `create`s and `list`s made clients that do not build).
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(ids.insert(id), "{method} {path}: operationId {id:?} is another operation's too");
        }
    }
    let jobs = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().expect("GET /api/v1/jobs parameters");
    let limit = jobs.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!(
        (&limit["in"], &limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!("query"), &json!(1), &json!(500)),
        "{limit}"
    );
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text:?}")))
}

#[tokio::test]
async fn refusals_name_the_field_and_what_it_takes_in_each_routes_shape() {
    let home = tempfile::tempdir().expect("tempdir");
    let log = home.path().join("log");
    let d = daemon(&home.path().join("data"), &log);
    let c = reqwest::Client::new();
    let message = |b: &Value| b["error"]["message"].as_str().unwrap_or_default().to_string();

    // Native: a mistyped value says what the field takes, from the documented range.
    let (s, b) = post_json(&c, &d, "/api/v1/images", json!({"prompt": "x", "width": -64})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("width")), "{b}");
    assert_eq!(message(&b), "width: must be a whole number from 8 to 2048, a multiple of 8; got -64", "{b}");
    let (s, b) = post_json(&c, &d, "/api/v1/speech", json!({"text": "hi", "priority": "high"})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("priority")), "{b}");
    assert!(message(&b).starts_with("priority: must be a whole number from -1000 to 1000"), "{b}");
    // `params: null` is no parameters for every kind (a render's profile step refused it).
    let (s, b) = post_json(&c, &d, "/api/v1/jobs", json!({"kind": "render", "params": null})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("script")), "{b}");
    // A number past what a 32-bit float holds is refused, not read as left out.
    let (s, b) = post_json(&c, &d, "/api/v1/speech", json!({"text": "hi", "noise_scale": -1e39})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("noise_scale")), "{b}");
    // Nested values too, in the words of their own schema: a list's length and items, a choice.
    let (s, b) = post_json(&c, &d, "/api/v1/lipsync", json!({"face_box": [1, 2]})).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("face_box")), "{b}");
    assert_eq!(message(&b), "face_box: must be a list of 4 items, each a whole number, 0 or more; got 2", "{b}");
    let (s, b) = post_json(&c, &d, "/v1/audio/speech", json!({"input": "hi", "voice": 5})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("voice")), "{b}");
    assert_eq!(b["error"]["message"], "voice: must be text or an object with id; got 5", "{b}");
    let (s, b) = post_json(&c, &d, "/api/v1/jobs", json!([])).await;
    assert_eq!(s, 400, "{b}");
    assert!(message(&b).contains("must be a JSON object") && message(&b).contains("kind"), "{b}");
    // A list is no object even where every field is optional (serde read `[true]` as the
    // first field: a garbage collection run, not a dry one).
    let (s, b) = post_json(&c, &d, "/api/v1/gc", json!([true])).await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("invalid_body")), "{b}");
    assert!(message(&b).contains("must be a JSON object of this request's fields (dry_run); got a list"), "{b}");
    let (s, b) = send(c.get(d.at("/api/v1/jobs?limit=-1"))).await;
    assert_eq!((s, b["error"]["field"].as_str()), (400, Some("limit")), "{b}");
    assert_eq!(message(&b), "limit: must be a whole number from 1 to 500; got \"-1\"", "{b}");
    let big = json!({"kind": "testcard", "params": {"note": "x".repeat(5000)}});
    let (s, b) = post_json(&c, &d, "/api/v1/jobs", big.clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("body_too_large")), "{b}");
    let size = big.to_string().len();
    assert!(message(&b).starts_with(&format!("the body is {size} bytes")), "{b}");
    assert!(message(&b).contains("limits.max_body_bytes is 4096"), "{b}");
    // A route whose form carries files takes more, and its refusal quotes what it takes.
    let big = json!({"name": "x".repeat(21_000)});
    let (s, b) = post_json(&c, &d, "/api/v1/profiles", big.clone()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("body_too_large")), "{b}");
    let size = big.to_string().len();
    assert!(message(&b).starts_with(&format!("the body is {size} bytes")), "{b}");
    assert!(
        message(&b).contains(
            "this route takes 20480 bytes (20.5 kB): limits.max_body_bytes 4096 (4.1 kB) plus limits.max_upload_bytes \
             8192 (8.2 kB) for each of its 2 files"
        ),
        "{b}"
    );

    // A file sent as the raw body instead of a form is told to send the form field.
    let raw = |path: &str| c.post(d.at(path)).header("content-type", "image/png").body(&b"\x89PNG\r\n\x1a\n"[..]);
    let (s, b) = send(raw("/api/v1/artifacts")).await;
    assert_eq!(
        (s, b["error"]["field"].as_str(), b["error"]["code"].as_str()),
        (400, Some("file"), Some("not_multipart")),
        "{b}"
    );
    assert!(message(&b).contains("multipart/form-data field `file`"), "{b}");

    // ComfyUI: the same refusals in ComfyUI's error shape, never plain text.
    let comfy =
        |b: &Value| (b["error"]["type"].as_str().map(str::to_owned), b["error"]["details"].as_str().map(str::to_owned));
    let (s, b) = send(raw("/upload/image")).await;
    assert_eq!((s, comfy(&b)), (400, (Some("not_multipart".into()), Some("image".into()))), "{b}");
    assert!(b["node_errors"].is_object(), "{b}");
    let (s, b) = send(c.post(d.at("/prompt")).json(&json!({"prompt": {"1": {"x": "y".repeat(5000)}}}))).await;
    assert_eq!((s, comfy(&b).0.as_deref()), (413, Some("body_too_large")), "{b}");
    let (s, b) = send(c.get(d.at("/history?max_items=abc"))).await;
    assert_eq!((s, comfy(&b)), (400, (Some("invalid_query".into()), Some("max_items".into()))), "{b}");
    assert!(message(&b).contains("must be a whole number"), "{b}");
    let (s, b) = send(c.get(d.at("/api/view?type=output"))).await;
    assert_eq!((s, comfy(&b).1.as_deref()), (400, Some("filename")), "{b}");
    let (s, b) = send(c.post(d.at("/queue")).body("[1]")).await;
    assert_eq!((s, comfy(&b).0.as_deref()), (400, Some("invalid_body")), "{b}");
    let (s, b) = send(c.post(d.at("/queue")).body("[]")).await;
    assert_eq!((s, comfy(&b).0.as_deref()), (400, Some("invalid_body")), "{b}");
    // No body is the defaults; a body of only a line break is no JSON.
    let (s, b) = send(c.post(d.at("/queue")).body("\r\n")).await;
    assert_eq!((s, comfy(&b).0.as_deref()), (400, Some("malformed_json")), "{b}");

    // A text file where a picture or sound is expected is a 400, not an error in the log.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"box\n".to_vec()).file_name("hostname"));
    let resp = c.post(d.at("/api/v1/artifacts")).multipart(form).send().await.expect("upload");
    assert_eq!(resp.status(), 400);
    assert_eq!(c.get(d.at("/healthz")).send().await.expect("healthz").status(), 200);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains("probe reach EOF"), "{logged}");
}

/// The refusals the layers in front of every handler give (no key, a body of another type or
/// past the limit, an id that is not one, a key sent again with another request, a ComfyUI
/// body that is not JSON) are statuses the document lists for their route, in its schema; a
/// probe answers without a key, as its `security` says. Generated clients and fuzzers take
/// an unlisted status as a broken server (the document listed none of these).
#[tokio::test]
async fn refusals_are_answers_the_document_lists_for_their_route() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = daemon(&home.path().join("data"), &home.path().join("log"));
    let (_, key) = common::api::create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let c = common::api::keyed_client(&key);
    let doc = get_json(&c, &d, "/openapi.json").await;
    let card = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}});
    let done = common::daemon::submit(&c, &d, card).await["id"].as_str().expect("id").to_string();
    common::daemon::wait_job(&c, &d, &done, std::time::Duration::from_secs(20), common::daemon::is_final).await;
    let keyed = |r: reqwest::RequestBuilder| r.bearer_auth(&key);
    let plain = reqwest::Client::new();
    let unknown = ulid::Ulid::new().to_string();
    let cases: Vec<(&str, &str, reqwest::RequestBuilder, u16)> = vec![
        ("get", "/api/v1/jobs", plain.get(d.at("/api/v1/jobs")), 401),
        ("get", "/history", plain.get(d.at("/history")), 401),
        (
            "post",
            "/v1/images/generations",
            plain.post(d.at("/v1/images/generations")).json(&json!({"prompt": "x"})),
            401,
        ),
        ("post", "/api/v1/keys", keyed(plain.post(d.at("/api/v1/keys"))).body("name=kid"), 415),
        ("post", "/api/v1/jobs", keyed(plain.post(d.at("/api/v1/jobs"))).json(&json!({"kind": "x".repeat(5000)})), 413),
        ("get", "/api/v1/artifacts/{id}/meta", keyed(plain.get(d.at("/api/v1/artifacts/nope/meta"))), 400),
        (
            "get",
            "/api/v1/artifacts/{id}/meta",
            keyed(plain.get(d.at(&format!("/api/v1/artifacts/{unknown}/meta")))),
            404,
        ),
        (
            "patch",
            "/api/v1/jobs/{id}",
            keyed(plain.patch(d.at(&format!("/api/v1/jobs/{done}")))).json(&json!({"priority": 1})),
            409,
        ),
        ("post", "/queue", keyed(plain.post(d.at("/queue"))).body("{"), 400),
        ("get", "/healthz", plain.get(d.at("/healthz")), 200),
    ];
    // A key sent again with other parameters (the first request's answer was lost).
    let once = |steps: u32| {
        let body = json!({"kind": "testcard", "params": {"steps": steps, "step_ms": 0}});
        keyed(plain.post(d.at("/api/v1/jobs"))).header("Idempotency-Key", "once").json(&body)
    };
    assert_eq!(once(1).send().await.expect("submit").status(), 202);
    let cases = cases.into_iter().chain([("post", "/api/v1/jobs", once(2), 422)]);
    for (method, path, request, want) in cases {
        let resp = request.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{method} {path}: {body}");
        let listed = &doc["paths"][path][method]["responses"][status.to_string()];
        assert!(listed.is_object(), "{method} {path} answered {status}, which the document does not list: {body}");
        let schema = &listed["content"]["application/json"]["schema"];
        if !schema.is_null() {
            assert_eq!(misfit(&doc, schema, &body, "body"), None, "{method} {path} {status}");
        }
    }
    // The probes take no key, and the document says so (`security: [{}]`).
    for path in ["/healthz", "/readyz"] {
        assert_eq!(doc["paths"][path]["get"]["security"], json!([{}]), "{path}");
    }
}

/// The success answers that carry no body though their status could: ComfyUI's own server
/// answers these 200 with nothing, and ComfyUI's clients expect that.
const NO_BODY: [(&str, &str); 4] =
    [("post", "/free"), ("post", "/history"), ("post", "/interrupt"), ("post", "/queue")];

/// A refusal is typed too: every 4xx and 5xx in `/openapi.json` has a body schema (ComfyUI's
/// in ComfyUI's shape), but for 304 and 416, which carry none; what ComfyUI's `/view`,
/// `/models/{folder}` and `/upload/image` refuse with is what the document lists. And no schema
/// is named after a Rust type (`i64` from a `Millis` alias was listed as a model of its own).
#[tokio::test]
async fn every_refusal_says_its_schema_and_no_schema_is_a_rust_type() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = daemon(&home.path().join("data"), &home.path().join("log"));
    let c = reqwest::Client::new();
    let doc = get_json(&c, &d, "/openapi.json").await;
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (status, answer) in op["responses"].as_object().expect("responses") {
                let refusal = status.starts_with('4') || status.starts_with('5');
                let has_schema =
                    answer["content"].as_object().is_some_and(|c| c.values().any(|m| m["schema"].is_object()));
                if refusal && !["416"].contains(&status.as_str()) && !has_schema {
                    untyped.push(format!("{method} {path} {status}"));
                }
            }
        }
    }
    assert!(untyped.is_empty(), "refusals without a typed body:\n{}", untyped.join("\n"));
    let rust: Vec<&String> = doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .keys()
        .filter(|k| k.starts_with(char::is_lowercase))
        .collect();
    assert!(rust.is_empty(), "schemas named after Rust types: {rust:?}");
    let png_form = || {
        reqwest::multipart::Form::new()
            .part("image", reqwest::multipart::Part::bytes(b"not a picture".to_vec()).file_name("x.png"))
    };
    for (method, path, req) in [
        ("get", "/view", c.get(d.at("/view")).query(&[("filename", "nope.png")])),
        ("get", "/view", c.get(d.at("/view")).query(&[("filename", "../x.png")])),
        ("get", "/models/{folder}", c.get(d.at("/models/loras-of-mine"))),
        ("post", "/upload/image", c.post(d.at("/upload/image")).multipart(png_form())),
    ] {
        let (status, content_type, body) = answer(req).await;
        assert!(status >= 400, "{method} {path}: {status}");
        assert_eq!(
            common::api::unlisted(&doc, method, path, status, content_type.as_deref(), &body),
            None,
            "{method} {path}"
        );
    }
}

/// Every success answer the document lists says what it carries: content with a schema for
/// each media type (a file download its media types as bytes, an event stream
/// `text/event-stream`, a ComfyUI answer ComfyUI's shape), so a generated client gets typed
/// bodies and Schemathesis checks them; only 204, 205 and ComfyUI's empty 200s carry none,
/// and those really are empty. Every answer a plain GET gets is in a listed content type
/// and (JSON) its schema.
#[tokio::test]
async fn every_success_answer_says_its_content_type_and_schema() {
    let home = tempfile::tempdir().expect("tempdir");
    let d = daemon(&home.path().join("data"), &home.path().join("log"));
    let (_, key) = common::api::create_key(&d, None, json!({"name": "admin", "scope": "admin"})).await;
    let c = common::api::keyed_client(&key);
    let doc = get_json(&c, &d, "/openapi.json").await;
    let mut untyped = Vec::new();
    let mut gets = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for (status, answer) in op["responses"].as_object().expect("responses") {
                if !status.starts_with('2') || ["204", "205"].contains(&status.as_str()) {
                    continue;
                }
                let content = answer["content"].as_object().filter(|c| !c.is_empty());
                if NO_BODY.contains(&(method.as_str(), path.as_str())) {
                    assert!(content.is_none(), "{method} {path} {status} has a body now: drop it from NO_BODY");
                    continue;
                }
                match content {
                    None => untyped.push(format!("{method} {path} {status}: no content")),
                    Some(c) => untyped.extend(
                        c.iter()
                            .filter(|(_, m)| !m["schema"].is_object())
                            .map(|(t, _)| format!("{method} {path} {status}: {t} has no schema")),
                    ),
                }
                // A GET that needs nothing filled in and does not stream is asked below.
                let streams = content.is_some_and(|c| c.contains_key("text/event-stream"));
                let needs = path.contains('{')
                    || op["parameters"].as_array().into_iter().flatten().any(|p| p["required"] == true);
                if method == "get" && status == "200" && !streams && !needs {
                    gets.push(path.clone());
                }
            }
        }
    }
    assert!(untyped.is_empty(), "success answers without a typed body:\n{}", untyped.join("\n"));
    for (method, path) in NO_BODY {
        let resp = c.post(d.at(path)).json(&json!({})).send().await.expect("post");
        assert_eq!(resp.status(), 200, "{method} {path}");
        assert!(resp.headers().get("content-type").is_none(), "{method} {path}: {:?}", resp.headers());
        assert!(resp.bytes().await.expect("body").is_empty(), "{method} {path}");
    }
    // Files too: a ComfyUI upload and its `/view`, a job's picture and JSON summary.
    let png = common::media::png(&common::media::test_picture(16, 16, 1));
    let form = reqwest::multipart::Form::new().part("image", reqwest::multipart::Part::bytes(png).file_name("cat.png"));
    let (status, content_type, body) = answer(c.post(d.at("/upload/image")).multipart(form)).await;
    assert_eq!(common::api::unlisted(&doc, "post", "/upload/image", status, content_type.as_deref(), &body), None);
    let uploaded: Value = serde_json::from_slice(&body).expect("json");
    let name = uploaded["name"].as_str().expect("name");
    let mut asked = vec![("get", "/view".to_string(), c.get(d.at("/view")).query(&[("filename", name)]))];
    let card = json!({"kind": "testcard", "params": {"steps": 1, "step_ms": 0}});
    let job = common::daemon::submit(&c, &d, card).await["id"].as_str().expect("id").to_string();
    common::daemon::wait_job(&c, &d, &job, std::time::Duration::from_secs(20), common::daemon::is_final).await;
    let files = get_json(&c, &d, &format!("/api/v1/jobs/{job}/artifacts")).await;
    for file in files.as_array().expect("artifacts") {
        let url = d.at(&format!("/api/v1/artifacts/{}", file["id"].as_str().expect("id")));
        asked.push(("get", "/api/v1/artifacts/{id}".into(), c.get(url)));
    }
    assert!(asked.len() >= 3, "{files}");
    assert!(gets.len() >= 20, "only {} plain GETs: {gets:?}", gets.len());
    asked.extend(gets.iter().map(|path| ("get", path.clone(), c.get(d.at(path)))));
    let mut succeeded = 0;
    for (method, path, request) in asked {
        // Some refuse on this box (no cluster, no browser session): those are held to the
        // document too.
        let (status, content_type, body) = answer(request).await;
        succeeded += usize::from(status / 100 == 2);
        let why = common::api::unlisted(&doc, method, &path, status, content_type.as_deref(), &body);
        assert_eq!(why, None, "{}", String::from_utf8_lossy(&body));
    }
    assert!(succeeded >= 20, "only {succeeded} answers were successes");
}

/// The status, content type and body of `request`'s answer.
async fn answer(request: reqwest::RequestBuilder) -> (u16, Option<String>, Vec<u8>) {
    let resp = request.send().await.expect("request");
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    (resp.status().as_u16(), content_type, resp.bytes().await.expect("body").to_vec())
}

//! What the API says on the wire, against the real daemon over real HTTP: the served
//! OpenAPI document declares each parameter where it is sent.

use crate::common;

use std::collections::BTreeSet;

use common::daemon::{DaemonProc, get_json};
use serde_json::json;

/// Query parameters a route cannot do without: each one is listed here on purpose.
const REQUIRED_QUERY: [(&str, &str); 1] = [("/view", "filename")];

/// A daemon with a small body limit (4 kB), its log in `log`.
fn daemon(data: &std::path::Path, log: &std::path::Path) -> DaemonProc {
    let config = data.join("config.toml");
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::write(&config, "[limits]\nmax_body_bytes = 4096\n").expect("config");
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
    let jobs = doc["paths"]["/api/v1/jobs"]["get"]["parameters"].as_array().expect("GET /api/v1/jobs parameters");
    let limit = jobs.iter().find(|p| p["name"] == "limit").expect("limit");
    assert_eq!(
        (&limit["in"], &limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!("query"), &json!(1), &json!(500)),
        "{limit}"
    );
}

//! `GET /api/v1/presets` against a real daemon: the built-in presets fewest steps first, the
//! box's own `presets.toml` from the next request on (what the studio's preset list shows),
//! and a broken file named in the error while the daemon stays up.

use crate::common;

use common::daemon::{DaemonProc, get_json};
use serde_json::Value;

fn names(list: &Value) -> Vec<String> {
    let presets = list["presets"].as_array().unwrap_or_else(|| panic!("no presets: {list}"));
    presets.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn presets_are_the_boxs_own_when_it_has_a_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let d = DaemonProc::start(&data, &[]);
    let http = reqwest::Client::new();

    let builtin = get_json(&http, &d, "/api/v1/presets").await;
    assert_eq!(names(&builtin), ["fast", "quality", "max"], "fewest steps first: {builtin}");
    assert_eq!(builtin["source"], "built-in");
    assert_eq!(builtin["presets"][0]["steps"], 12);
    assert!(builtin["presets"][0]["description"].as_str().is_some_and(|s| !s.is_empty()), "{builtin}");

    let file = data.join("presets.toml");
    let draft = "[draft]\ndescription = \"Sketches\"\nwidth = 256\nheight = 256\nsteps = 4\n\
                 guidance = 5.0\nscheduler = \"euler\"\nmin_vram_mib = 1024\n";
    std::fs::write(&file, draft).expect("write presets");
    let own = get_json(&http, &d, "/api/v1/presets").await;
    assert_eq!(names(&own), ["draft"], "{own}");
    assert_eq!(own["source"], file.display().to_string());
    assert_eq!(
        (own["presets"][0]["width"].as_u64(), own["presets"][0]["scheduler"].as_str()),
        (Some(256), Some("euler"))
    );

    std::fs::write(&file, "[broken]\nsteps = \"many\"\n").expect("write presets");
    let resp = http.get(d.at("/api/v1/presets")).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 500);
    let body: Value = resp.json().await.expect("json error");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("presets.toml")), "{body}");
    let up = http.get(d.at("/healthz")).send().await.expect("healthz");
    assert!(up.status().is_success(), "the daemon stays up");
}

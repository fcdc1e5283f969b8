//! The browser side of the web studio's test: Debian's `chromium` driven through
//! `chromium-driver` (WebDriver), screenshots, and waiting on what the page shows.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::daemon::DaemonProc;

/// Chromium's flags: headless, and nothing that reaches for the (closed) network.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
];

/// A chromedriver process with one browser session; both end on drop: chromedriver runs in
/// a process group of its own, which Chromium and its helpers join, and the whole group is
/// killed (killing chromedriver alone left every test's Chromium running).
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is the driver's pid (`process_group(0)`); `kill -PGID` signals all of it.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub(crate) async fn browser(downloads: &Path) -> Browser {
    browser_with(downloads, json!({})).await
}

/// As [`browser`] with Chromium preferences of a person's own added (`prefs`, e.g. a larger
/// default text size: `{"webkit": {"webprefs": {"default_font_size": 32}}}`).
pub(crate) async fn browser_with(downloads: &Path, prefs: Value) -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromedriver: install Debian's chromium and chromium-driver (.ci/test does)");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut all =
        json!({"download.default_directory": downloads.display().to_string(), "download.prompt_for_download": false});
    if let (Some(all), Value::Object(extra)) = (all.as_object_mut(), prefs) {
        all.extend(extra);
    }
    let caps = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args, "prefs": all}});
    let Value::Object(caps) = caps else { unreachable!("a JSON object") };
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let client = loop {
        let builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await;
        match builder {
            Ok(c) => break c,
            // The driver takes a moment to listen.
            Err(_) if t0.elapsed() < Duration::from_secs(30) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("no WebDriver session from chromedriver: {e}"),
        }
    };
    Browser { client, driver, _profile: profile }
}

/// Where screenshots go: `target/web-screenshots/`.
fn shots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    dir
}

/// Resizes the viewport to `w`×`h` CSS pixels and saves a screenshot as `name-WxH.png`.
pub(crate) async fn shot(c: &Client, name: &str, w: u32, h: u32) {
    c.set_window_size(w, h).await.expect("resize");
    let inner = js(c, "return [innerWidth, innerHeight]").await;
    let (iw, ih) = (inner[0].as_u64().unwrap_or(0) as u32, inner[1].as_u64().unwrap_or(0) as u32);
    if (iw, ih) != (w, h) {
        c.set_window_size(w + w.saturating_sub(iw), h + h.saturating_sub(ih)).await.expect("resize");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots_dir().join(format!("{name}-{w}x{h}.png")), png).expect("write screenshot");
}

/// Visible controls smaller than 24 px either way (WCAG 2.2's minimum target): too small
/// for a finger.
const TINY_CONTROLS: &str = "return [...document.querySelectorAll('button, input, select, textarea, nav a, .handle, summary')]\
     .map(e => [e, e.getBoundingClientRect()]).filter(([e, r]) => e.offsetParent && r.right > 0)\
     .filter(([e, r]) => r.width < 24 || r.height < 24)\
     .map(([e, r]) => `${e.tagName} ${e.id || e.type || e.className} ${r.width}x${r.height}`)";

pub(crate) async fn both_shots(c: &Client, name: &str) {
    shot(c, name, 390, 844).await;
    let overflow = js(c, "return document.documentElement.scrollWidth - innerWidth").await;
    assert!(overflow.as_i64().unwrap_or(0) <= 0, "{name}: the page is wider than a phone ({overflow} px)");
    assert_eq!(js(c, TINY_CONTROLS).await, json!([]), "{name}: controls too small for a finger on a phone");
    shot(c, name, 1280, 800).await;
}

pub(crate) async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `script` until it returns something other than null/false/""; saves a screenshot
/// named after `what` when it never does.
pub(crate) async fn wait_js(c: &Client, what: &str, script: &str, timeout: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let v = js(c, script).await;
        if !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") {
            return v;
        }
        if t0.elapsed() > timeout {
            let png = c.screenshot().await.unwrap_or_default();
            let _ = std::fs::write(shots_dir().join(format!("failed-{what}.png")), png);
            let text = js(c, "return document.body.innerText").await;
            panic!("timed out waiting for {what} (last {v}); the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub(crate) async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
}

pub(crate) async fn go(c: &Client, d: &DaemonProc, hash: &str, ready_css: &str) {
    c.goto(&format!("{}/{hash}", d.url)).await.expect("goto");
    let script = format!("return !!document.querySelector({ready_css:?})");
    wait_js(c, ready_css, &script, Duration::from_secs(20)).await;
}

/// Logs in at the page's login form with `key` and waits until signed in.
pub(crate) async fn log_in(c: &Client, d: &DaemonProc, key: &str) {
    go(c, d, "", "#login:not([hidden])").await;
    find(c, "#login-key").await.send_keys(key).await.expect("type");
    find(c, "#login-form button[type=submit]").await.click().await.expect("log in");
    wait_js(c, "signed in", "return !document.getElementById('who').hidden", Duration::from_secs(10)).await;
}

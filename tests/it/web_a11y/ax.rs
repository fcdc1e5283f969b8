//! What a screen reader and a keyboard see of the page: Chromium's accessibility tree
//! (CDP `Accessibility.getFullAXTree`, sent through chromedriver's `goog/cdp/execute`),
//! keys pressed as WebDriver key actions (not typed into an element), where the focus is,
//! and what the page's live regions said.

use std::time::Duration;

use fantoccini::Client;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use reqwest::{Method, Url};
use serde_json::{Value, json};

use crate::web_studio::browser::{js, wait_js};

/// A Chrome DevTools Protocol command through chromedriver.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base: &Url, session: Option<&str>) -> Result<Url, <Url as std::str::FromStr>::Err> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &Url) -> (Method, Option<String>) {
        (Method::POST, Some(json!({"cmd": self.cmd, "params": self.params}).to_string()))
    }
}

/// Sends `cmd` with `params` to the page's DevTools and returns its answer.
pub(crate) async fn cdp(c: &Client, cmd: &'static str, params: Value) -> Value {
    c.issue_cmd(Cdp { cmd, params }).await.unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

/// One node of the accessibility tree a screen reader reads.
#[derive(Debug, Clone)]
pub(crate) struct AxNode {
    pub(crate) role: String,
    pub(crate) name: String,
    /// Its properties (`live`, `focusable`, `invalid`…) by name.
    pub(crate) props: serde_json::Map<String, Value>,
}

impl AxNode {
    /// A property's value, null when the node has none.
    pub(crate) fn prop(&self, name: &str) -> &Value {
        self.props.get(name).unwrap_or(&Value::Null)
    }
}

/// The page's accessibility tree, less the nodes a screen reader skips.
pub(crate) async fn tree(c: &Client) -> Vec<AxNode> {
    let all = cdp(c, "Accessibility.getFullAXTree", json!({})).await;
    let nodes = all["nodes"].as_array().cloned().unwrap_or_default();
    nodes
        .iter()
        .filter(|n| n["ignored"] != json!(true))
        .map(|n| AxNode {
            role: n["role"]["value"].as_str().unwrap_or_default().to_string(),
            name: n["name"]["value"].as_str().unwrap_or_default().to_string(),
            props: n["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (p["name"].as_str().unwrap_or_default().to_string(), p["value"]["value"].clone()))
                .collect(),
        })
        .collect()
}

/// The roles a person operates.
const CONTROLS: &[&str] = &[
    "button",
    "link",
    "textbox",
    "searchbox",
    "combobox",
    "checkbox",
    "spinbutton",
    "radio",
    "slider",
    "application",
    "Video",
    "Audio",
];

/// Every control of the page as `role "name"`, for asserting on.
pub(crate) async fn controls(c: &Client) -> Vec<(String, String)> {
    tree(c).await.into_iter().filter(|n| CONTROLS.contains(&n.role.as_str())).map(|n| (n.role, n.name)).collect()
}

/// Presses `keys` one after the other, as a keyboard does (to whatever has the focus).
pub(crate) async fn press(c: &Client, keys: &[Key]) {
    let mut actions = KeyActions::new("keyboard".into());
    for k in keys {
        let value = char::from(*k);
        actions = actions.then(KeyAction::Down { value }).then(KeyAction::Up { value });
    }
    c.perform_actions(actions).await.expect("press keys");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Types `text` on the keyboard into what has the focus.
pub(crate) async fn type_keys(c: &Client, text: &str) {
    let mut actions = KeyActions::new("keyboard".into());
    for value in text.chars() {
        actions = actions.then(KeyAction::Down { value }).then(KeyAction::Up { value });
    }
    c.perform_actions(actions).await.expect("type");
}

/// What has the focus: `tag#id "its accessible text"`, or `BODY` when nothing has (the
/// page's start, where a keyboard user lands when the focused control goes away). A control
/// no `<label>` can name (a paint area's canvas) is named by what `aria-labelledby` names.
pub(crate) const FOCUSED: &str = "const e = document.activeElement; \
     if (!e || e === document.body) return 'BODY'; \
     const by = e.getAttribute('aria-labelledby'); \
     const label = e.getAttribute('aria-label') || (by && document.getElementById(by.split(' ')[0])?.textContent) \
       || (e.labels && e.labels[0] && e.labels[0].textContent) || e.textContent; \
     return `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''} \"${label.trim()}\"`";

/// Where the focus is now (see [`FOCUSED`]).
pub(crate) async fn focused(c: &Client) -> String {
    js(c, FOCUSED).await.as_str().unwrap_or_default().to_string()
}

/// Presses Tab until the focused control's text is `label` (at most `max` times); where the
/// focus is then.
pub(crate) async fn tab_to(c: &Client, label: &str, max: usize) -> String {
    for _ in 0..max {
        press(c, &[Key::Tab]).await;
        let at = focused(c).await;
        if at.ends_with(&format!("\"{label}\"")) || at.contains(&format!("\"{label} ")) {
            return at;
        }
    }
    panic!("{max} Tabs never reached {label:?}; the focus is on {}", focused(c).await);
}

/// Starts keeping what the page's live regions say (`aria-live`, `status`, `alert`): each
/// change of text inside one, as `region: text`; [`said`] reads them.
pub(crate) async fn listen(c: &Client) {
    js(
        c,
        "window.__said = []; if (window.__listening) return; window.__listening = true; \
         const region = (n) => (n.nodeType === 1 ? n : n.parentElement)?.closest('[aria-live],[role=status],[role=alert],[role=log]'); \
         new MutationObserver((ms) => { for (const m of ms) { const r = region(m.target); \
           if (r) window.__said.push(`${r.id || r.tagName.toLowerCase()}: ${r.textContent.trim()}`); } }) \
           .observe(document.body, { subtree: true, childList: true, characterData: true });",
    )
    .await;
}

/// What the live regions said since [`listen`].
pub(crate) async fn said(c: &Client) -> Vec<String> {
    let v = js(c, "return window.__said || []").await;
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

/// Waits until the focus is on something matching `css`; where it is.
pub(crate) async fn wait_focus(c: &Client, what: &str, css: &str) -> String {
    let script = format!("return document.activeElement && document.activeElement.matches({css:?})");
    let t0 = std::time::Instant::now();
    loop {
        if js(c, &script).await == json!(true) {
            return focused(c).await;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            panic!("{what}: the focus never reached {css}; it is on {}", focused(c).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The WCAG contrast ratio of two CSS colours (`rgb(…)`), computed in the page.
pub(crate) const CONTRAST: &str = "const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number) \
       .map((v) => v / 255).map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)); \
       return 0.2126 * r + 0.7152 * g + 0.0722 * b; }; \
     const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };";

/// Waits (up to 20 s) for `script` to be true, naming `what` when it never is.
pub(crate) async fn until(c: &Client, what: &str, script: &str) -> Value {
    wait_js(c, what, script, Duration::from_secs(20)).await
}

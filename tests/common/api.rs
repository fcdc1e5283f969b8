//! Plain API calls as a key's holder makes them: status and JSON, nothing assumed.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::daemon::DaemonProc;

/// One request with `key` (none: unauthenticated) and a JSON `body`; the status and the
/// JSON answer (null when the answer is not JSON).
pub async fn call(key: Option<&str>, method: Method, url: String, body: Option<Value>) -> (StatusCode, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a key with `by`'s key (none: the first key of a keyless box); its id and secret.
pub async fn create_key(d: &DaemonProc, by: Option<&str>, body: Value) -> (String, String) {
    let (status, v) = call(by, Method::POST, d.at("/api/v1/keys"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    (v["id"].as_str().expect("id").to_string(), v["key"].as_str().expect("key").to_string())
}

/// Uploads `bytes` as `name` with `key` (none: unauthenticated); the artifact's answer,
/// stored now (201) or the one the key already held with these bytes (200).
pub async fn upload(d: &DaemonProc, key: Option<&str>, name: &str, bytes: Vec<u8>) -> Value {
    let (status, art) = upload_answer(d, key, name, bytes).await;
    assert!(matches!(status, StatusCode::CREATED | StatusCode::OK), "upload of {name}: {status} {art}");
    art
}

/// As [`upload`], whatever the answer: its status and JSON (null when it is not JSON).
pub async fn upload_answer(d: &DaemonProc, key: Option<&str>, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.to_string()));
    let mut r = reqwest::Client::new().post(d.at("/api/v1/artifacts")).multipart(form);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let resp = r.send().await.expect("upload");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The bytes the holder of `key` has stored (`GET /api/v1/keys`: a client key sees its own).
pub async fn storage_bytes(d: &DaemonProc, key: &str) -> u64 {
    let (_, keys) = call(Some(key), Method::GET, d.at("/api/v1/keys"), None).await;
    keys[0]["storage_bytes"].as_u64().unwrap_or_else(|| panic!("storage_bytes: {keys}"))
}

/// A client that sends `key` with every request (for the shared job helpers that take a
/// client: `submit`, `wait_job`, `get_json`).
pub fn keyed_client(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {key}").parse().expect("header");
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// Why `value` does not fit `schema` (an OpenAPI 3.1 schema of `doc`, `$ref`s resolved):
/// types, required and unknown properties (a map's values against `additionalProperties`; an
/// object of no named properties takes any),
/// array items (`prefixItems` first) and lengths, numeric bounds; the parts of an `allOf` as
/// one object.
pub fn misfit(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or_default();
        return misfit(doc, &doc["components"]["schemas"][name], value, at);
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return misfit(doc, &all_of(doc, parts), value, at);
    }
    if let Some(options) = schema["oneOf"].as_array().or_else(|| schema["anyOf"].as_array()) {
        let why: Vec<String> = options.iter().map(|o| misfit(doc, o, value, at)).collect::<Option<_>>()?;
        return Some(why.join("; "));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let typed = types.is_empty() || types.contains(&type_of) || (type_of == "integer" && types.contains(&"number"));
    if !typed {
        return Some(format!("{at}: {value} is {type_of}, not {types:?}"));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        return Some(format!("{at}: {n} < {min}"));
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        return Some(format!("{at}: {n} > {max}"));
    }
    if let Value::Array(items) = value {
        let len = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| len < m) || schema["maxItems"].as_u64().is_some_and(|m| len > m)
        {
            return Some(format!("{at}: {len} items"));
        }
        let prefix = schema["prefixItems"].as_array().map_or(&[][..], Vec::as_slice);
        return items
            .iter()
            .enumerate()
            .find_map(|(i, v)| misfit(doc, prefix.get(i).unwrap_or(&schema["items"]), v, &format!("{at}[{i}]")));
    }
    if let Value::Object(fields) = value {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !fields.contains_key(required) {
                return Some(format!("{at}.{required} is required"));
            }
        }
        for (key, v) in fields {
            let Some(property) =
                schema["properties"].get(key).or(schema.get("additionalProperties").filter(|a| a.is_object()))
            else {
                // An object schema naming no properties is a free-form object (any JSON).
                if schema.get("properties").is_none() && schema.get("additionalProperties").is_none() {
                    continue;
                }
                return Some(format!("{at}.{key} is no property of the schema"));
            };
            if let Some(why) = misfit(doc, property, v, &format!("{at}.{key}")) {
                return Some(why);
            }
        }
    }
    None
}

/// Why an answer is not one `doc` lists for `method path`: its status not listed, its content
/// type not among the status's (none: the status lists no content), or a JSON body not
/// fitting the schema listed for it.
pub fn unlisted(
    doc: &Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
    let listed = &doc["paths"][path][method]["responses"][status.to_string()];
    if !listed.is_object() {
        return Some(format!("{method} {path}: {status} is not listed"));
    }
    let content = listed["content"].as_object();
    // The media type alone: `text/plain; charset=utf-8` is listed as `text/plain`.
    let essence = |t: &str| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let Some(sent) = content_type else {
        return content
            .filter(|c| !c.is_empty())
            .map(|c| format!("{method} {path} {status}: no content type, not one of {:?}", c.keys()));
    };
    let Some((_, media)) = content.into_iter().flatten().find(|(t, _)| essence(t) == essence(sent)) else {
        return Some(format!("{method} {path} {status}: content type {sent} is not listed: {listed}"));
    };
    if essence(sent) != "application/json" {
        return None;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => misfit(doc, &media["schema"], &v, "body").map(|why| format!("{method} {path} {status}: {why}")),
        Err(e) => Some(format!("{method} {path} {status}: not JSON ({e})")),
    }
}

/// The parts of an `allOf` (each resolved) as one object schema: their properties and
/// required fields together.
fn all_of(doc: &Value, parts: &[Value]) -> Value {
    let (mut properties, mut required) = (serde_json::Map::new(), Vec::new());
    for part in parts {
        let part = match part["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap_or_default()].clone(),
            None => part.clone(),
        };
        let part = match part["allOf"].as_array() {
            Some(inner) => all_of(doc, inner),
            None => part,
        };
        properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
        required.extend(part["required"].as_array().cloned().unwrap_or_default());
    }
    serde_json::json!({"type": "object", "properties": properties, "required": required})
}

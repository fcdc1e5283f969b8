//! A refused request value in a person's words: which field, what it takes (read from the
//! same schema the OpenAPI document shows: "a whole number from 8 to 2048"), and what came
//! instead, from serde's or the query parser's detail; never a Rust type name.

use serde_json::Value;

/// The parts of a field's path as serde_path_to_error writes it: `presenter.face_box[0]` is
/// `presenter`, `face_box`, item 0.
pub(super) fn path_parts(path: &str) -> impl Iterator<Item = Result<&str, usize>> {
    path.split('.').flat_map(|segment| {
        let mut pieces = segment.split('[');
        let name = pieces.next().filter(|n| !n.is_empty()).map(Ok);
        name.into_iter().chain(pieces.filter_map(|i| i.trim_end_matches(']').parse().ok().map(Err)))
    })
}

/// The schema of the field at `path` (nested objects' fields and list items included,
/// through the document's named schemas), `Null` where the schema does not say.
pub(super) fn property_at(schema: &Value, path: &str) -> Value {
    let mut at = schema.clone();
    for part in path_parts(path) {
        let object = resolved(&at);
        at = match part {
            Ok(name) => object["properties"][name].clone(),
            Err(_) => object["items"].clone(),
        };
    }
    resolved(&at)
}

/// `schema` with a `$ref` (alone, or as the one non-null choice of a nullable field)
/// replaced by the named schema it points at in this API's OpenAPI document.
pub(super) fn resolved(schema: &Value) -> Value {
    static NAMED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let choices = schema["oneOf"].as_array().map(|c| c.iter().filter(|c| c["type"] != "null").collect::<Vec<_>>());
    let target = match choices.as_deref() {
        Some([one]) => *one,
        _ => schema,
    };
    let Some(name) = target["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) else {
        return target.clone();
    };
    let named = NAMED.get_or_init(|| {
        serde_json::to_value(super::super::openapi::full())
            .map(|d| d["components"]["schemas"].clone())
            .unwrap_or_default()
    });
    named[name].clone()
}

/// The value sent at `path` in `body`.
pub(super) fn value_at<'v>(body: &'v Value, path: &str) -> Option<&'v Value> {
    path_parts(path).try_fold(body, |at, part| match part {
        Ok(name) => at.get(name),
        Err(index) => at.get(index),
    })
}

/// The refusal of a body that is not a JSON object: what it must be, with the fields.
pub(super) fn not_an_object(schema: &Value, first: Option<u8>) -> String {
    let got = match first {
        Some(b'[') => "a list",
        Some(b'"') => "text",
        Some(b't' | b'f') => "true or false",
        Some(b'n') => "null",
        Some(_) => "a number",
        None => "nothing",
    };
    let fields: Vec<&str> =
        schema["properties"].as_object().map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut what = format!("the body must be a JSON object of this request's fields ({})", fields.join(", "));
    if !required.is_empty() {
        what.push_str(&format!(", with {}", required.join(", ")));
    }
    format!("{what}; got {got}")
}

/// The value of `name` as the query string sent it (decoded), to say what came.
pub(super) fn query_value(query: &str, name: &str) -> Option<String> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| decode(k) == name).map(|(_, v)| decode(v))
}

/// One refused value in words: `(field, message)`. `text` is serde's (or the query
/// parser's) detail without its position; `property` the field's schema (what it takes);
/// `raw` the value as sent, quoted when text, where serde's text leaves it out (query
/// strings, a choice none of whose forms read it).
pub(super) fn in_words(
    field: Option<String>,
    text: &str,
    property: &Value,
    raw: Option<&str>,
    schema: &Value,
) -> (Option<String>, String) {
    let quoted: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    let say = |f: &Option<String>, what: String| match f {
        Some(f) => (Some(f.clone()), format!("{f}: {what}")),
        None => (None, what),
    };
    if let Some(name) = quoted.first().filter(|_| text.starts_with("missing field ")) {
        let field = Some(field.filter(|f| f != name).map_or(name.to_string(), |f| format!("{f}.{name}")));
        return say(&field, "is required".into());
    }
    if let Some(name) = quoted.first().filter(|_| text.starts_with("unknown field ")) {
        let field = Some(field.unwrap_or_else(|| name.to_string()));
        let known = match schema["properties"].as_object() {
            Some(p) if quoted.len() < 2 => p.keys().map(String::as_str).collect(),
            _ => quoted[1..].to_vec(),
        };
        return say(&field, format!("is not a field of this request; it takes {}", known.join(", ")));
    }
    if let Some(got) = quoted.first().filter(|_| text.starts_with("unknown variant ")) {
        return say(&field, format!("must be one of {}; got {got:?}", quoted[1..].join(", ")));
    }
    let typed = text.strip_prefix("invalid type: ").or_else(|| text.strip_prefix("invalid value: "));
    if let Some((unexpected, expected)) = typed.and_then(|t| t.split_once(", expected ")) {
        let takes = takes(property).unwrap_or_else(|| serde_words(expected));
        return say(&field, format!("must be {takes}; got {}", got(unexpected)));
    }
    // A fixed-length list (`face_box`) of another length: its length is serde's to say.
    let length = text.strip_prefix("invalid length ").and_then(|t| t.split_once(", expected an array of length "));
    if let (Some((sent, wanted)), Some(items)) = (length, takes(&property["items"])) {
        return say(&field, format!("must be a list of {wanted} items, each {items}; got {sent}"));
    }
    match (takes(property), raw) {
        (Some(takes), Some(raw)) => say(&field, format!("must be {takes}; got {raw}")),
        _ => say(&field, text.to_string()),
    }
}

/// What a field takes, from its schema: "a whole number from 1 to 500", "true or false".
pub(super) fn takes(property: &Value) -> Option<String> {
    // A named schema (a list's items: `face_box`'s `FaceSide`) in its own words.
    let property = &resolved(property);
    // A choice (`VoiceChoice`: a name or `{"id": …}`) takes what any of its forms takes.
    if let Some(choices) = property["oneOf"].as_array() {
        let words: Option<Vec<String>> =
            choices.iter().filter(|c| c["type"] != "null").map(|c| takes(&resolved(c))).collect();
        return words.map(|w| w.join(" or "));
    }
    let ty = match &property["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null")?,
        _ => return None,
    };
    let mut words = match ty {
        "integer" => "a whole number".to_string(),
        "number" => "a number".to_string(),
        "boolean" => return Some("true or false".into()),
        "string" => match property["enum"].as_array() {
            Some(names) => {
                let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
                return Some(format!("one of {}", names.join(", ")));
            }
            None => return Some("text".into()),
        },
        "array" => {
            return Some(
                takes(&property["items"]).map_or_else(|| "a list".into(), |i| format!("a list, each item {i}")),
            );
        }
        "object" => {
            let required: Vec<&str> = property["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            return Some(if required.is_empty() {
                "an object".into()
            } else {
                format!("an object with {}", required.join(", "))
            });
        }
        _ => return None,
    };
    match (number(&property["minimum"]), number(&property["maximum"])) {
        (Some(min), Some(max)) => words.push_str(&format!(" from {min} to {max}")),
        (Some(min), None) => words.push_str(&format!(", {min} or more")),
        (None, Some(max)) => words.push_str(&format!(", at most {max}")),
        (None, None) => {}
    }
    if let Some(step) = number(&property["multipleOf"]) {
        words.push_str(&format!(", a multiple of {step}"));
    }
    Some(words)
}

/// A schema bound as people write it: `8`, not `8.0`; a whole one exactly (2⁶³ − 1 is
/// `9223372036854775807`, not the float nearest it).
pub(super) fn number(v: &Value) -> Option<String> {
    if let Some(n) = v.as_i64() {
        return Some(n.to_string());
    }
    if let Some(n) = v.as_u64() {
        return Some(n.to_string());
    }
    let n = v.as_f64()?;
    Some(if n.fract() == 0.0 && n.abs() < 1e15 { format!("{n:.0}") } else { n.to_string() })
}

/// serde's name of an expected type, in words, where the schema has none.
pub(super) fn serde_words(expected: &str) -> String {
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a char" => "text",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        e if e.starts_with("struct ") || e == "a map" => "an object",
        e => e,
    };
    words.to_string()
}

/// serde's description of the value that came, in words: `integer `-64`` → `-64`.
pub(super) fn got(unexpected: &str) -> String {
    match unexpected {
        "null" | "unit value" => "null".into(),
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        u => match u.strip_prefix("string ") {
            Some(s) => s.to_string(),
            None => u.split('`').nth(1).unwrap_or(u).to_string(),
        },
    }
}

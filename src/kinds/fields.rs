//! Readers for the wire → struct step: each turns one JSON field into a typed value, or a
//! [`ParamError`] naming the field with the message clients have always seen ("must be an
//! integer", "unknown parameter; known: ..."). Numeric strings are accepted where numbers
//! are (the CLI's `--param k=v` sends them), which serde's derive would refuse.

use std::ops::RangeInclusive;

use serde_json::Value;
use ulid::Ulid;

use super::ParamError;

/// Reads an optional integer (a number or a numeric string); no range check.
pub fn int_field(params: &Value, field: &str) -> Result<Option<i64>, ParamError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| ParamError::new(field, "must be an integer")),
    }
}

/// Reads an optional number (a number or a numeric string); no range check.
pub fn float_field(params: &Value, field: &str) -> Result<Option<f64>, ParamError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Some)
            .ok_or_else(|| ParamError::new(field, "must be a number")),
    }
}

/// Holds an integer to `range`; the error names `field` and the value.
pub fn int_in(field: &str, v: i64, range: RangeInclusive<i64>) -> Result<i64, ParamError> {
    if !range.contains(&v) {
        return Err(ParamError::new(field, format!("must be between {} and {}, got {v}", range.start(), range.end())));
    }
    Ok(v)
}

/// Holds a number to `range` (and to finite values); the error names `field` and the value.
pub fn float_in(field: &str, v: f64, range: RangeInclusive<f64>) -> Result<f64, ParamError> {
    if !v.is_finite() || !range.contains(&v) {
        return Err(ParamError::new(field, format!("must be between {} and {}, got {v}", range.start(), range.end())));
    }
    Ok(v)
}

/// Holds an integer to `range` and returns it as a `u32` (the kinds' ranges lie within it;
/// one that did not would still name the field rather than wrap).
pub fn u32_in(field: &str, v: i64, range: RangeInclusive<i64>) -> Result<u32, ParamError> {
    let v = int_in(field, v, range)?;
    u32::try_from(v).map_err(|_| ParamError::new(field, format!("must be between 0 and {}, got {v}", u32::MAX)))
}

/// Holds an optional integer to `range` as a `u32`.
pub fn opt_u32_in(field: &str, v: Option<i64>, range: RangeInclusive<i64>) -> Result<Option<u32>, ParamError> {
    v.map(|v| u32_in(field, v, range)).transpose()
}

/// Holds an optional number to `range` as an `f32`.
pub fn opt_f32_in(field: &str, v: Option<f64>, range: RangeInclusive<f64>) -> Result<Option<f32>, ParamError> {
    v.map(|v| float_in(field, v, range).map(|v| v as f32)).transpose()
}

/// Reads an optional string parameter.
pub fn str_param<'p>(params: &'p Value, field: &str) -> Result<Option<&'p str>, ParamError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ParamError::new(field, "must be a string")),
    }
}

/// Reads an optional string parameter as an owned string.
pub fn string_field(params: &Value, field: &str) -> Result<Option<String>, ParamError> {
    Ok(str_param(params, field)?.map(str::to_owned))
}

/// Reads an optional boolean (`true`/`false`, or those words as strings, as the CLI's
/// `--param k=v` sends them); anything else names the field instead of reading as unset.
pub fn bool_field(params: &Value, field: &str) -> Result<Option<bool>, ParamError> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim() == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s.trim() == "false" => Ok(Some(false)),
        Some(_) => Err(ParamError::new(field, "must be true or false")),
    }
}

/// Rejects fields this kind does not know, so typos are not silently ignored.
pub fn reject_unknown(params: &Value, known: &[&str]) -> Result<(), ParamError> {
    match params {
        Value::Object(map) => {
            for key in map.keys() {
                if !known.contains(&key.as_str()) {
                    return Err(ParamError::new(
                        key.clone(),
                        format!("unknown parameter; known: {}", known.join(", ")),
                    ));
                }
            }
            Ok(())
        }
        Value::Null => Ok(()),
        _ => Err(ParamError::new("params", "must be a JSON object")),
    }
}

/// Reads an optional artifact-id parameter (a ULID string).
pub fn artifact_param(params: &Value, field: &str) -> Result<Option<Ulid>, ParamError> {
    str_param(params, field)?
        .map(|s| {
            Ulid::from_string(s.trim()).map_err(|_| ParamError::new(field, format!("{s:?} is not an artifact id")))
        })
        .transpose()
}

/// Reads an optional `[x, y, w, h]` box with a positive size.
pub fn box_param(params: &Value, field: &str) -> Result<Option<[u32; 4]>, ParamError> {
    let Some(v) = params.get(field).filter(|v| !v.is_null()) else { return Ok(None) };
    let err = || ParamError::new(field, "must be [x, y, w, h] with non-negative integers and w, h > 0");
    let arr = v.as_array().filter(|a| a.len() == 4).ok_or_else(err)?;
    let mut out = [0u32; 4];
    for (o, x) in out.iter_mut().zip(arr) {
        *o = x.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(err)?;
    }
    if out[2] == 0 || out[3] == 0 {
        return Err(err());
    }
    Ok(Some(out))
}

/// Whether `field` is present and not null.
pub fn given(params: &Value, field: &str) -> bool {
    params.get(field).is_some_and(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The read-then-check every kind's request does for one integer field.
    fn int_param(params: &Value, field: &str, default: i64, range: RangeInclusive<i64>) -> Result<i64, ParamError> {
        int_in(field, int_field(params, field)?.unwrap_or(default), range)
    }

    #[test]
    fn numbers_may_come_as_strings_and_errors_name_the_field() {
        assert_eq!(int_param(&json!({"n": "3"}), "n", 1, 1..=8), Ok(3));
        assert_eq!(int_param(&json!({}), "n", 1, 1..=8), Ok(1));
        assert_eq!(int_param(&json!({"n": "x"}), "n", 1, 1..=8).expect_err("type").message, "must be an integer");
        assert_eq!(
            int_param(&json!({"n": 9}), "n", 1, 1..=8).expect_err("range").message,
            "must be between 1 and 8, got 9"
        );
        assert_eq!(
            float_field(&json!({"g": "1.5"}), "g").and_then(|g| float_in("g", g.unwrap_or(0.0), 0.0..=2.0)),
            Ok(1.5)
        );
        let unknown = reject_unknown(&json!({"nn": 1}), &["n"]).expect_err("unknown");
        assert_eq!((unknown.field.as_str(), unknown.message.as_str()), ("nn", "unknown parameter; known: n"));
    }

    #[test]
    fn switches_take_booleans_or_their_words_and_name_anything_else() {
        assert_eq!(bool_field(&json!({"up": true}), "up"), Ok(Some(true)));
        assert_eq!(bool_field(&json!({"up": "false"}), "up"), Ok(Some(false)));
        assert_eq!(bool_field(&json!({"up": null}), "up"), Ok(None));
        let bad = bool_field(&json!({"up": "yes"}), "up").expect_err("a word that is not a boolean");
        assert_eq!((bad.field.as_str(), bad.message.as_str()), ("up", "must be true or false"));
        assert!(bool_field(&json!({"up": 1}), "up").is_err());
    }
}

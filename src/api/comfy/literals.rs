//! A graph's literal inputs (numbers, text, choices) checked against their node's input
//! kinds, each problem a ComfyUI error object naming the input, with ComfyUI's wording.

use serde_json::{Value, json};

use super::nodes::InputKind;
use super::validate::{Node, error_obj};
use crate::kinds::resize::ResizeRequest;
use crate::models::named_by_file;

/// Python's `str()` of a list of strings, as ComfyUI's messages show lists.
pub(super) fn py_list(items: &[String]) -> String {
    if items.len() > 20 {
        return format!("(list of length {})", items.len());
    }
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Python's `str()` of a JSON value, for `details`.
pub(super) fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The choice a combo's `value` means: itself, or for a checkpoint or upscale model the model
/// its file name names ("SD1.5/tiny-sd.ckpt", "Realistic Vision V5.1 (fp16).safetensors" for
/// the model its import named `Realistic-Vision-V5.1-fp16`, "4x-UltraSharp.pth"), as
/// [`crate::models::Catalog::find`] says; for a LoRA, the file its path names.
pub(super) fn combo_choice<'a>(input: &str, value: &str, choices: &'a [String]) -> Option<&'a String> {
    match input {
        "ckpt_name" | "model_name" => named_by_file(value, choices),
        // ComfyUI names a LoRA by its path under its `loras` folder.
        "lora_name" => choices.iter().find(|c| *c == crate::models::convert::fused::file_name(value)),
        _ => choices.iter().find(|c| *c == value),
    }
}

/// Checks one literal against its input kind; `Err` is a ComfyUI error object.
pub(super) fn check_literal(name: &str, kind: &InputKind, v: &Value, config: &Value) -> Result<(), Value> {
    let extra = || json!({"input_name": name, "input_config": config, "received_value": v});
    let convert_err = |ty: &str| {
        error_obj(
            "invalid_input_type",
            &format!("Failed to convert an input value to a {ty} value"),
            &format!("{name}, {}, invalid literal for {ty}", py_str(v)),
            extra(),
        )
    };
    let range_err = |below: bool, limit: String| {
        let (kind, word) =
            if below { ("value_smaller_than_min", "smaller") } else { ("value_bigger_than_max", "bigger") };
        let which = if below { "min" } else { "max" };
        error_obj(kind, &format!("Value {} {word} than {which} of {limit}", py_str(v)), name, extra())
    };
    match kind {
        InputKind::Link(_) => Err(error_obj(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            &format!("{name}, {}", py_str(v)),
            json!({"input_name": name, "input_config": config, "received_value": v}),
        )),
        InputKind::Int { min, max, .. } => {
            let n = int_value(v).ok_or_else(|| convert_err("INT"))?;
            if n < *min {
                return Err(range_err(true, min.to_string()));
            }
            if n > *max {
                return Err(range_err(false, max.to_string()));
            }
            Ok(())
        }
        InputKind::Float { min, max, .. } => {
            let f = float_value(v).ok_or_else(|| convert_err("FLOAT"))?;
            if f < *min {
                return Err(range_err(true, min.to_string()));
            }
            if f > *max {
                return Err(range_err(false, max.to_string()));
            }
            Ok(())
        }
        InputKind::Text { .. } => match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
            _ => Err(convert_err("STRING")),
        },
        // ComfyUI takes Python's `bool()` of any literal.
        InputKind::Bool { .. } => match v {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
            _ => Err(convert_err("BOOLEAN")),
        },
        InputKind::Combo(choices) => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            if combo_choice(name, &s, choices).is_some() || (super::loras::named_when_compiled(name) && !s.is_empty()) {
                Ok(())
            } else {
                Err(error_obj(
                    "value_not_in_list",
                    "Value not in list",
                    &format!("{name}: '{}' not in {}", py_str(v), py_list(choices)),
                    extra(),
                ))
            }
        }
    }
}

/// An integer input's value (numbers, integral floats and numeric strings, as ComfyUI's `int()`).
pub fn int_value(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.trunc() as i128)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A float input's value.
pub fn float_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// A switch input's value, as Python's `bool()` reads it (0, "" and false are off).
pub fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => Some(!s.is_empty()),
        _ => None,
    }
}

/// The type name a widget input has, for link type checks.
pub(super) fn widget_type(kind: &InputKind) -> &'static str {
    match kind {
        InputKind::Link(ty) => ty,
        InputKind::Int { .. } => "INT",
        InputKind::Float { .. } => "FLOAT",
        InputKind::Text { .. } => "STRING",
        InputKind::Combo(_) => "COMBO",
        InputKind::Bool { .. } => "BOOLEAN",
    }
}

/// A text input of a checked node (a number or flag as its text; absent: empty).
pub(super) fn text(node: &Node, input: &str) -> String {
    match node.inputs.get(input) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A checked graph's integer as a wire integer (the graph checks bound them well inside).
pub(super) fn wire(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The resize a scale node asks for, as the kinds' `resize` takes it (its inputs checked
/// against the node's spec already; the kind checks the size it makes).
pub(super) fn resize_request(node: &Node) -> ResizeRequest {
    let int = |input: &str| node.inputs.get(input).and_then(int_value).map(wire);
    let float = |input: &str| node.inputs.get(input).and_then(float_value);
    let method = Some(text(node, "upscale_method"));
    match node.class_type.as_str() {
        "ImageScale" => ResizeRequest {
            method,
            width: int("width"),
            height: int("height"),
            crop: Some(text(node, "crop")),
            ..Default::default()
        },
        "ImageScaleBy" => ResizeRequest { method, scale_by: float("scale_by"), ..Default::default() },
        _ => ResizeRequest {
            method,
            megapixels: float("megapixels"),
            resolution_steps: int("resolution_steps"),
            ..Default::default()
        },
    }
}

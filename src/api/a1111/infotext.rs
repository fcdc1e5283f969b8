//! A picture's parameters text as A1111 reads it: PNG Info's fields, and a generation answer's
//! `extra_generation_params`, both read from the text the picture carries (one writer,
//! `pipelines::diffusion::output`; one reader, here).

use serde_json::{Map, Value, json};

/// The keys A1111's `create_infotext` writes from the job itself; every other key of a text
/// came from its `extra_generation_params` (the hires fix's, `Denoising strength`).
const OWN_KEYS: [&str; 10] =
    ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "RNG", "Version"];

/// The `extra_generation_params` keys A1111 keeps as numbers; the rest are its strings.
const NUMBER_KEYS: [&str; 5] =
    ["Denoising strength", "Hires upscale", "Hires steps", "Hires CFG Scale", "Refiner switch at"];

/// A generation answer's `extra_generation_params`, read from its first picture's text: the
/// keys A1111 adds beyond its own, numbers as numbers.
pub fn extra_generation_params(text: &str) -> Map<String, Value> {
    let last = text.trim().lines().last().unwrap_or_default();
    let mut out = Map::new();
    for (key, value) in pairs(last) {
        if OWN_KEYS.contains(&key.as_str()) {
            continue;
        }
        let number =
            NUMBER_KEYS.contains(&key.as_str()).then(|| serde_json::from_str::<serde_json::Number>(&value).ok());
        out.insert(key, number.flatten().map_or_else(|| Value::from(value), Value::Number));
    }
    out
}

/// A parameters text read as A1111's `parse_generation_parameters` reads it: the prompt's
/// lines, the `Negative prompt:` ones, and the last line's `Key: value` pairs (a quoted value
/// unquoted, a `W x H` size as `Key-1` and `Key-2`), every value a string.
pub fn parsed(text: &str) -> Map<String, Value> {
    let mut lines: Vec<&str> = text.trim().lines().collect();
    let last = lines.pop().unwrap_or_default();
    let pairs = pairs(last);
    if pairs.len() < 3 {
        lines.push(last);
    }
    let (mut prompt, mut negative, mut in_negative) = (Vec::new(), Vec::new(), false);
    for line in lines {
        let line = line.trim();
        match line.strip_prefix("Negative prompt:") {
            Some(rest) => {
                in_negative = true;
                negative.push(rest.trim());
            }
            None if in_negative => negative.push(line),
            None => prompt.push(line),
        }
    }
    let mut out = Map::new();
    out.insert("Prompt".into(), json!(prompt.join("\n")));
    out.insert("Negative prompt".into(), json!(negative.join("\n")));
    for (key, value) in pairs {
        match value.split_once('x').map(|(w, h)| (w.trim(), h.trim())) {
            Some((w, h)) if !w.is_empty() && w.chars().chain(h.chars()).all(|c| c.is_ascii_digit()) => {
                out.insert(format!("{key}-1"), json!(w));
                out.insert(format!("{key}-2"), json!(h));
            }
            _ => {
                out.insert(key, json!(value));
            }
        }
    }
    out
}

/// `parameters` with its hires keys also as txt2img's fields, when it has a hires fix: as A1111's
/// PNG Info sets them, "Denoising strength" and "Hires upscale", "Hires resize" or "Hires
/// upscaler"; its checkpoint, sampler and schedule "Use same …" unless the second pass had its own.
pub fn with_hires_fields(mut parameters: Map<String, Value>) -> Map<String, Value> {
    let text = |key: &str| parameters.get(key).and_then(Value::as_str).map(str::to_string);
    let number = |key: &str| text(key).and_then(|v| v.parse::<f64>().ok()).map(Value::from);
    let whole = |key: &str| text(key).and_then(|v| v.parse::<i64>().ok());
    let resized = parameters.contains_key("Hires resize-1");
    let hires = ["Hires upscale", "Hires upscaler"].iter().any(|k| parameters.contains_key(*k)) || resized;
    if !(hires && parameters.contains_key("Denoising strength")) {
        return parameters;
    }
    let fields = [
        ("enable_hr", Some(json!(true))),
        ("denoising_strength", number("Denoising strength")),
        ("hr_scale", number("Hires upscale").or(Some(json!(2.0)))),
        ("hr_resize_x", Some(json!(whole("Hires resize-1").unwrap_or(0)))),
        ("hr_resize_y", Some(json!(whole("Hires resize-2").unwrap_or(0)))),
        ("hr_upscaler", text("Hires upscaler").map(Value::from)),
        ("hr_second_pass_steps", Some(json!(whole("Hires steps").unwrap_or(0)))),
        ("hr_checkpoint_name", Some(json!(text("Hires checkpoint").unwrap_or_else(|| "Use same checkpoint".into())))),
        ("hr_sampler_name", Some(json!(text("Hires sampler").unwrap_or_else(|| "Use same sampler".into())))),
        ("hr_scheduler", Some(json!(text("Hires schedule type").unwrap_or_else(|| "Use same scheduler".into())))),
        ("hr_prompt", Some(json!(text("Hires prompt").unwrap_or_default()))),
        ("hr_negative_prompt", Some(json!(text("Hires negative prompt").unwrap_or_default()))),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            parameters.insert(field.to_string(), value);
        }
    }
    parameters
}

/// `parameters` with its refiner keys also as the request's fields, when it has a refiner, as
/// A1111's PNG Info pastes them: `Refiner` as `refiner_checkpoint` (its title, which the request
/// takes back), `Refiner switch at` as `refiner_switch_at`.
pub fn with_refiner_fields(mut parameters: Map<String, Value>) -> Map<String, Value> {
    let Some(refiner) = parameters.get("Refiner").cloned() else { return parameters };
    let at = parameters.get("Refiner switch at").and_then(Value::as_str).and_then(|v| v.parse::<f64>().ok());
    parameters.insert("refiner_checkpoint".into(), refiner);
    parameters.insert("refiner_switch_at".into(), at.map_or(Value::Null, Value::from));
    parameters
}

/// The `Key: value` pairs of a parameters text's last line; a value in JSON's quotes may hold
/// commas, colons and escaped quotes (A1111's `quote`).
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match closing_quote(quoted) {
                Some(end) => {
                    let value = serde_json::from_str(&after[..end + 2]).unwrap_or_else(|_| quoted[..end].to_string());
                    (value, quoted[end + 1..].trim_start_matches(','))
                }
                None => (quoted.to_string(), ""),
            },
            None => match after.split_once(',') {
                Some((v, n)) => (v.trim().to_string(), n),
                None => (after.trim().to_string(), ""),
            },
        };
        if key.is_empty() || !key.chars().next().is_some_and(char::is_alphanumeric) {
            break;
        }
        out.push((key.to_string(), value));
        rest = next.trim();
    }
    out
}

/// Where the quote that ends a quoted value is in `text` (after its opening one): the first not
/// escaped by a backslash.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{extra_generation_params, parsed, with_hires_fields};
    use serde_json::json;

    #[test]
    fn a_parameters_text_reads_into_a1111s_fields() {
        let text = "a red door\non a hill\nNegative prompt: blur\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, \
                    CFG scale: 6.5, Seed: 1234, Size: 96x64, Model: \"tiny, sd\", RNG: CPU, Version: reelbox 0.1.0";
        let p = parsed(text);
        assert_eq!(p["Prompt"], json!("a red door\non a hill"));
        assert_eq!(p["Negative prompt"], json!("blur"));
        assert_eq!(
            (&p["Steps"], &p["Sampler"], &p["Schedule type"]),
            (&json!("20"), &json!("DPM++ 2M"), &json!("Karras"))
        );
        assert_eq!((&p["Size-1"], &p["Size-2"], &p["Seed"]), (&json!("96"), &json!("64"), &json!("1234")));
        assert_eq!(p["Model"], json!("tiny, sd"), "a quoted value keeps its comma");
        assert_eq!(p["Version"], json!("reelbox 0.1.0"));
        // A quoted value is JSON's: its escaped quotes are the value's.
        let p = parsed("a\nSteps: 2, Sampler: Euler, Hires prompt: \"a \\\"red\\\", door\", Hires upscale: 2");
        assert_eq!((&p["Hires prompt"], &p["Hires upscale"]), (&json!("a \"red\", door"), &json!("2")));
        // A hires fix's keys also read as txt2img's fields.
        let p = with_hires_fields(parsed(
            "a\nSteps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, Model: m, \
             Denoising strength: 0.6, Hires checkpoint: tiny-sd-2, Hires sampler: DDIM, Hires upscale: 1.5, \
             Hires steps: 3, Hires upscaler: Latent",
        ));
        let fields = ["enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps", "denoising_strength"];
        let got: Vec<_> = fields.iter().map(|f| p[*f].clone()).collect();
        assert_eq!(got, [json!(true), json!(1.5), json!("Latent"), json!(3), json!(0.6)]);
        assert_eq!((&p["hr_sampler_name"], &p["hr_scheduler"]), (&json!("DDIM"), &json!("Use same scheduler")));
        assert_eq!(p["hr_checkpoint_name"], json!("tiny-sd-2"));
        assert!(with_hires_fields(parsed("a\nSteps: 4, Sampler: Euler, Seed: 5")).get("enable_hr").is_none());
        // A text with no settings line is all prompt.
        assert_eq!(parsed("just words")["Prompt"], json!("just words"));
    }

    #[test]
    fn the_extra_generation_params_are_the_keys_a1111_adds_beyond_its_own() {
        let text = "a\nSteps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, Model: m, \
                    Denoising strength: 0.6, RNG: CPU, Hires sampler: DDIM, Hires prompt: \"b, c\", Hires upscale: 1.5, \
                    Hires steps: 3, Hires upscaler: Latent, Version: reelbox 0.1.0";
        let extra = extra_generation_params(text);
        let mut keys: Vec<&str> = extra.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let want =
            ["Denoising strength", "Hires prompt", "Hires sampler", "Hires steps", "Hires upscale", "Hires upscaler"];
        assert_eq!(keys, want);
        assert_eq!((&extra["Denoising strength"], &extra["Hires upscale"]), (&json!(0.6), &json!(1.5)));
        assert_eq!((&extra["Hires steps"], &extra["Hires prompt"]), (&json!(3), &json!("b, c")));
        let plain = extra_generation_params("a\nSteps: 4, Sampler: Euler, Seed: 5, Size: 64x64, Model: m, RNG: CPU");
        assert!(plain.is_empty(), "{plain:?}");
        assert!(extra_generation_params("").is_empty());
    }
}

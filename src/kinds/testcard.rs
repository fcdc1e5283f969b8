//! `testcard`: a diagnostic job like ffmpeg's test sources. It sleeps per step, reports
//! progress, honours cancellation and writes a PNG card and a JSON summary, so every
//! layer can be exercised without models.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use serde_json::json;

use super::{JobKind, ParamError, StageError, StageRun, ValidateCtx, int_param, reject_unknown};

/// The `testcard` job kind.
pub struct Testcard;

const STAGES: [&str; 2] = ["card", "summary"];
/// Longest single sleep, so cancellation is seen well within a second.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

impl JobKind for Testcard {
    fn name(&self) -> &'static str {
        "testcard"
    }

    fn validate(&self, params: serde_json::Value, _ctx: &ValidateCtx) -> Result<serde_json::Value, ParamError> {
        reject_unknown(&params, &["steps", "step_ms", "width", "height", "fail", "vram_mib", "model"])?;
        let steps = int_param(&params, "steps", 5, 1..=10_000)?;
        let step_ms = int_param(&params, "step_ms", 100, 0..=60_000)?;
        let width = int_param(&params, "width", 320, 16..=4096)?;
        let height = int_param(&params, "height", 180, 16..=4096)?;
        let fail = params.get("fail").and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(f) = &fail
            && !["fatal", "retriable"].contains(&f.as_str())
        {
            return Err(ParamError::new("fail", "must be \"fatal\" or \"retriable\""));
        }
        // Placement test knobs: pretend to need GPU memory and to load a model.
        let vram_mib = int_param(&params, "vram_mib", 0, 0..=1 << 20)?;
        let model = super::str_param(&params, "model")?.map(str::to_owned);
        Ok(json!({
            "steps": steps, "step_ms": step_ms, "width": width, "height": height, "fail": fail,
            "vram_mib": vram_mib, "model": model,
        }))
    }

    fn needs_runtime(&self) -> bool {
        false
    }

    fn declared_seconds(&self, params: &serde_json::Value) -> Option<f64> {
        let n = |f: &str| params.get(f).and_then(|v| v.as_u64()).unwrap_or(0) as f64;
        Some(n("steps") * n("step_ms") / 1000.0)
    }

    fn vram_mib(&self, params: &serde_json::Value, _config: &crate::config::Config) -> u64 {
        params.get("vram_mib").and_then(|v| v.as_u64()).unwrap_or(0)
    }

    fn models(&self, params: &serde_json::Value) -> Vec<String> {
        params.get("model").and_then(|v| v.as_str()).map(|m| vec![m.to_string()]).unwrap_or_default()
    }

    fn stages(&self, _params: &serde_json::Value) -> Vec<String> {
        STAGES.iter().map(|s| s.to_string()).collect()
    }

    fn run_stage(&self, stage: &str, run: &StageRun) -> Result<(), StageError> {
        let p = run.params;
        let get = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        match stage {
            "card" => {
                let (steps, step_ms) = (get("steps"), get("step_ms"));
                for step in 1..=steps {
                    let deadline = Instant::now() + Duration::from_millis(step_ms);
                    loop {
                        crate::pipelines::check_cancel(run.cancel)?;
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::sleep(left.min(SLEEP_SLICE));
                    }
                    run.sink.progress(step, steps, None);
                }
                match p.get("fail").and_then(|v| v.as_str()) {
                    Some("fatal") => return Err(StageError::fatal("testcard asked to fail")),
                    Some("retriable") => return Err(StageError::retriable("testcard asked to fail once more")),
                    _ => {}
                }
                let card = draw_card(get("width") as u32, get("height") as u32, &run.job_id.to_string());
                let mut png = Vec::new();
                card.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|e| StageError::context("cannot encode PNG", e))?;
                run.sink.put_artifact("testcard.png", "image/png", &png)?;
                Ok(())
            }
            "summary" => {
                let card = run.sink.stage_artifacts("card");
                let summary = json!({
                    "job": run.job_id.to_string(),
                    "device": run.device.name(),
                    "steps": get("steps"),
                    "width": get("width"),
                    "height": get("height"),
                    "card_sha256": card.first().map(|a| a.sha256.clone()),
                });
                let bytes =
                    serde_json::to_vec_pretty(&summary).map_err(|e| StageError::context("cannot encode summary", e))?;
                run.sink.put_artifact("summary.json", "application/json", &bytes)?;
                Ok(())
            }
            other => Err(StageError::fatal(format!("testcard has no stage {other:?}"))),
        }
    }
}

/// SMPTE-like colour bars with the job id and the time written across the middle.
pub fn draw_card(width: u32, height: u32, label: &str) -> RgbImage {
    const BARS: [[u8; 3]; 7] =
        [[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]];
    let mut img = RgbImage::from_fn(width, height, |x, _| {
        let bar = (x as usize * BARS.len() / width.max(1) as usize).min(BARS.len() - 1);
        Rgb(BARS[bar])
    });
    let stamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    let scale = (width / 220).max(1);
    let band_h = 2 * (7 * scale + 4 * scale);
    let band_y = height.saturating_sub(band_h) / 2;
    for y in band_y..(band_y + band_h).min(height) {
        for x in 0..width {
            img.put_pixel(x, y, Rgb([16, 16, 16]));
        }
    }
    draw_text(&mut img, 4 * scale, band_y + 2 * scale, scale, &label.to_uppercase());
    draw_text(&mut img, 4 * scale, band_y + 11 * scale + 2 * scale, scale, &stamp);
    img
}

/// Draws text in a 5×7 bitmap font (digits, capitals and `:-. `), clipped to the image.
fn draw_text(img: &mut RgbImage, x0: u32, y0: u32, scale: u32, text: &str) {
    for (i, ch) in text.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        let gx = x0 + i as u32 * 6 * scale;
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5u32 {
                if bits & (0b10000 >> c) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (gx + c * scale + dx, y0 + r as u32 * scale + dy);
                        if x < img.width() && y < img.height() {
                            img.put_pixel(x, y, Rgb([240, 240, 240]));
                        }
                    }
                }
            }
        }
    }
}

fn glyph(ch: char) -> Option<[u8; 7]> {
    Some(match ch {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        _ => return None,
    })
}

//! `testcard`: a diagnostic job like ffmpeg's test sources. It sleeps per step, reports
//! progress, honours cancellation and writes a PNG card and a JSON summary, so every
//! layer can be exercised without models.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fields::{int_field, int_in, reject_unknown, string_field, u32_in};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::kinds::StageName;

/// The `testcard` job kind.
pub struct Testcard;

const STAGES: [StageName; 2] = [StageName::Card, StageName::Summary];
/// Rough milliseconds of the card's PNG encoding and of the summary's write, beside the
/// card's declared `steps × step_ms`: only their ratio to it matters.
const CARD_ENCODE_MS: f64 = 20.0;
const SUMMARY_MS: f64 = 5.0;
const KNOWN: [&str; 7] = ["steps", "step_ms", "width", "height", "fail", "vram_mib", "model"];
/// Longest single sleep, so cancellation is seen well within a second.
const SLEEP_SLICE: Duration = Duration::from_millis(50);

/// How a testcard is asked to fail after its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// A failure that will not pass on retry.
    Fatal,
    /// A failure worth another attempt.
    Retriable,
}

/// `testcard` parameters as a request gives them (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestcardRequest {
    pub steps: Option<i64>,
    pub step_ms: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// `fatal` or `retriable`; anything but a string reads as unset.
    pub fail: Option<String>,
    /// Placement test knob: pretend to need this much GPU memory.
    pub vram_mib: Option<i64>,
    /// Placement test knob: pretend to load this model.
    pub model: Option<String>,
}

/// Validated `testcard` parameters, as stored with the job. Every field has a default so
/// jobs stored before a field existed still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TestcardParams {
    pub steps: u64,
    pub step_ms: u64,
    pub width: u32,
    pub height: u32,
    pub fail: Option<Failure>,
    pub vram_mib: u64,
    pub model: Option<String>,
}

impl TestcardRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &KNOWN)?;
        Ok(Self {
            steps: int_field(params, "steps")?,
            step_ms: int_field(params, "step_ms")?,
            width: int_field(params, "width")?,
            height: int_field(params, "height")?,
            fail: params.get("fail").and_then(|v| v.as_str()).map(str::to_owned),
            vram_mib: int_field(params, "vram_mib")?,
            model: string_field(params, "model")?,
        })
    }

    /// Fills the defaults and checks the ranges.
    pub fn resolve(self) -> Result<TestcardParams, ParamError> {
        let int = |field: &str, v: Option<i64>, default: i64, range| int_in(field, v.unwrap_or(default), range);
        let steps = int("steps", self.steps, 5, 1..=10_000)?;
        let step_ms = int("step_ms", self.step_ms, 100, 0..=60_000)?;
        let width = u32_in("width", self.width.unwrap_or(320), 16..=4096)?;
        let height = u32_in("height", self.height.unwrap_or(180), 16..=4096)?;
        let fail = match self.fail.as_deref() {
            None => None,
            Some("fatal") => Some(Failure::Fatal),
            Some("retriable") => Some(Failure::Retriable),
            Some(_) => return Err(ParamError::new("fail", "must be \"fatal\" or \"retriable\"")),
        };
        let vram_mib = int("vram_mib", self.vram_mib, 0, 0..=1 << 20)?;
        // The ranges above are non-negative: `unsigned_abs` is the value itself.
        Ok(TestcardParams {
            steps: steps.unsigned_abs(),
            step_ms: step_ms.unsigned_abs(),
            width,
            height,
            fail,
            vram_mib: vram_mib.unsigned_abs(),
            model: self.model,
        })
    }
}

impl TypedKind for Testcard {
    type Params = TestcardParams;
    const NAME: &'static str = "testcard";
    const FIRST_STAGE: StageName = StageName::Card;

    fn validate(&self, params: &serde_json::Value, _ctx: &ValidateCtx) -> Result<TestcardParams, ParamError> {
        TestcardRequest::from_json(params)?.resolve()
    }

    fn needs_runtime(&self, _p: &TestcardParams) -> bool {
        false
    }

    fn declared_seconds(&self, p: &TestcardParams) -> Option<f64> {
        Some(p.steps as f64 * p.step_ms as f64 / 1000.0)
    }

    fn vram_mib(&self, p: &TestcardParams, _config: &crate::config::Config) -> u64 {
        p.vram_mib
    }

    fn models(&self, p: &TestcardParams) -> Vec<String> {
        p.model.iter().cloned().collect()
    }

    fn stages(&self, _p: &TestcardParams) -> Vec<StageName> {
        STAGES.to_vec()
    }

    /// The card's steps are the job's time; the summary is a file write. Alike weights made
    /// a 60-step card at 8 % read "eta 1m53s" in top with under a minute left.
    fn stage_weights(&self, p: &TestcardParams, stages: &[StageName]) -> Vec<f64> {
        let cost = |stage: &StageName| match stage {
            StageName::Card => p.steps as f64 * p.step_ms as f64 + CARD_ENCODE_MS,
            _ => SUMMARY_MS,
        };
        let total: f64 = stages.iter().map(cost).sum();
        stages.iter().map(|s| cost(s) / total).collect()
    }

    fn run_stage(&self, stage: StageName, p: &TestcardParams, run: &StageRun) -> Result<(), StageError> {
        match stage {
            StageName::Card => {
                let (steps, step_ms) = (p.steps, p.step_ms);
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
                match p.fail {
                    Some(Failure::Fatal) => return Err(StageError::fatal("testcard asked to fail")),
                    Some(Failure::Retriable) => {
                        return Err(StageError::retriable("testcard asked to fail once more"));
                    }
                    None => {}
                }
                let card = draw_card(p.width, p.height, &run.job_id.to_string());
                let mut png = Vec::new();
                card.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
                    .map_err(|e| StageError::context("cannot encode PNG", e))?;
                run.sink.put_artifact("testcard.png", "image/png", &png)?;
                Ok(())
            }
            StageName::Summary => {
                let card = run.sink.stage_artifacts(StageName::Card);
                let summary = json!({
                    "job": run.job_id.to_string(),
                    "device": run.device.name(),
                    "steps": p.steps,
                    "width": p.width,
                    "height": p.height,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::kinds::JobKind;

    #[test]
    fn validated_params_keep_the_stored_form_and_old_stores_still_read() {
        let config = Config::default();
        let ctx = ValidateCtx { config: &config, artifacts: &crate::kinds::inputs::tests::NoArtifacts };
        let stored = JobKind::validate(&Testcard, json!({"steps": "2", "fail": "fatal"}), &ctx).expect("valid");
        assert_eq!(
            stored,
            json!({"steps": 2, "step_ms": 100, "width": 320, "height": 180, "fail": "fatal", "vram_mib": 0, "model": null})
        );
        // A job stored before `fail`, `vram_mib` and `model` existed (tests/it/frozen_db.rs).
        let old = json!({"steps": 1, "step_ms": 0, "width": 64, "height": 36});
        assert_eq!(JobKind::declared_seconds(&Testcard, &old), Some(0.0));
        assert_eq!(JobKind::stages(&Testcard, &old), ["card", "summary"]);
        let err = JobKind::validate(&Testcard, json!({"steps": 0}), &ctx).expect_err("range");
        assert_eq!((err.field.as_str(), err.message.as_str()), ("steps", "must be between 1 and 10000, got 0"));
        let err = JobKind::validate(&Testcard, json!({"fail": "maybe"}), &ctx).expect_err("fail");
        assert_eq!(err.field, "fail");
    }

    #[test]
    fn the_cards_steps_weigh_nearly_the_whole_job() {
        let stages = [StageName::Card, StageName::Summary];
        let w = JobKind::stage_weights(
            &Testcard,
            &json!({"steps": 60, "step_ms": 1000, "width": 64, "height": 36}),
            &stages,
        );
        assert!(w[0] > 0.99 && (w[0] + w[1] - 1.0).abs() < 1e-9, "{w:?}");
        // No steps to wait for: the two stages still add up to the whole job.
        let w =
            JobKind::stage_weights(&Testcard, &json!({"steps": 1, "step_ms": 0, "width": 64, "height": 36}), &stages);
        assert!(w[0] > w[1] && (w[0] + w[1] - 1.0).abs() < 1e-9, "{w:?}");
    }
}

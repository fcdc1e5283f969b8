//! `face_detect`: finds the face in a portrait with the installed face detector, so a
//! profile editor (the web studio's) can start from the detected box instead of a guess.
//!
//! Params ([`FaceDetectRequest`] → [`FaceDetectParams`]): `input` (artifact id of an image),
//! `model` (installed face detector, default the `face` kind's default). Writes `face.json`:
//! `{"face_box": [x, y, w, h] | null, "width": W, "height": H, "model": NAME}`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::fields::{artifact_param, reject_unknown, string_field};
use super::inputs::{Takes, input_file, installed_model, require_input, stage_model_file};
use super::{ParamError, StageError, StageRun, TypedKind, ValidateCtx};
use crate::config::Config;
use crate::kinds::StageName;
use crate::media::visual::{Visual, open_visual};
use crate::models::ModelKind;
use crate::pipelines::lipsync::{FaceDetector, OnnxFaceDetector};

/// The `face_detect` job kind.
pub struct FaceDetect;

const STAGE: StageName = StageName::Detect;
const KNOWN: [&str; 2] = ["input", "model"];

/// `face_detect` parameters as a request gives them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceDetectRequest {
    /// Artifact id of the portrait.
    pub input: Option<String>,
    pub model: Option<String>,
}

/// Validated `face_detect` parameters, as stored with the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaceDetectParams {
    pub input: String,
    pub model: String,
}

impl FaceDetectRequest {
    /// Reads request JSON; errors name the field.
    pub fn from_json(params: &serde_json::Value) -> Result<Self, ParamError> {
        reject_unknown(params, &KNOWN)?;
        Ok(Self {
            input: artifact_param(params, "input")?.map(|u| u.to_string()),
            model: string_field(params, "model")?,
        })
    }

    /// Checks the input and that a detector is installed.
    pub fn resolve(self, config: &Config) -> Result<FaceDetectParams, ParamError> {
        let input = self.input.ok_or_else(|| ParamError::new("input", "required"))?;
        let model = installed_model("model", self.model.as_deref(), ModelKind::Face, config)?;
        Ok(FaceDetectParams { input, model })
    }
}

impl TypedKind for FaceDetect {
    type Params = FaceDetectParams;
    const NAME: &'static str = "face_detect";
    const FIRST_STAGE: StageName = STAGE;

    fn vram_mib(&self, p: &FaceDetectParams, config: &Config) -> u64 {
        super::memory::single_model_mib(config, &p.model)
    }

    fn models(&self, p: &FaceDetectParams) -> Vec<String> {
        vec![p.model.clone()]
    }

    fn validate(&self, params: &serde_json::Value, ctx: &ValidateCtx) -> Result<FaceDetectParams, ParamError> {
        let p = FaceDetectRequest::from_json(params)?.resolve(ctx.config)?;
        require_input(ctx, "input", &p.input, Takes::Picture)?;
        Ok(p)
    }

    fn stages(&self, _p: &FaceDetectParams) -> Vec<StageName> {
        vec![STAGE]
    }

    fn run_stage(&self, stage: StageName, p: &FaceDetectParams, run: &StageRun) -> Result<(), StageError> {
        if stage != STAGE {
            return Err(StageError::fatal(format!("face_detect has no stage {stage:?}")));
        }
        let input = input_file(run, "input", &p.input)?;
        let Visual::Image(img) = open_visual(&input.path, &input.label, Some(&input.artifact.media_type))? else {
            return Err(StageError::fatal(format!("{} is a video; a portrait must be an image", input.label)));
        };
        let detector = OnnxFaceDetector::load(
            run.engine,
            run.device,
            &stage_model_file(run.config, "model", ModelKind::Face, &p.model)?,
        )?;
        let found = detector.detect(&img)?;
        let face_box = found.map(|b| [b.x, b.y, b.w, b.h]);
        let message = match face_box {
            Some(b) => format!("face at {b:?} in the {}×{} portrait", img.width(), img.height()),
            None => format!("no face found in {} with {}", input.label, p.model),
        };
        run.sink.log("info", &message);
        let out = json!({ "face_box": face_box, "width": img.width(), "height": img.height(), "model": p.model });
        let bytes = serde_json::to_vec_pretty(&out).map_err(|e| StageError::context("cannot encode face.json", e))?;
        run.sink.put_artifact("face.json", "application/json", &bytes)?;
        Ok(())
    }
}

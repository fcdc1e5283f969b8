//! `resize`: the typed parameter of the `image` and `upscale` kinds that resizes pictures
//! without a model, as ComfyUI's "Upscale Image" nodes do: to a size (ImageScale: `width`,
//! `height`, 0 keeping the picture's shape, `crop` `center` cutting it to the new shape
//! first), by a factor (ImageScaleBy: `scale_by`) or to a pixel count (ImageScaleToTotalPixels:
//! `megapixels`, sides a multiple of `resolution_steps`), by a `method`
//! (`media::resize::Method`). [`ResizeRequest`] is what clients send, [`Resize`] the stored
//! form; the sizes are worked out as ComfyUI rounds them (Python's `round`, halves to even),
//! so a workflow gets the picture size it would get there.

use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields::{float_field, float_in, int_field, reject_unknown, string_field, u32_in};
use super::{ParamError, StageError, StageRun};
use crate::config::Config;
use crate::media::resize::{Method, Region, center_crop, resize};

/// The method a request naming none resizes by: Lanczos keeps the most detail.
const DEFAULT_METHOD: Method = Method::Lanczos;
const KNOWN: [&str; 7] = ["method", "width", "height", "crop", "scale_by", "megapixels", "resolution_steps"];
/// ComfyUI's ranges of `scale_by`, `megapixels` and `resolution_steps`.
const SCALE_BY: std::ops::RangeInclusive<f64> = 0.01..=8.0;
const MEGAPIXELS: std::ops::RangeInclusive<f64> = 0.01..=16.0;
const RESOLUTION_STEPS: std::ops::RangeInclusive<i64> = 1..=256;

/// A `resize` as a request gives it: a `method` and one target, a size (`width`, `height`,
/// `crop`), `scale_by`, or `megapixels` (with `resolution_steps`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_by: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub megapixels: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_steps: Option<i64>,
}

/// A validated resize, as a job stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub method: Method,
    #[serde(flatten)]
    pub to: ResizeTo,
}

/// What size a resize makes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResizeTo {
    /// `width`×`height`; a side of 0 follows the picture's shape (both 0: unchanged).
    Size { width: u32, height: u32, crop: Crop },
    /// Each side times `scale_by`.
    By { scale_by: f64 },
    /// About `megapixels` (of 2^20 pixels), the shape kept, sides a multiple of `resolution_steps`.
    Pixels { megapixels: f64, resolution_steps: u32 },
}

/// Whether a resize to another shape cuts the picture to that shape first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crop {
    /// Stretch the whole picture.
    Disabled,
    /// Cut equal strips off both ends of the side that is too long.
    Center,
}

/// `field` of the request's `resize`, as errors name it.
fn sub(field: &str) -> String {
    format!("resize.{field}")
}

/// A reader's error on the `resize` object named as `resize.FIELD`.
fn under(e: ParamError) -> ParamError {
    ParamError { field: sub(&e.field), ..e }
}

/// Python's `round()`: to the nearest integer, halves to the even one (`round(22.5)` is 22).
fn py_round(v: f64) -> f64 {
    v.round_ties_even()
}

impl ResizeRequest {
    /// Reads the `field` object of request JSON (`None` when absent); errors name `resize.FIELD`.
    pub fn from_json(params: &Value, field: &str) -> Result<Option<Self>, ParamError> {
        let v = match params.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(ParamError::new(
                    field,
                    "must be an object: {\"method\", and width/height, scale_by or megapixels}",
                ));
            }
        };
        reject_unknown(v, &KNOWN).map_err(under)?;
        Ok(Some(Self {
            method: string_field(v, "method").map_err(under)?,
            width: int_field(v, "width").map_err(under)?,
            height: int_field(v, "height").map_err(under)?,
            crop: string_field(v, "crop").map_err(under)?,
            scale_by: float_field(v, "scale_by").map_err(under)?,
            megapixels: float_field(v, "megapixels").map_err(under)?,
            resolution_steps: int_field(v, "resolution_steps").map_err(under)?,
        }))
    }

    /// Checks the method and the one target against ComfyUI's ranges and the box's largest
    /// picture side, and fills the defaults: a picture's resize.
    pub fn resolve(self, config: &Config) -> Result<Resize, ParamError> {
        self.resolve_with(config, &Method::ALL, DEFAULT_METHOD)
    }

    /// [`Self::resolve`] for a resize of a sampler's latent (a second pass from the latent):
    /// the methods of ComfyUI's LatentUpscale, its first, `nearest-exact`, the default.
    pub fn resolve_latent(self, config: &Config) -> Result<Resize, ParamError> {
        self.resolve_with(config, &Method::LATENT, Method::NearestExact)
    }

    fn resolve_with(self, config: &Config, takes: &[Method], default: Method) -> Result<Resize, ParamError> {
        let method = match &self.method {
            None => default,
            Some(m) => {
                let known = m
                    .parse()
                    .map_err(|e: crate::media::resize::UnknownMethod| ParamError::new(sub("method"), e.to_string()))?;
                if !takes.contains(&known) {
                    let names: Vec<_> = takes.iter().map(|t| t.as_str()).collect();
                    let what = if takes == Method::LATENT { "a latent" } else { "a picture" };
                    return Err(ParamError::new(
                        sub("method"),
                        format!("{m:?} does not scale {what}; it takes {}", names.join(", ")),
                    ));
                }
                known
            }
        };
        let sized = self.width.is_some() || self.height.is_some();
        let targets =
            [(sized, "width"), (self.scale_by.is_some(), "scale_by"), (self.megapixels.is_some(), "megapixels")];
        let mut given = targets.iter().filter(|(g, _)| *g).map(|(_, f)| *f);
        let first = given.next();
        if let Some(second) = given.next() {
            return Err(ParamError::new(sub(second), "give one of width/height, scale_by and megapixels"));
        }
        if self.crop.is_some() && !sized {
            return Err(ParamError::new(sub("crop"), "only applies with width/height"));
        }
        if self.resolution_steps.is_some() && self.megapixels.is_none() {
            return Err(ParamError::new(sub("resolution_steps"), "only applies with megapixels"));
        }
        let to = match first {
            None => return Err(ParamError::new("resize", "give width/height, scale_by or megapixels")),
            Some("width") => {
                let max_side = i64::from(config.limits.max_image_side);
                let side = |field: &str, v: Option<i64>| u32_in(&sub(field), v.unwrap_or(0), 0..=max_side);
                let crop = match self.crop.as_deref() {
                    None | Some("disabled") => Crop::Disabled,
                    Some("center") => Crop::Center,
                    Some(other) => {
                        return Err(ParamError::new(sub("crop"), format!("{other:?} is not disabled or center")));
                    }
                };
                ResizeTo::Size { width: side("width", self.width)?, height: side("height", self.height)?, crop }
            }
            Some("scale_by") => {
                ResizeTo::By { scale_by: float_in(&sub("scale_by"), self.scale_by.unwrap_or(1.0), SCALE_BY)? }
            }
            Some(_) => ResizeTo::Pixels {
                megapixels: float_in(&sub("megapixels"), self.megapixels.unwrap_or(1.0), MEGAPIXELS)?,
                resolution_steps: u32_in(
                    &sub("resolution_steps"),
                    self.resolution_steps.unwrap_or(1),
                    RESOLUTION_STEPS,
                )?,
            },
        };
        Ok(Resize { method, to })
    }
}

impl Resize {
    /// The size a `w`×`h` picture comes out, as ComfyUI's nodes work it out.
    pub fn size_of(&self, w: u32, h: u32) -> (u32, u32) {
        let (wf, hf) = (f64::from(w), f64::from(h));
        // `as` saturates: a size past u32 is refused by the limit check all the same.
        let side = |v: f64| py_round(v) as u32;
        match self.to {
            ResizeTo::Size { width: 0, height: 0, .. } => (w, h),
            ResizeTo::Size { width: 0, height, .. } => (side(wf * f64::from(height) / hf).max(1), height),
            ResizeTo::Size { width, height: 0, .. } => (width, side(hf * f64::from(width) / wf).max(1)),
            ResizeTo::Size { width, height, .. } => (width, height),
            ResizeTo::By { scale_by } => (side(wf * scale_by), side(hf * scale_by)),
            ResizeTo::Pixels { megapixels, resolution_steps } => {
                let scale = (megapixels * 1024.0 * 1024.0 / (wf * hf)).sqrt();
                let steps = f64::from(resolution_steps);
                let stepped = |v: f64| (py_round(v * scale / steps) * steps) as u32;
                (stepped(wf), stepped(hf))
            }
        }
    }

    /// The size in cells of a `w`×`h` latent of `step` pixels a cell, scaled as ComfyUI's
    /// latent nodes scale it: LatentUpscaleBy rounds each side in cells (`round(w · scale_by)`),
    /// a size in pixels is the picture's size cut down to whole cells (LatentUpscale's `// 8`).
    pub fn latent_size_of(&self, w: u32, h: u32, step: u32) -> (u32, u32) {
        match self.to {
            ResizeTo::By { scale_by } => {
                let side = |v: u32| py_round(f64::from(v) * scale_by) as u32;
                (side(w), side(h))
            }
            _ => {
                let (pw, ph) = self.size_of(w * step, h * step);
                (pw / step, ph / step)
            }
        }
    }

    /// The cells of a `w`×`h` latent that are scaled: all, or with `crop: center` the middle
    /// of the new shape (ComfyUI's `common_upscale` crops the latent itself).
    pub fn latent_region_of(&self, w: u32, h: u32, step: u32) -> Region {
        let ResizeTo::Size { crop: Crop::Center, .. } = self.to else {
            return Region { x: 0, y: 0, width: w, height: h };
        };
        let (new_w, new_h) = self.latent_size_of(w, h, step);
        center_crop(w, h, new_w, new_h)
    }

    /// The part of a `w`×`h` picture that is resized: all of it, or with `crop: center` the
    /// middle of the new shape (ComfyUI's rounding of the strips it cuts off).
    pub fn region_of(&self, w: u32, h: u32) -> Region {
        let ResizeTo::Size { crop: Crop::Center, .. } = self.to else {
            return Region { x: 0, y: 0, width: w, height: h };
        };
        let (new_w, new_h) = self.size_of(w, h);
        center_crop(w, h, new_w, new_h)
    }

    /// The input a limit on the result is about, as errors name it (`resize.scale_by`, ...).
    pub(crate) fn field(&self) -> String {
        sub(match self.to {
            ResizeTo::Size { width: 0, .. } => "height",
            ResizeTo::Size { .. } => "width",
            ResizeTo::By { .. } => "scale_by",
            ResizeTo::Pixels { .. } => "megapixels",
        })
    }

    /// Why the resize of a `w`×`h` picture (`label` names it) cannot be made, if it cannot:
    /// a side of no pixels, or past `limits.max_image_side` (the rule pictures made are held
    /// to, `upscale::too_large`).
    pub fn refusal(&self, label: &str, w: u32, h: u32, config: &Config) -> Option<String> {
        let (new_w, new_h) = self.size_of(w, h);
        if new_w == 0 || new_h == 0 {
            return Some(format!("{label} {w}x{h} resized comes out {new_w}x{new_h}, with no pixels"));
        }
        super::upscale::too_large(&format!("{label} {w}x{h} resized"), new_w, new_h, config)
    }

    /// Checks the resize of picture `label`, `w`×`h`, at submission, when its size is known
    /// then (a size given outright is within the limit already); the error names the input
    /// at fault.
    pub fn check(&self, picture: Option<(&str, u32, u32)>, config: &Config) -> Result<(), ParamError> {
        let Some((label, w, h)) = picture else { return Ok(()) };
        match self.refusal(label, w, h, config) {
            Some(why) => Err(ParamError::new(self.field(), why)),
            None => Ok(()),
        }
    }

    /// `img` resized, or why not (the limits of [`Self::refusal`], checked again when the
    /// picture's size was not known at submission).
    pub fn apply(&self, img: &RgbImage, label: &str, config: &Config) -> Result<RgbImage, StageError> {
        let (w, h) = img.dimensions();
        if let Some(why) = self.refusal(label, w, h, config) {
            return Err(StageError::fatal(why));
        }
        let (new_w, new_h) = self.size_of(w, h);
        Ok(resize(img, Some(self.region_of(w, h)), new_w, new_h, self.method))
    }
}

/// Picture `img` stored as PNG artifact `name` of the running stage.
pub(crate) fn store_png(run: &StageRun, img: &RgbImage, name: &str) -> Result<(), StageError> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| StageError::context("cannot encode PNG", e))?;
    run.sink.put_artifact(name, "image/png", &png)?;
    Ok(())
}

/// Each picture `run` finds under `prefix` in `stage` (`image`, `image-2`, ...) resized and
/// stored as `resized`, `resized-2`, ...: the `resize` stage of the kinds that have one.
pub(crate) fn resize_pictures(
    run: &StageRun,
    resize: &Resize,
    stage: crate::kinds::StageName,
    prefix: &str,
) -> Result<(), StageError> {
    let pictures: Vec<_> = run.sink.stage_artifacts(stage).into_iter().filter(|a| a.name.starts_with(prefix)).collect();
    if pictures.is_empty() {
        return Err(StageError::fatal(format!("the {stage} stage left no picture to resize")));
    }
    for (i, picture) in pictures.iter().enumerate() {
        if run.cancel.is_cancelled() {
            return Err(StageError::Canceled);
        }
        let label = format!("picture {}", picture.name);
        let img = crate::media::picture::open(&run.sink.artifact_path(picture))
            .map_err(|e| StageError::context(format!("{label} is not a readable image"), e))?;
        let out = resize.apply(&img, &label, run.config)?;
        store_png(run, &out, &picture.name.replacen(prefix, "resized", 1))?;
        run.sink.progress(i as u64 + 1, pictures.len() as u64, None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resize(v: Value) -> Result<Resize, ParamError> {
        ResizeRequest::from_json(&json!({ "resize": v }), "resize")?.expect("given").resolve(&Config::default())
    }

    fn ok(v: Value) -> Resize {
        resize(v).expect("valid")
    }

    /// Sizes as ComfyUI's nodes give them: `round()` halves to even, a 0 side follows the shape.
    #[test]
    fn sizes_are_comfyuis() {
        assert_eq!(ok(json!({"width": 0, "height": 100})).size_of(48, 40), (120, 100));
        assert_eq!(ok(json!({"width": 100})).size_of(48, 40), (100, 83), "round(40 * 100 / 48) = round(83.33)");
        assert_eq!(ok(json!({"width": 0, "height": 0})).size_of(48, 40), (48, 40));
        assert_eq!(ok(json!({"scale_by": 0.5})).size_of(45, 47), (22, 24), "22.5 → 22, 23.5 → 24");
        assert_eq!(ok(json!({"scale_by": 1.5})).size_of(45, 40), (68, 60));
        assert_eq!(ok(json!({"megapixels": 1.0})).size_of(512, 512), (1024, 1024));
        assert_eq!(ok(json!({"megapixels": 0.25})).size_of(300, 200), (627, 418));
        assert_eq!(ok(json!({"megapixels": 1.0, "resolution_steps": 64})).size_of(640, 480), (1152, 896));
    }

    /// LatentUpscaleBy rounds in latent cells; a size in pixels is cut to whole cells.
    #[test]
    fn a_latents_size_is_comfyuis_latent_nodes() {
        assert_eq!(ok(json!({"scale_by": 1.3})).latent_size_of(9, 64, 8), (12, 83), "round(11.7), round(83.2)");
        assert_eq!(ok(json!({"scale_by": 1.5})).latent_size_of(5, 8, 8), (8, 12), "round(7.5) = 8");
        assert_eq!(ok(json!({"width": 100, "height": 0})).latent_size_of(8, 8, 8), (12, 12), "100 // 8");
        let latent = |v: Value| {
            ResizeRequest::from_json(&json!({ "resize": v }), "resize")?
                .expect("given")
                .resolve_latent(&Config::default())
        };
        assert_eq!(latent(json!({"scale_by": 2})).expect("valid").method, Method::NearestExact, "ComfyUI's default");
        assert_eq!(latent(json!({"method": "bislerp", "scale_by": 2})).expect("valid").method, Method::Bislerp);
        let e = latent(json!({"method": "lanczos", "scale_by": 2})).expect_err("a picture's");
        assert_eq!(e.field, "resize.method");
        assert!(e.message.contains("bislerp"), "{}", e.message);
    }

    #[test]
    fn a_center_crop_cuts_the_too_long_side_to_the_new_shape() {
        let square = ok(json!({"width": 64, "height": 64, "crop": "center"}));
        assert_eq!(square.region_of(100, 50), Region { x: 25, y: 0, width: 50, height: 50 });
        assert_eq!(square.region_of(50, 100), Region { x: 0, y: 25, width: 50, height: 50 });
        assert_eq!(square.region_of(50, 50), Region { x: 0, y: 0, width: 50, height: 50 });
        let stretched = ok(json!({"width": 64, "height": 64}));
        assert_eq!(stretched.region_of(100, 50), Region { x: 0, y: 0, width: 100, height: 50 });
    }

    #[test]
    fn bad_resizes_name_their_field() {
        let field = |v: Value| resize(v).expect_err("refused").field;
        assert_eq!(field(json!({"method": "bislerp", "scale_by": 2})), "resize.method");
        assert_eq!(field(json!({"scale_by": 0})), "resize.scale_by");
        assert_eq!(field(json!({"width": "wide"})), "resize.width");
        assert_eq!(field(json!({"width": 9000})), "resize.width");
        assert_eq!(field(json!({"width": 64, "scale_by": 2})), "resize.scale_by");
        assert_eq!(field(json!({"method": "area"})), "resize");
        assert_eq!(field(json!({"scale_by": 2, "crop": "center"})), "resize.crop");
        assert_eq!(field(json!({"megapixels": 1, "resolution_steps": 0})), "resize.resolution_steps");
        assert_eq!(field(json!({"scale": 2})), "resize.scale");
        let e = ResizeRequest::from_json(&json!({"resize": 2}), "resize").expect_err("not an object");
        assert_eq!(e.field, "resize");
    }

    #[test]
    fn results_past_the_largest_side_or_with_no_pixels_are_refused_at_the_input_behind_them() {
        let config = Config::default();
        let by = ok(json!({"scale_by": 8}));
        assert_eq!(by.check(Some(("cat.png", 64, 64)), &config), Ok(()));
        let e = by.check(Some(("cat.png", 512, 64)), &config).expect_err("4096 wide");
        assert_eq!(e.field, "resize.scale_by");
        assert!(e.message.contains("4096x512") && e.message.contains("limits.max_image_side"), "{}", e.message);
        assert_eq!(by.check(None, &config), Ok(()), "unknown until the picture is made");
        let tiny = ok(json!({"scale_by": 0.01}));
        assert!(tiny.check(Some(("cat.png", 48, 40)), &config).expect_err("no pixels").message.contains("0x0"));
        let tall = ok(json!({"width": 0, "height": 2048}));
        assert_eq!(tall.check(Some(("cat.png", 64, 16)), &config).expect_err("8192 wide").field, "resize.height");
    }

    #[test]
    fn the_stored_form_reads_back() {
        for v in [
            json!({"method": "area", "width": 0, "height": 64, "crop": "center"}),
            json!({"method": "bicubic", "scale_by": 0.5}),
            json!({"megapixels": 0.5, "resolution_steps": 8}),
        ] {
            let r = ok(v);
            let stored = serde_json::to_value(r).expect("writes");
            assert_eq!(serde_json::from_value::<Resize>(stored.clone()).expect("reads"), r, "{stored}");
        }
        assert_eq!(
            serde_json::to_value(ok(json!({"scale_by": 2}))).expect("writes"),
            json!({"method": "lanczos", "scale_by": 2.0})
        );
    }
}

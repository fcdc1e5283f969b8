//! `--resize SPEC` (with `--resize-method` and `--crop`): the command line's words for the
//! `resize` parameter of `image` and `upscale` jobs (`reelbox::kinds::resize`), ComfyUI's
//! three "Upscale Image" nodes in one flag: `2x` a factor (ImageScaleBy), `1024x768` a size,
//! a 0 side keeping the picture's shape (ImageScale), `1mp` a pixel count
//! (ImageScaleToTotalPixels). Only the shape of SPEC is read here; its ranges are the
//! daemon's to check, as for any client.

use clap::Args;
use reelbox::kinds::resize::ResizeRequest;

/// The resize flags, flattened into the commands that take them.
#[derive(Debug, Args)]
pub struct ResizeArgs {
    /// Resize the finished pictures without a model: `2x` (a factor), `1024x768` (a size; a 0
    /// side keeps the shape, e.g. `1024x0`) or `1mp` (about that many megapixels).
    #[arg(long, value_name = "SPEC", value_parser = parse_spec)]
    pub resize: Option<ResizeRequest>,
    /// How `--resize` resamples: nearest-exact, bilinear, area, bicubic or lanczos (the default).
    #[arg(long, value_name = "METHOD", requires = "resize")]
    pub resize_method: Option<String>,
    /// With `--resize WxH` of another shape, cut the middle of that shape out first instead of
    /// stretching the picture.
    #[arg(long, requires = "resize")]
    pub crop: bool,
}

impl ResizeArgs {
    /// The `resize` parameter these flags ask for, if any.
    pub fn request(&self) -> anyhow::Result<Option<ResizeRequest>> {
        let Some(spec) = &self.resize else { return Ok(None) };
        if self.crop && spec.width.is_none() {
            anyhow::bail!("--crop: only applies with --resize WIDTHxHEIGHT");
        }
        Ok(Some(ResizeRequest {
            method: self.resize_method.clone(),
            crop: self.crop.then(|| "center".to_string()),
            ..spec.clone()
        }))
    }
}

const SPEC_WORDS: &str = "give 2x (a factor), 1024x768 (a size; 0 keeps the shape: 1024x0) or 1mp (megapixels)";

/// Reads SPEC's shape: `Nx`, `WxH`, `Nmp` (case does not matter); `--refine`'s too.
pub(super) fn parse_spec(spec: &str) -> Result<ResizeRequest, String> {
    let s = spec.trim().to_ascii_lowercase();
    let number = |v: &str| v.trim().parse::<f64>().ok().filter(|f| f.is_finite());
    let side = |v: &str| v.trim().parse::<i64>().ok();
    if let Some(factor) = s.strip_suffix('x') {
        if let Some(scale_by) = number(factor) {
            return Ok(ResizeRequest { scale_by: Some(scale_by), ..ResizeRequest::default() });
        }
    } else if let Some(mp) = s.strip_suffix("mp") {
        if let Some(megapixels) = number(mp) {
            return Ok(ResizeRequest { megapixels: Some(megapixels), ..ResizeRequest::default() });
        }
    } else if let Some((w, h)) = s.split_once('x')
        && let (Some(width), Some(height)) = (side(w), side(h))
    {
        return Ok(ResizeRequest { width: Some(width), height: Some(height), ..ResizeRequest::default() });
    }
    Err(format!("{spec:?} is not a resize: {SPEC_WORDS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_reads_as_its_comfyui_node() {
        assert_eq!(parse_spec("2x").map(|r| r.scale_by), Ok(Some(2.0)));
        assert_eq!(parse_spec("1.5X").map(|r| r.scale_by), Ok(Some(1.5)));
        assert_eq!(parse_spec("1mp").map(|r| r.megapixels), Ok(Some(1.0)));
        assert_eq!(parse_spec("0.25MP").map(|r| r.megapixels), Ok(Some(0.25)));
        let size = parse_spec("1024x768").expect("a size");
        assert_eq!((size.width, size.height, size.scale_by), (Some(1024), Some(768), None));
        assert_eq!(parse_spec("1024x0").map(|r| (r.width, r.height)), Ok((Some(1024), Some(0))));
    }

    #[test]
    fn other_shapes_are_refused_saying_the_three_that_work() {
        for bad in ["", "x", "twox", "1024", "x768", "1.5x2", "inf x", "NaNx", "2 mp x"] {
            let e = parse_spec(bad).expect_err(bad);
            assert!(e.contains("1024x768") && e.contains("1mp"), "{bad}: {e}");
        }
    }
}

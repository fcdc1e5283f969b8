//! How `/v1/images/generations` and `/v1/images/edits` answer: URL or base64, the file
//! format a client asked for (`png`, `jpeg`, `webp`), and the response fields the SDKs read
//! (`size`, `quality`, `output_format`, `background`, `usage`).

use std::io::Cursor;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OpenAiError;
use super::images::ImageRequest;
use crate::store::records::Job;

/// The picture file format a client asked for (`output_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// The stored file as it is.
    Png,
    /// Re-encoded at `output_compression` quality.
    Jpeg,
    /// Re-encoded losslessly.
    Webp,
}

impl OutputFormat {
    /// Reads `output_format`; `gif` and `svg` (which OpenAI also lists) are refused by name.
    pub fn parse(value: Option<&str>) -> Result<Self, OpenAiError> {
        match value {
            None | Some("png") => Ok(Self::Png),
            Some("jpeg") | Some("jpg") => Ok(Self::Jpeg),
            Some("webp") => Ok(Self::Webp),
            Some(other) => Err(OpenAiError::param(
                "output_format",
                format!("output_format {other:?} is not supported; use png, jpeg or webp"),
            )),
        }
    }

    /// The name OpenAI uses (`png`, `jpeg`, `webp`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
            Self::Webp => "webp",
        }
    }
}

/// Checks `output_compression` (0–100, as OpenAI documents it; it sets the JPEG quality).
pub fn compression(value: Option<i64>) -> Result<u8, OpenAiError> {
    match value {
        None => Ok(100),
        Some(v @ 0..=100) => Ok(u8::try_from(v).unwrap_or(100)),
        Some(v) => Err(OpenAiError::param("output_compression", format!("output_compression must be 0–100, got {v}"))),
    }
}

/// The stored PNG in the asked format (WebP is lossless: the `image` crate writes no lossy WebP).
pub fn encode(png: Vec<u8>, format: OutputFormat, quality: u8) -> Result<Vec<u8>, OpenAiError> {
    if format == OutputFormat::Png {
        return Ok(png);
    }
    let picture = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .map_err(|e| OpenAiError::internal(format!("cannot read the stored picture: {e}")))?
        .to_rgb8();
    let mut out = Cursor::new(Vec::new());
    let written = match format {
        OutputFormat::Jpeg => {
            // JPEG quality 0 is not a thing; 1 is the smallest file.
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.max(1));
            picture.write_with_encoder(encoder)
        }
        _ => picture.write_with_encoder(image::codecs::webp::WebPEncoder::new_lossless(&mut out)),
    };
    written.map_err(|e| OpenAiError::internal(format!("cannot encode the picture as {}: {e}", format.name())))?;
    Ok(out.into_inner())
}

/// The picture as base64, in the asked format; a re-encode (JPEG, WebP: a decode and an
/// encode, hundreds of ms) runs on a blocking thread, off the async runtime.
pub async fn b64(png: Vec<u8>, format: OutputFormat, quality: u8) -> Result<String, OpenAiError> {
    let bytes = if format == OutputFormat::Png {
        png
    } else {
        tokio::task::spawn_blocking(move || encode(png, format, quality))
            .await
            .map_err(|e| OpenAiError::internal(format!("the picture's encoding stopped: {e}")))??
    };
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Token counts as OpenAI reports them for its GPT image models. reelbox counts no tokens:
/// every figure is 0, present so clients that read `usage.total_tokens` keep working.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[schema(as = OpenAiImageUsage)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: TokenDetails,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// `input_tokens_details` of [`Usage`].
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TokenDetails {
    pub image_tokens: u64,
    pub text_tokens: u64,
}

/// The size, quality, format and background a response reports about its pictures.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    /// `WIDTHxHEIGHT` of the pictures made.
    pub size: Option<String>,
    /// The `quality` used ([`quality_used`]).
    pub quality: Option<String>,
    pub output_format: &'static str,
    /// Always `opaque`: diffusion models draw no transparency.
    pub background: &'static str,
}

/// The `quality` a response reports, as OpenAI's do, in the names the SDKs know (`low`,
/// `medium`, `high`, `xhigh`, `max`): the one `asked` for (DALL·E's `standard` and `hd` as
/// `medium` and `high`); for `auto` or none, the `preset` the job ran with (`fast` → low,
/// `quality` → medium, `max` → high), and with no preset `medium`: the model's own settings,
/// which the `quality` preset matches but for its scheduler. `None` for a preset of the
/// box's own under another name.
pub fn quality_used(asked: Option<&str>, preset: Option<&str>) -> Option<&'static str> {
    match (asked, preset) {
        (Some("low"), _) | (None | Some("auto"), Some("fast")) => Some("low"),
        (Some("medium" | "standard"), _) | (None | Some("auto"), None | Some("quality")) => Some("medium"),
        (Some("high" | "hd"), _) | (None | Some("auto"), Some("max")) => Some("high"),
        (Some("xhigh"), _) => Some("xhigh"),
        (Some("max"), _) => Some("max"),
        _ => None,
    }
}

/// What a finished image job made, in a response's words (`quality` as asked).
pub fn describe(job: &Job, quality: Option<&str>, format: OutputFormat) -> Described {
    let params: serde_json::Value = serde_json::from_str(&job.params).unwrap_or_default();
    let side = |k: &str| params.get(k).and_then(serde_json::Value::as_u64);
    let preset = params.get("preset").and_then(serde_json::Value::as_str);
    Described {
        size: side("width").zip(side("height")).map(|(w, h)| format!("{w}x{h}")),
        quality: quality_used(quality, preset).map(str::to_owned),
        output_format: format.name(),
        background: "opaque",
    }
}

/// How a request wants its pictures back.
pub struct Answer {
    /// URL or base64 (a stream is always base64).
    pub format: ResponseFormat,
    /// The picture file format.
    pub output: OutputFormat,
    /// JPEG quality.
    pub compression: u8,
    /// The `quality` asked for (the answer says the one used, [`quality_used`]).
    pub quality: Option<String>,
    /// Step previews to stream as partial images.
    pub partial_images: u32,
    /// The streamed events' prefix: `image_generation`, or `image_edit` for edits.
    pub events: &'static str,
}

impl Answer {
    /// Reads and checks the answer's fields of a request.
    pub fn of(req: &ImageRequest) -> Result<Self, OpenAiError> {
        let format = match req.response_format.as_deref() {
            Some("b64_json") => ResponseFormat::B64,
            Some("url") => ResponseFormat::Url,
            None if req.model.as_deref().is_some_and(super::images::is_gpt_image_model) => ResponseFormat::B64,
            None => ResponseFormat::Url,
            Some(other) => {
                return Err(OpenAiError::param(
                    "response_format",
                    format!("invalid response_format {other:?}; use url or b64_json"),
                ));
            }
        };
        let output = OutputFormat::parse(req.output_format.as_deref())?;
        // A URL points at the stored PNG; a stream always carries base64.
        if format == ResponseFormat::Url && output != OutputFormat::Png && !req.stream {
            return Err(OpenAiError::param(
                "output_format",
                format!("output_format {:?} needs response_format b64_json (a url is the stored PNG)", output.name()),
            ));
        }
        let partial_images = req.partial_images.unwrap_or(0);
        if partial_images > 3 {
            return Err(OpenAiError::param(
                "partial_images",
                format!("partial_images must be 0–3, got {partial_images}"),
            ));
        }
        Ok(Self {
            format,
            output,
            compression: compression(req.output_compression)?,
            quality: req.quality.clone(),
            partial_images,
            events: "image_generation",
        })
    }

    /// The same answer for an edit (its stream's events are `image_edit.*`).
    pub fn for_edit(self) -> Self {
        Self { events: "image_edit", ..self }
    }
}

/// `response_format`: `url` or `b64_json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// An absolute `/api/v1/artifacts/ID` link, signed to work without a key for a while.
    Url,
    /// The file in base64.
    B64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::from_pixel(16, 8, image::Rgb([200, 40, 40]))
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn pictures_come_in_the_asked_format() {
        for (format, expect) in [
            (OutputFormat::Png, image::ImageFormat::Png),
            (OutputFormat::Jpeg, image::ImageFormat::Jpeg),
            (OutputFormat::Webp, image::ImageFormat::WebP),
        ] {
            let bytes = encode(png(), format, 80).expect("encode");
            assert_eq!(image::guess_format(&bytes).expect("format"), expect);
            let back = image::load_from_memory(&bytes).expect("decodes");
            assert_eq!((back.width(), back.height()), (16, 8));
        }
    }

    #[test]
    fn the_quality_used_is_said_in_the_sdks_names() {
        assert_eq!(quality_used(None, None), Some("medium"), "the model's own settings");
        assert_eq!(quality_used(Some("auto"), Some("fast")), Some("low"));
        assert_eq!(quality_used(None, Some("max")), Some("high"));
        assert_eq!(quality_used(Some("hd"), Some("max")), Some("high"));
        assert_eq!(quality_used(Some("standard"), Some("quality")), Some("medium"));
        assert_eq!(quality_used(Some("xhigh"), Some("max")), Some("xhigh"));
        assert_eq!(quality_used(None, Some("poster")), None, "a preset of the box's own");
    }

    #[test]
    fn unknown_formats_and_compressions_name_their_param() {
        for bad in ["gif", "svg", "bmp"] {
            assert_eq!(OutputFormat::parse(Some(bad)).expect_err(bad).param.as_deref(), Some("output_format"));
        }
        assert_eq!(compression(Some(101)).expect_err("101").param.as_deref(), Some("output_compression"));
        assert_eq!(compression(None).expect("default"), 100);
    }
}

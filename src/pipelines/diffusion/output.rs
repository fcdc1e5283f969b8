//! Writing finished images: PNG with the generation parameters in a `tEXt` chunk named
//! `parameters`, in the layout AUTOMATIC1111's web UI writes and reads back.

use image::RgbImage;

use super::DiffusionError;

/// The settings that made an image, for its `parameters` text.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageParameters<'a> {
    pub prompt: &'a str,
    pub negative_prompt: Option<&'a str>,
    pub steps: u32,
    pub sampler: &'a str,
    /// A1111's "Schedule type" (`Karras`), when sampled over a ComfyUI schedule.
    pub schedule: Option<&'a str>,
    pub guidance: f32,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub model: &'a str,
    /// img2img strength.
    pub strength: Option<f64>,
    /// A1111's "RNG" (`CPU`: torch's CPU generator), when not reelbox's own.
    pub rng: Option<&'a str>,
}

impl ImageParameters<'_> {
    /// The A1111 text: prompt line, `Negative prompt:` line, then `Key: value` pairs.
    pub fn to_text(&self) -> String {
        let mut s = self.prompt.to_string();
        if let Some(neg) = self.negative_prompt.filter(|n| !n.is_empty()) {
            s.push_str("\nNegative prompt: ");
            s.push_str(neg);
        }
        s.push_str(&format!("\nSteps: {}, Sampler: {}", self.steps, self.sampler));
        if let Some(schedule) = self.schedule {
            s.push_str(&format!(", Schedule type: {schedule}"));
        }
        s.push_str(&format!(
            ", CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
            self.guidance, self.seed, self.width, self.height, self.model
        ));
        if let Some(st) = self.strength {
            s.push_str(&format!(", Denoising strength: {st}"));
        }
        if let Some(rng) = self.rng {
            s.push_str(&format!(", RNG: {rng}"));
        }
        s.push_str(&format!(", Version: reelbox {}", env!("CARGO_PKG_VERSION")));
        s
    }
}

/// Encodes `img` as PNG, adding a text chunk `parameters` when given. The output has no
/// timestamps, so equal pixels and text give equal bytes.
pub fn encode_png(img: &RgbImage, parameters: Option<&str>) -> Result<Vec<u8>, DiffusionError> {
    let err = DiffusionError::Png;
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        match parameters {
            // tEXt is Latin-1; other text goes in an iTXt chunk, as PIL (and so A1111) does.
            Some(text) if text.chars().all(|c| (c as u32) < 256) => {
                enc.add_text_chunk("parameters".into(), text.into()).map_err(err)?
            }
            Some(text) => enc.add_itxt_chunk("parameters".into(), text.into()).map_err(err)?,
            None => {}
        }
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(img.as_raw()).map_err(err)?;
        writer.finish().map_err(err)?;
    }
    Ok(out)
}

/// The `parameters` text of PNG bytes as [`encode_png`] writes it (a `tEXt` or `iTXt`
/// chunk), as A1111 reads a picture's infotext back; `None` when there is none.
pub fn parameters_of(png_bytes: &[u8]) -> Option<String> {
    let reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().ok()?;
    let info = reader.info();
    let latin1 = info.uncompressed_latin1_text.iter().find(|c| c.keyword == "parameters").map(|c| c.text.clone());
    latin1.or_else(|| {
        let itxt = info.utf8_text.iter().find(|c| c.keyword == "parameters")?;
        itxt.get_text().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_carries_the_parameters_text_chunk() {
        let img = RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]));
        let params = ImageParameters {
            prompt: "a cat",
            negative_prompt: Some("blurry"),
            steps: 20,
            sampler: "Euler a",
            schedule: None,
            guidance: 7.5,
            seed: 42,
            width: 4,
            height: 3,
            model: "tiny-sd",
            strength: None,
            rng: None,
        };
        let text = params.to_text();
        assert!(text.starts_with("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 42, Size: 4x3, Model: tiny-sd"));
        let bytes = encode_png(&img, Some(&text)).expect("encode");
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let reader = decoder.read_info().expect("png");
        let chunks = &reader.info().uncompressed_latin1_text;
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].keyword, "parameters");
        assert_eq!(chunks[0].text, text);
        assert_eq!(parameters_of(&bytes).as_deref(), Some(text.as_str()));
        let wide = encode_png(&img, Some("ein Hund 🐕")).expect("encode");
        assert_eq!(parameters_of(&wide).as_deref(), Some("ein Hund 🐕"));
        let back = image::load_from_memory(&bytes).expect("decode").to_rgb8();
        assert_eq!(back, img);
        // A1111 writes the schedule after the sampler and the generator after the size's kin.
        let text = ImageParameters { schedule: Some("Karras"), rng: Some("CPU"), ..params }.to_text();
        assert!(text.contains("Sampler: Euler a, Schedule type: Karras, CFG scale: 7.5,"), "{text}");
        assert!(text.contains(", Model: tiny-sd, RNG: CPU, Version: reelbox"), "{text}");
    }
}

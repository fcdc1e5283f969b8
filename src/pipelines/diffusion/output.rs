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
    /// A1111's "Clip skip", written when past 1 as A1111 writes it.
    pub clip_skip: Option<u32>,
    /// The second pass that made it (the hires fix): the rest describe the first pass, and
    /// `strength` is the second's, as A1111 writes a hires-fixed picture's.
    pub hires: Option<Hires<'a>>,
    /// The A1111 hashes of the model that drew it, where it has them.
    pub hashes: Option<&'a ModelHashes>,
    /// The refiner that went on from a base → refiner split's switch (the rest describe the
    /// first pass, as A1111 writes a refined picture's).
    pub refiner: Option<Refiner<'a>>,
}

/// A base → refiner split as A1111's refiner keys say it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refiner<'a> {
    /// `Refiner`: the model that ran the steps from the switch on, with its shorthash where
    /// known (A1111's short title, `name [hash]`).
    pub model: &'a str,
    pub hash: Option<&'a str>,
    /// `Refiner switch at`: the share of the steps run before the switch (A1111's
    /// `refiner_switch_at`).
    pub switch_at: f64,
}

/// The hashes A1111 writes of the model that drew a picture, which Civitai links a posted
/// picture's resources by and A1111 clients pick the model again by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelHashes {
    /// `Model hash`: the first 10 digits of its checkpoint file's sha256 (A1111's shorthash).
    pub model: Option<String>,
    /// `Lora hashes`: each LoRA in it by the name a prompt's `<lora:NAME:w>` gives it and the
    /// first 12 digits of its hash.
    pub loras: Vec<(String, String)>,
    /// `TI hashes`: each textual-inversion embedding its prompts named and the first 12 digits
    /// of its file's sha256, as A1111 writes them (Civitai links a picture's embeddings by it).
    pub embeddings: Vec<(String, String)>,
}

/// A second pass as A1111's hires-fix keys say it; each optional one written only where it
/// is not the first pass's, as A1111 writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Hires<'a> {
    /// `Hires checkpoint`: the model the second pass sampled with, where it named its own.
    pub checkpoint: Option<&'a str>,
    /// `Hires upscale` (times the first pass's size) or `Hires resize` (a size).
    pub scale: HiresScale,
    /// `Hires upscaler`: A1111's name for how the first pass's pictures were scaled.
    pub upscaler: &'a str,
    /// `Hires steps`.
    pub steps: Option<u32>,
    /// `Hires sampler`.
    pub sampler: Option<&'a str>,
    /// `Hires schedule type` (none where the second pass's sampler reads no schedule).
    pub schedule: Option<&'a str>,
    /// `Hires CFG Scale` (Forge's key; A1111's hires fix has none).
    pub guidance: Option<f32>,
    /// `Hires prompt`.
    pub prompt: Option<&'a str>,
    /// `Hires negative prompt`.
    pub negative_prompt: Option<&'a str>,
}

/// How large a second pass made its pictures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HiresScale {
    /// `Hires upscale`: each side of the first pass's times this (A1111's `hr_scale`).
    By(f64),
    /// `Hires resize`: this width and height (A1111's `hr_resize_x`, `hr_resize_y`).
    To(u32, u32),
}

/// One of A1111's names for scaling a hires fix's start, and the resize method reelbox scales by
/// for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleMode {
    pub name: &'static str,
    pub method: &'static str,
    /// The name written back for `method`: several names scale alike (an antialiased mode as
    /// its plain one, "Latent (nearest)" as "Latent (nearest-exact)", "None" as "Lanczos"), and
    /// a picture says the one that names what was done.
    written: bool,
}

const fn mode(name: &'static str, method: &'static str, written: bool) -> ScaleMode {
    ScaleMode { name, method, written }
}

/// A1111's latent upscale modes, in A1111's order (an antialiased mode scales as its plain one).
pub const LATENT_MODES: [ScaleMode; 6] = [
    mode("Latent", "bilinear", true),
    mode("Latent (antialiased)", "bilinear", false),
    mode("Latent (bicubic)", "bicubic", true),
    mode("Latent (bicubic antialiased)", "bicubic", false),
    mode("Latent (nearest)", "nearest-exact", false),
    mode("Latent (nearest-exact)", "nearest-exact", true),
];
/// A1111's upscalers that resize a picture without a model, and the method of each (A1111's
/// "None" leaves the resize to its Lanczos).
pub const PICTURE_MODES: [ScaleMode; 3] =
    [mode("None", "lanczos", false), mode("Lanczos", "lanczos", true), mode("Nearest", "nearest-exact", true)];

/// A1111's name for a second pass scaling its start by `method`, from the latent or from the
/// picture: the written name of that method in [`LATENT_MODES`] or [`PICTURE_MODES`]; a method
/// A1111 has no name for goes by its own.
pub fn hires_upscaler_name(latent: bool, method: &'static str) -> &'static str {
    let modes: &[ScaleMode] = if latent { &LATENT_MODES } else { &PICTURE_MODES };
    modes.iter().find(|m| m.written && m.method == method).map_or(method, |m| m.name)
}

/// A value as A1111's infotext writes it: in JSON's quotes when a comma, colon or line break
/// would end it early (`infotext_utils.quote`).
fn quoted(text: &str) -> String {
    if text.contains([',', ':', '\n']) { serde_json::Value::from(text).to_string() } else { text.to_string() }
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
            ", CFG scale: {}, Seed: {}, Size: {}x{}",
            self.guidance, self.seed, self.width, self.height
        ));
        let none = ModelHashes::default();
        let hashes = self.hashes.unwrap_or(&none);
        let (model_hash, lora_hashes) = (hashes.model.as_deref(), &hashes.loras[..]);
        if let Some(hash) = model_hash {
            s.push_str(&format!(", Model hash: {hash}"));
        }
        s.push_str(&format!(", Model: {}", self.model));
        if let Some(st) = self.strength {
            s.push_str(&format!(", Denoising strength: {st}"));
        }
        if let Some(skip) = self.clip_skip.filter(|&n| n > 1) {
            s.push_str(&format!(", Clip skip: {skip}"));
        }
        if let Some(rng) = self.rng {
            s.push_str(&format!(", RNG: {rng}"));
        }
        if let Some(h) = &self.hires {
            h.write(&mut s);
        }
        // Where A1111's Lora extension puts it: among the extra keys, after the hires fix's.
        if !lora_hashes.is_empty() {
            let loras: Vec<String> = lora_hashes.iter().map(|(name, hash)| format!("{name}: {hash}")).collect();
            s.push_str(&format!(", Lora hashes: {}", quoted(&loras.join(", "))));
        }
        // A1111 drops the colons and commas of a name, which would break the list.
        if !hashes.embeddings.is_empty() {
            let named =
                hashes.embeddings.iter().map(|(name, hash)| format!("{}: {hash}", name.replace([':', ','], "")));
            s.push_str(&format!(", TI hashes: {}", quoted(&named.collect::<Vec<_>>().join(", "))));
        }
        // Set while sampling, so after the keys set before it, as A1111's `apply_refiner` does.
        if let Some(r) = &self.refiner {
            let title = r.hash.map_or_else(|| r.model.to_string(), |h| format!("{} [{h}]", r.model));
            s.push_str(&format!(", Refiner: {}, Refiner switch at: {}", quoted(&title), r.switch_at));
        }
        s.push_str(&format!(", Version: reelbox {}", env!("CARGO_PKG_VERSION")));
        s
    }
}

impl Hires<'_> {
    /// The hires keys in A1111's order (its `extra_generation_params`' as `init` fills them).
    fn write(&self, s: &mut String) {
        let mut pair = |key: &str, value: String| s.push_str(&format!(", {key}: {value}"));
        if let Some(checkpoint) = self.checkpoint {
            pair("Hires checkpoint", quoted(checkpoint));
        }
        if let Some(sampler) = self.sampler {
            pair("Hires sampler", sampler.to_string());
        }
        if let Some(prompt) = self.prompt {
            pair("Hires prompt", quoted(prompt));
        }
        if let Some(negative) = self.negative_prompt {
            pair("Hires negative prompt", quoted(negative));
        }
        if let Some(guidance) = self.guidance {
            pair("Hires CFG Scale", guidance.to_string());
        }
        if let Some(schedule) = self.schedule {
            pair("Hires schedule type", schedule.to_string());
        }
        match self.scale {
            HiresScale::By(by) => pair("Hires upscale", by.to_string()),
            HiresScale::To(w, h) => pair("Hires resize", format!("{w}x{h}")),
        }
        if let Some(steps) = self.steps {
            pair("Hires steps", steps.to_string());
        }
        pair("Hires upscaler", quoted(self.upscaler));
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
            clip_skip: None,
            hires: None,
            hashes: None,
            refiner: None,
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

    #[test]
    fn the_model_and_lora_hashes_sit_where_a1111_writes_them() {
        let hashes = ModelHashes {
            model: Some("0123456789".into()),
            loras: vec![("ink".into(), "aaaaaaaaaaaa".into()), ("film grain".into(), "bbbbbbbbbbbb".into())],
            embeddings: vec![("EasyNegative".into(), "c74b4e810b03".into())],
        };
        let params = ImageParameters {
            prompt: "a cat",
            negative_prompt: None,
            steps: 4,
            sampler: "Euler",
            schedule: None,
            guidance: 7.0,
            seed: 5,
            width: 64,
            height: 64,
            model: "inked",
            strength: None,
            rng: Some("CPU"),
            clip_skip: None,
            hires: None,
            hashes: Some(&hashes),
            refiner: None,
        };
        let want = "Size: 64x64, Model hash: 0123456789, Model: inked, RNG: CPU, \
                    Lora hashes: \"ink: aaaaaaaaaaaa, film grain: bbbbbbbbbbbb\", \
                    TI hashes: \"EasyNegative: c74b4e810b03\", Version: reelbox";
        let text = params.to_text();
        assert!(text.contains(want), "{text}");
        let none = ModelHashes::default();
        let text = ImageParameters { hashes: Some(&none), ..params }.to_text();
        assert!(text.contains("Size: 64x64, Model: inked, RNG: CPU, Version") && !text.contains("hash"), "{text}");
    }

    #[test]
    fn a_second_pass_writes_a1111s_hires_keys_after_the_first_passs() {
        let hires = Hires {
            checkpoint: Some("tiny-sd-2"),
            scale: HiresScale::By(1.5),
            upscaler: "Latent (bicubic)",
            steps: Some(3),
            sampler: Some("DDIM"),
            schedule: None,
            guidance: None,
            prompt: Some("a cat, sharp"),
            negative_prompt: None,
        };
        let params = ImageParameters {
            prompt: "a cat",
            negative_prompt: None,
            steps: 4,
            sampler: "Euler",
            schedule: Some("Karras"),
            guidance: 7.0,
            seed: 5,
            width: 64,
            height: 64,
            model: "tiny-sd",
            strength: Some(0.6),
            rng: Some("CPU"),
            clip_skip: None,
            hires: Some(hires.clone()),
            hashes: None,
            refiner: None,
        };
        let text = params.to_text();
        let want = "Steps: 4, Sampler: Euler, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 64x64, Model: \
                    tiny-sd, Denoising strength: 0.6, RNG: CPU, Hires checkpoint: tiny-sd-2, Hires sampler: DDIM, \
                    Hires prompt: \"a cat, sharp\", Hires upscale: 1.5, Hires steps: 3, Hires upscaler: Latent (bicubic), Version: reelbox";
        assert!(text.contains(want), "{text}");
        let hires = Hires {
            checkpoint: None,
            scale: HiresScale::To(128, 96),
            steps: None,
            sampler: None,
            prompt: None,
            ..hires
        };
        let text = ImageParameters { hires: Some(hires), ..params }.to_text();
        assert!(text.contains("RNG: CPU, Hires resize: 128x96, Hires upscaler: Latent (bicubic), Version"), "{text}");
    }

    #[test]
    fn a_split_writes_a1111s_refiner_keys_last() {
        let refiner = Refiner { model: "tiny-sd-2", hash: Some("0123456789"), switch_at: 0.8 };
        let params = ImageParameters {
            prompt: "a cat",
            negative_prompt: None,
            steps: 20,
            sampler: "Euler",
            schedule: None,
            guidance: 7.0,
            seed: 5,
            width: 64,
            height: 64,
            model: "tiny-sd",
            strength: None,
            rng: Some("CPU"),
            clip_skip: None,
            hires: None,
            hashes: None,
            refiner: Some(refiner),
        };
        let text = params.to_text();
        assert!(
            text.contains(", RNG: CPU, Refiner: tiny-sd-2 [0123456789], Refiner switch at: 0.8, Version"),
            "{text}"
        );
    }

    #[test]
    fn each_hires_upscaler_name_maps_back_onto_its_method() {
        for (latent, modes) in [(true, &LATENT_MODES[..]), (false, &PICTURE_MODES[..])] {
            for m in modes {
                let name = hires_upscaler_name(latent, m.method);
                assert!(modes.iter().any(|n| n.name == name && n.method == m.method), "{name}");
            }
        }
        assert_eq!(hires_upscaler_name(true, "nearest-exact"), "Latent (nearest-exact)");
        assert_eq!(hires_upscaler_name(false, "lanczos"), "Lanczos");
        assert_eq!(hires_upscaler_name(false, "bicubic"), "bicubic", "no A1111 name: its own");
    }
}

//! How far two outputs of the same job are apart: the largest absolute difference between
//! two images' channels or two sounds' samples. The GPU check uses it to set a CUDA run's
//! output beside the CPU run's (kernels differ in rounding, never in content).

use std::path::Path;

use super::audio::{AudioError, decode_file};

/// Why two outputs cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("cannot read image {path}: {source}")]
    Image {
        path: String,
        #[source]
        source: image::ImageError,
    },
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{what} differ in shape: {a} vs {b}")]
    Shape { what: &'static str, a: String, b: String },
}

/// Largest |a − b| over all RGBA channels of two images of equal size, in 8-bit levels (0–255).
pub fn image_max_abs(a: &Path, b: &Path) -> Result<u8, DiffError> {
    let open = |p: &Path| {
        image::open(p)
            .map(|i| i.to_rgba8())
            .map_err(|source| DiffError::Image { path: p.display().to_string(), source })
    };
    let (a, b) = (open(a)?, open(b)?);
    if a.dimensions() != b.dimensions() {
        return Err(DiffError::Shape {
            what: "images",
            a: format!("{:?}", a.dimensions()),
            b: format!("{:?}", b.dimensions()),
        });
    }
    Ok(a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0))
}

/// Largest |a − b| over the samples of two sounds, on the decoder's −1..1 scale; sounds of
/// different lengths (a duration predictor that rounded the other way) are a shape error.
pub fn audio_max_abs(a: &Path, b: &Path) -> Result<f32, DiffError> {
    let (a, b) = (decode_file(a)?, decode_file(b)?);
    let (a, b) = (a.to_mono(), b.to_mono());
    if a.len() != b.len() {
        return Err(DiffError::Shape {
            what: "sounds",
            a: format!("{} samples", a.len()),
            b: format!("{} samples", b.len()),
        });
    }
    Ok(samples_max_abs(&a, &b))
}

/// Largest |a − b| of two equally long sample runs (0 for empty ones).
pub fn samples_max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::audio::{Audio, write_wav};

    #[test]
    fn one_changed_pixel_is_the_largest_difference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]));
        img.save(dir.path().join("a.png")).expect("save");
        img.put_pixel(3, 4, image::Rgb([10, 20, 37]));
        img.save(dir.path().join("b.png")).expect("save");
        assert_eq!(image_max_abs(&dir.path().join("a.png"), &dir.path().join("b.png")).expect("diff"), 7);
        assert_eq!(image_max_abs(&dir.path().join("a.png"), &dir.path().join("a.png")).expect("diff"), 0);
        image::RgbImage::new(4, 8).save(dir.path().join("c.png")).expect("save");
        assert!(matches!(
            image_max_abs(&dir.path().join("a.png"), &dir.path().join("c.png")),
            Err(DiffError::Shape { .. })
        ));
    }

    #[test]
    fn sounds_compare_sample_by_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a: Vec<f32> = (0..400).map(|i| (i as f32 / 20.0).sin() * 0.5).collect();
        let mut b = a.clone();
        b[100] += 0.25;
        write_wav(&dir.path().join("a.wav"), &Audio::mono(a.clone(), 16_000)).expect("write");
        write_wav(&dir.path().join("b.wav"), &Audio::mono(b, 16_000)).expect("write");
        let d = audio_max_abs(&dir.path().join("a.wav"), &dir.path().join("b.wav")).expect("diff");
        assert!((d - 0.25).abs() < 1e-3, "16-bit WAV rounding only: {d}");
        write_wav(&dir.path().join("c.wav"), &Audio::mono(a[..300].to_vec(), 16_000)).expect("write");
        assert!(audio_max_abs(&dir.path().join("a.wav"), &dir.path().join("c.wav")).is_err());
    }
}

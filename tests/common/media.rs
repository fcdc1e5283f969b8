//! Test media the media and pipeline tests make: ffmpeg runs, pictures, speech-like audio.

use std::process::Command;

use image::{Rgb, RgbImage};

/// Runs ffmpeg with `args`, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out =
        Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A colourful deterministic test picture (gradients plus a checker).
pub fn test_picture(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let c = ((x / 8 + y / 8 + seed) % 2) as u8 * 60;
        Rgb([(x * 255 / w.max(1)) as u8 ^ c, (y * 255 / h.max(1)) as u8, ((x + y + seed * 7) % 200) as u8 + c / 2])
    })
}

/// `img` as PNG file bytes, as an upload sends them.
pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("png");
    out
}

/// `n` samples of a 16 kHz speech-like signal: a gliding tone switched on and off.
pub fn speechy_16k(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f32 / 16000.0;
            let on = ((t * 3.0).fract() < 0.6) as u8 as f32;
            on * 0.5 * (2.0 * std::f32::consts::PI * (180.0 + 60.0 * (t * 2.0).sin()) * t).sin()
        })
        .collect()
}

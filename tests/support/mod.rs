//! Helpers shared by the media and pipeline tests: fixture paths, `.npy` reading, test media.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod sink;

use image::{Rgb, RgbImage};

/// A path under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Reads a little-endian float32 `.npy` file (C order): shape and data.
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an npy file");
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("header");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
    let shape: Vec<usize> = shape_text.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data =
        bytes[start + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (shape, data)
}

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

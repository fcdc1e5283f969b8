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

/// Mono `samples` at `rate` Hz as WAV file bytes, as reelbox writes them.
pub fn wav_bytes(samples: Vec<f32>, rate: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("a.wav");
    reelbox::media::write_wav(&p, &reelbox::media::Audio::mono(samples, rate)).expect("wav");
    std::fs::read(p).expect("read")
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

/// `img` as a phone writes a photo: a JPEG of the pixels as the sensor stored them, with an
/// EXIF APP1 segment whose one tag, Orientation (0x0112), says how to turn them to show it
/// (6: a quarter turn clockwise, a phone held upright; 8: anticlockwise; 3: upside down).
pub fn phone_jpeg(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(img).expect("jpeg");
    // TIFF header (big-endian, first IFD at 8), one IFD entry: tag, SHORT, count 1, value.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    let payload = [b"Exif\0\0".as_slice(), &tiff].concat();
    let length = u16::try_from(payload.len() + 2).expect("small segment");
    let app1 = [[0xFF, 0xE1].as_slice(), &length.to_be_bytes(), &payload].concat();
    // Right after SOI, where cameras put it.
    [&jpeg[..2], &app1, &jpeg[2..]].concat()
}

/// The first bytes of an iPhone's HEIC photo: an ISO-BMFF `ftyp` box branded `heic` and the
/// start of its `meta` box (`hdlr` of type `pict`); enough for anything that sniffs it.
pub fn heic_head() -> Vec<u8> {
    let mut out = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec();
    out.extend_from_slice(b"\0\0\0\x2emeta\0\0\0\0\0\0\0\x22hdlr\0\0\0\0\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    out
}

//! Quick checks that uploaded bytes really are what they claim, by decoding them.

use std::io::Cursor;

use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Decodes an image fully; returns its size or why it is not an image.
pub fn probe_image(bytes: &[u8]) -> Result<(u32, u32), String> {
    let img = image::load_from_memory(bytes).map_err(|e| format!("not a readable image: {e}"))?;
    Ok((img.width(), img.height()))
}

/// Decodes audio fully; returns its duration in seconds or why it is not audio.
pub fn probe_audio(bytes: &[u8]) -> Result<f64, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| format!("not a readable audio file: {e}"))?;
    let mut format = probed.format;
    let track = format.default_track().ok_or("no audio track")?.clone();
    let rate = track.codec_params.sample_rate.ok_or("audio has no sample rate")?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| format!("unsupported audio codec: {e}"))?;
    let mut frames = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("audio is damaged: {e}")),
        };
        if packet.track_id() != track.id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => frames += buf.frames() as u64,
            Err(SymphoniaError::DecodeError(e)) => return Err(format!("audio is damaged: {e}")),
            Err(e) => return Err(format!("audio cannot be decoded: {e}")),
        }
    }
    if frames == 0 {
        return Err("audio has no samples".into());
    }
    Ok(frames as f64 / f64::from(rate))
}

//! Quick checks that uploaded bytes really are what they claim, by decoding them. Sizes are
//! read from the header first: a 12000×12000 PNG compresses to a few hundred KB and would
//! take half a gigabyte to decode. Pictures are checked by [`super::picture::check`]; its
//! refusals are [`ProbeError::Picture`].

use std::io::Cursor;

use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::picture::PictureError;

/// Why uploaded bytes are refused; the text is what the caller is told (a field error).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Picture(#[from] PictureError),
    #[error("the file is empty")]
    Empty,
    #[error("not a readable audio file: {0}")]
    AudioFormat(#[source] SymphoniaError),
    #[error("no audio track")]
    NoAudioTrack,
    #[error("audio has no sample rate")]
    NoSampleRate,
    #[error("audio is {seconds:.1} s; limit is {max_seconds} s (limits.max_audio_seconds)")]
    AudioTooLong { seconds: f64, max_seconds: f64 },
    #[error("unsupported audio codec: {0}")]
    AudioCodec(#[source] SymphoniaError),
    #[error("audio is damaged: {0}")]
    AudioDamaged(#[source] SymphoniaError),
    /// A packet that does not decode; symphonia gives only a message for it.
    #[error("audio is damaged: {0}")]
    AudioFrameDamaged(&'static str),
    #[error("audio cannot be decoded: {0}")]
    AudioDecode(#[source] SymphoniaError),
    #[error("audio has no samples")]
    NoSamples,
}

impl ProbeError {
    /// True when the bytes are readable but exceed a configured limit (`limits.*`).
    pub fn is_over_limit(&self) -> bool {
        matches!(self, Self::Picture(PictureError::TooLarge { .. }) | Self::AudioTooLong { .. })
    }
}

/// Checks audio no longer than `max_seconds`: the length the container states is refused
/// before decoding, and decoding stops as soon as the samples pass the limit (a container
/// may state nothing, or lie). Returns the duration in seconds or why it is refused.
/// Blocking (decodes).
pub fn probe_audio(bytes: &[u8], max_seconds: f64) -> Result<f64, ProbeError> {
    let too_long = |seconds: f64| ProbeError::AudioTooLong { seconds, max_seconds };
    if bytes.is_empty() {
        return Err(ProbeError::Empty);
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(ProbeError::AudioFormat)?;
    let mut format = probed.format;
    let track = format.default_track().ok_or(ProbeError::NoAudioTrack)?.clone();
    let rate = track.codec_params.sample_rate.ok_or(ProbeError::NoSampleRate)?;
    if let Some(n) = track.codec_params.n_frames
        && n as f64 / f64::from(rate) > max_seconds
    {
        return Err(too_long(n as f64 / f64::from(rate)));
    }
    let max_frames = (max_seconds * f64::from(rate)).ceil() as u64;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(ProbeError::AudioCodec)?;
    let mut frames = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(ProbeError::AudioDamaged(e)),
        };
        if packet.track_id() != track.id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                frames += buf.frames() as u64;
                if frames > max_frames {
                    return Err(too_long(frames as f64 / f64::from(rate)));
                }
            }
            Err(SymphoniaError::DecodeError(e)) => return Err(ProbeError::AudioFrameDamaged(e)),
            Err(e) => return Err(ProbeError::AudioDecode(e)),
        }
    }
    if frames == 0 {
        return Err(ProbeError::NoSamples);
    }
    Ok(frames as f64 / f64::from(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(seconds: f64) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).expect("wav");
        for _ in 0..(seconds * 8000.0) as usize {
            w.write_sample(0i16).expect("sample");
        }
        w.finalize().expect("finalize");
        out.into_inner()
    }

    #[test]
    fn long_audio_is_refused_naming_the_limit_and_short_audio_is_measured() {
        let d = probe_audio(&wav(2.0), 3.0).expect("fits");
        assert!((d - 2.0).abs() < 1e-3, "{d}");
        let err = probe_audio(&wav(4.0), 3.0).expect_err("too long").to_string();
        assert!(err.contains("4.0 s") && err.contains("limits.max_audio_seconds"), "{err}");
    }
}

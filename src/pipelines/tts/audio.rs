//! Audio out: Piper's per-sentence peak normalisation, int16 conversion and WAV bytes.

use std::io::Cursor;

/// Largest int16 sample Piper writes (it clips to ±32767, not −32768).
const MAX_WAV_VALUE: f32 = 32767.0;

/// Normalises one sentence to its peak and converts it to int16, as Piper's
/// `synthesize` + `audio_int16_array` do (float32 maths, truncation toward zero).
pub fn to_int16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if peak < 1e-8 {
        return vec![0; audio.len()];
    }
    audio
        .iter()
        .map(|x| ((x / peak).clamp(-1.0, 1.0) * MAX_WAV_VALUE).clamp(-MAX_WAV_VALUE, MAX_WAV_VALUE) as i16)
        .collect()
}

/// Number of silent samples for `seconds` at `sample_rate`.
pub fn silence_samples(seconds: f32, sample_rate: u32) -> usize {
    if seconds.is_finite() && seconds > 0.0 { (seconds * sample_rate as f32).round() as usize } else { 0 }
}

/// Root mean square of int16 samples, in full-scale units (0..1).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (f64::from(s) / 32768.0).powi(2)).sum();
    (sum / samples.len() as f64).sqrt()
}

/// A 16-bit mono WAV file's bytes.
pub fn wav_bytes(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, hound::Error> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut buf = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut w = hound::WavWriter::new(&mut buf, spec)?;
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush()?;
        w.finalize()?;
    }
    Ok(buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_becomes_full_scale_and_values_truncate_like_numpy() {
        // numpy: (np.array([0.5,-0.25,0.1],float32)/0.5*32767).astype(int16) == [32767,-16383,6553]
        assert_eq!(to_int16(&[0.5, -0.25, 0.1]), vec![32767, -16383, 6553]);
    }

    #[test]
    fn near_silence_stays_silent() {
        assert_eq!(to_int16(&[1e-9, -1e-9]), vec![0, 0]);
    }

    #[test]
    fn wav_has_header_and_two_bytes_per_sample() {
        let bytes = wav_bytes(&[0, 1, -1], 22050).expect("wav");
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(bytes.len(), 44 + 6);
    }

    #[test]
    fn silence_rounds_to_whole_samples() {
        assert_eq!(silence_samples(0.2, 22050), 4410);
        assert_eq!(silence_samples(-1.0, 22050), 0);
    }
}

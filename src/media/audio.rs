//! Audio in and out: decoding WAV/MP3/FLAC/OGG/AAC with symphonia into planar `f32`,
//! channel folding, resampling with rubato and 16-bit WAV writing with hound.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Errors from reading, converting or writing audio; each names the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read audio input {input}: {source}")]
    Read { input: String, source: std::io::Error },
    #[error("audio input {input} is empty (0 bytes)")]
    Empty { input: String },
    #[error("audio input {input} is not a recognised audio file (WAV, MP3, FLAC, OGG, AAC): {reason}")]
    NotAudio { input: String, reason: String },
    #[error("audio input {input} contains no audio samples")]
    NoSamples { input: String },
    #[error("audio input {input} is truncated or corrupt: {reason}")]
    Corrupt { input: String, reason: String },
    #[error("cannot resample audio from {from} Hz to {to} Hz: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    #[error("cannot write WAV file {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Decoded audio: one `Vec<f32>` per channel (1 = mono, 2 = stereo), samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second.
    pub sample_rate: u32,
    /// Planar samples; all channels have the same length.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Wraps mono samples.
    pub fn mono(samples: Vec<f32>, sample_rate: u32) -> Self {
        Self { sample_rate, channels: vec![samples] }
    }

    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// The average of all channels.
    pub fn to_mono(&self) -> Vec<f32> {
        match self.channels.as_slice() {
            [] => Vec::new(),
            [only] => only.clone(),
            many => {
                let scale = 1.0 / many.len() as f32;
                (0..self.frames()).map(|i| many.iter().map(|c| c[i]).sum::<f32>() * scale).collect()
            }
        }
    }

    /// The same audio with exactly two channels (mono is duplicated).
    pub fn to_stereo(&self) -> Audio {
        let channels = match self.channels.as_slice() {
            [] => vec![Vec::new(), Vec::new()],
            [only] => vec![only.clone(), only.clone()],
            [l, r] => vec![l.clone(), r.clone()],
            _ => fold_to_stereo(&self.channels),
        };
        Audio { sample_rate: self.sample_rate, channels }
    }

    /// The same audio at `rate` Hz (band-limited FFT resampling; same length in seconds).
    pub fn resampled(&self, rate: u32) -> Result<Audio, AudioError> {
        if rate == self.sample_rate {
            return Ok(self.clone());
        }
        let channels = resample_planar(&self.channels, self.sample_rate, rate)?;
        Ok(Audio { sample_rate: rate, channels })
    }

    /// Mono at `rate` Hz: what the lip-sync mel front-end (16 kHz) needs.
    pub fn mono_at(&self, rate: u32) -> Result<Vec<f32>, AudioError> {
        let mono = Audio::mono(self.to_mono(), self.sample_rate);
        Ok(mono.resampled(rate)?.channels.swap_remove(0))
    }
}

/// Folds more than two channels to stereo: even-indexed channels left, odd right.
fn fold_to_stereo(channels: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let frames = channels.first().map_or(0, Vec::len);
    let mut out = vec![vec![0.0f32; frames], vec![0.0f32; frames]];
    let mut counts = [0f32; 2];
    for (i, ch) in channels.iter().enumerate() {
        counts[i % 2] += 1.0;
        for (o, s) in out[i % 2].iter_mut().zip(ch) {
            *o += s;
        }
    }
    for (side, count) in out.iter_mut().zip(counts) {
        side.iter_mut().for_each(|s| *s /= count.max(1.0));
    }
    out
}

/// Decodes an audio file; errors name the file.
pub fn decode_file(path: &Path) -> Result<Audio, AudioError> {
    let input = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| AudioError::Read { input: input.clone(), source })?;
    let len = file.metadata().map_err(|source| AudioError::Read { input: input.clone(), source })?.len();
    if len == 0 {
        return Err(AudioError::Empty { input });
    }
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    decode_source(Box::new(file), &input, ext.as_deref())
}

/// Decodes audio held in memory; `input` names it in errors and its extension, if any,
/// hints the format.
pub fn decode_bytes(bytes: Vec<u8>, input: &str) -> Result<Audio, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty { input: input.to_string() });
    }
    let ext = Path::new(input).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    decode_source(Box::new(Cursor::new(bytes)), input, ext.as_deref())
}

fn decode_source(source: Box<dyn MediaSource>, input: &str, ext: Option<&str>) -> Result<Audio, AudioError> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| AudioError::NotAudio { input: input.to_string(), reason: e.to_string() })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::NotAudio { input: input.to_string(), reason: "no audio track".into() })?;
    let track_id = track.id;
    let declared_frames = track.codec_params.n_frames;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::NotAudio { input: input.to_string(), reason: e.to_string() })?;

    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut bad_packets = 0usize;
    let corrupt = |reason: String| AudioError::Corrupt { input: input.to_string(), reason };
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // symphonia reports the end of the stream as an unexpected EOF; whether the
            // stream really was complete is checked against the declared length below.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A damaged packet in an otherwise good stream is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => {
                bad_packets += 1;
                continue;
            }
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let spec = *decoded.spec();
        let n_ch = spec.channels.count();
        if n_ch == 0 {
            continue;
        }
        sample_rate = spec.rate;
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        } else if channels.len() != n_ch {
            return Err(corrupt(format!("channel count changed from {} to {n_ch}", channels.len())));
        }
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks_exact(n_ch) {
            for (ch, s) in channels.iter_mut().zip(frame) {
                ch.push(*s);
            }
        }
    }
    let got = channels.first().map_or(0, Vec::len) as u64;
    if got == 0 {
        return Err(if bad_packets > 0 {
            corrupt(format!("none of its {bad_packets} packets could be decoded"))
        } else {
            AudioError::NoSamples { input: input.to_string() }
        });
    }
    if let Some(declared) = declared_frames.filter(|&n| n < (1 << 31)) {
        // Codecs with priming/padding (MP3, AAC) may decode slightly fewer or more frames
        // than the container declares; a real truncation loses far more than that.
        let slack = (declared / 50).max(4096);
        if got + slack < declared {
            return Err(corrupt(format!("decoded {got} of {declared} declared sample frames")));
        }
    }
    if sample_rate == 0 {
        return Err(corrupt("no sample rate".into()));
    }
    if channels.len() > 2 {
        channels = fold_to_stereo(&channels);
    }
    tracing::debug!(input, sample_rate, channels = channels.len(), frames = got, "decoded audio");
    Ok(Audio { sample_rate, channels })
}

/// Resamples planar audio from `from` to `to` Hz; output length is `round(n·to/from)`.
pub fn resample_planar(channels: &[Vec<f32>], from: u32, to: u32) -> Result<Vec<Vec<f32>>, AudioError> {
    let err = |reason: String| AudioError::Resample { from, to, reason };
    if from == 0 || to == 0 {
        return Err(err("sample rates must be positive".into()));
    }
    let n_ch = channels.len();
    let n_in = channels.first().map_or(0, Vec::len);
    let n_out = ((n_in as u128 * u128::from(to) + u128::from(from) / 2) / u128::from(from)) as usize;
    if n_ch == 0 || n_in == 0 {
        return Ok(vec![Vec::new(); n_ch]);
    }
    const CHUNK: usize = 1024;
    let mut resampler =
        FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, n_ch).map_err(|e| err(e.to_string()))?;
    let delay = resampler.output_delay();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(n_out + delay + CHUNK); n_ch];
    let mut pos = 0;
    while out[0].len() < n_out + delay {
        let need = resampler.input_frames_next();
        let produced = if pos + need <= n_in {
            let block: Vec<&[f32]> = channels.iter().map(|c| &c[pos..pos + need]).collect();
            pos += need;
            resampler.process(&block, None)
        } else if pos < n_in {
            let block: Vec<&[f32]> = channels.iter().map(|c| &c[pos..]).collect();
            pos = n_in;
            resampler.process_partial(Some(&block), None)
        } else {
            resampler.process_partial::<&[f32]>(None, None)
        }
        .map_err(|e| err(e.to_string()))?;
        for (o, p) in out.iter_mut().zip(produced) {
            o.extend_from_slice(&p);
        }
    }
    for o in &mut out {
        o.drain(..delay);
        o.truncate(n_out);
    }
    Ok(out)
}

/// Writes audio as a 16-bit PCM WAV file (what ffmpeg and players take everywhere).
pub fn write_wav(path: &Path, audio: &Audio) -> Result<(), AudioError> {
    let err = |e: hound::Error| AudioError::Write { path: path.to_path_buf(), reason: e.to_string() };
    let spec = hound::WavSpec {
        channels: audio.channels.len().max(1) as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(err)?;
    for i in 0..audio.frames() {
        for ch in &audio.channels {
            writer.write_sample(f32_to_i16(ch[i])).map_err(err)?;
        }
    }
    writer.finalize().map_err(err)
}

/// Scales a [-1, 1] sample to 16 bits with clipping.
pub fn f32_to_i16(s: f32) -> i16 {
    (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5).collect()
    }

    #[test]
    fn resampling_keeps_duration_and_pitch() {
        let src = sine(440.0, 22050, 22050);
        let out = resample_planar(&[src], 22050, 16000).expect("resample");
        assert_eq!(out[0].len(), 16000);
        // Compare against a 440 Hz sine sampled at 16 kHz, away from the edges.
        let want = sine(440.0, 16000, 16000);
        let err = out[0][500..15500].iter().zip(&want[500..15500]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn stereo_folds_to_mono_by_averaging() {
        let a = Audio { sample_rate: 8000, channels: vec![vec![1.0, 0.0], vec![0.0, -1.0]] };
        assert_eq!(a.to_mono(), vec![0.5, -0.5]);
        assert_eq!(Audio::mono(vec![0.25], 8000).to_stereo().channels, vec![vec![0.25], vec![0.25]]);
    }

    #[test]
    fn wav_round_trip_is_exact_to_16_bits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wav");
        let audio = Audio { sample_rate: 16000, channels: vec![sine(300.0, 16000, 1600), sine(500.0, 16000, 1600)] };
        write_wav(&path, &audio).expect("write");
        let back = decode_file(&path).expect("decode");
        assert_eq!(back.sample_rate, 16000);
        assert_eq!(back.channels.len(), 2);
        let err = back.channels[1].iter().zip(&audio.channels[1]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err <= 1.0 / 32767.0, "error {err}");
    }

    #[test]
    fn zero_length_input_is_reported_as_empty() {
        let err = decode_bytes(Vec::new(), "voice.wav").expect_err("empty");
        assert!(matches!(err, AudioError::Empty { .. }));
        assert!(err.to_string().contains("voice.wav"), "{err}");
    }
}

//! The Wav2Lip mel spectrogram (its `audio.melspectrogram`), computed like librosa ≥ 0.10:
//! pre-emphasis, centred zero-padded STFT with a periodic Hann window, Slaney mel
//! filterbank on the magnitude, dB, and Wav2Lip's symmetric normalisation to [-4, 4].

use ndarray::{Array2, ArrayView2, s};
use realfft::RealFftPlanner;

/// Sample rate the mel front-end expects.
pub const MEL_SAMPLE_RATE: u32 = 16_000;
/// FFT size and window length.
pub const N_FFT: usize = 800;
/// Samples between frames: 80 mel frames per second.
pub const HOP: usize = 200;
/// Mel bands.
pub const N_MELS: usize = 80;
/// Mel frames per lip-sync chunk.
pub const MEL_STEP: usize = 16;
const FMIN: f64 = 55.0;
const FMAX: f64 = 7600.0;
const PREEMPHASIS: f64 = 0.97;
const MIN_LEVEL_DB: f64 = -100.0;
const REF_LEVEL_DB: f64 = 20.0;
const MAX_ABS: f64 = 4.0;

/// Slaney-style Hz → mel (librosa `hz_to_mel(htk=False)`): linear below 1 kHz, log above.
pub fn hz_to_mel(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ { min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep } else { hz / F_SP }
}

/// Inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel { MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp() } else { F_SP * mel }
}

/// librosa `filters.mel(sr, n_fft, n_mels, fmin, fmax)` with Slaney scale and area
/// normalisation: `[n_mels, 1 + n_fft/2]`.
pub fn mel_filterbank(sr: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Array2<f32> {
    let n_bins = 1 + n_fft / 2;
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * f64::from(sr) / n_fft as f64).collect();
    let (mel_lo, mel_hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let mel_f: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut weights = Array2::<f32>::zeros((n_mels, n_bins));
    for m in 0..n_mels {
        let (left, centre, right) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - left) / (centre - left);
            let upper = (right - f) / (right - centre);
            weights[[m, k]] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    weights
}

/// Magnitude STFT `[1 + n_fft/2, frames]`, centred with `n_fft/2` zeros on each side
/// (librosa ≥ 0.10 `pad_mode="constant"`) and a periodic Hann window.
pub fn stft_magnitude(signal: &[f64], n_fft: usize, hop: usize) -> Array2<f64> {
    let pad = n_fft / 2;
    let mut padded = vec![0.0f64; signal.len() + 2 * pad];
    padded[pad..pad + signal.len()].copy_from_slice(signal);
    let n_frames = 1 + (padded.len() - n_fft) / hop;
    let window: Vec<f64> =
        (0..n_fft).map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos()).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let mut frame = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut out = Array2::<f64>::zeros((n_fft / 2 + 1, n_frames));
    for t in 0..n_frames {
        let start = t * hop;
        for ((f, x), w) in frame.iter_mut().zip(&padded[start..start + n_fft]).zip(&window) {
            *f = x * w;
        }
        // Lengths come from the planner itself, so processing cannot fail.
        if fft.process(&mut frame, &mut spectrum).is_err() {
            continue;
        }
        for (k, c) in spectrum.iter().enumerate() {
            out[[k, t]] = c.norm();
        }
    }
    out
}

/// Wav2Lip's mel spectrogram of 16 kHz mono audio: `[80, 1 + len/200]`, values in [-4, 4].
pub fn wav2lip_mel(audio_16k: &[f32]) -> Array2<f32> {
    let mut emphasised = Vec::with_capacity(audio_16k.len());
    let mut prev = 0.0f64;
    for &x in audio_16k {
        let x = f64::from(x);
        emphasised.push(x - PREEMPHASIS * prev);
        prev = x;
    }
    let magnitude = stft_magnitude(&emphasised, N_FFT, HOP);
    let basis = mel_filterbank(MEL_SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX).mapv(f64::from);
    let mel = basis.dot(&magnitude);
    let min_level = 10f64.powf(MIN_LEVEL_DB / 20.0);
    mel.mapv(|m| {
        let db = 20.0 * m.max(min_level).log10() - REF_LEVEL_DB;
        ((2.0 * MAX_ABS) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS).clamp(-MAX_ABS, MAX_ABS) as f32
    })
}

/// Number of video frames for `samples` of audio at `sample_rate`: `round(duration · fps)`,
/// at least one.
pub fn video_frame_count(samples: usize, sample_rate: u32, fps: u32) -> usize {
    let frames = (samples as u64 * u64::from(fps) + u64::from(sample_rate) / 2) / u64::from(sample_rate.max(1));
    (frames as usize).max(1)
}

/// The 16-frame mel window for video frame `i` at `fps` (Wav2Lip: start ⌊i·80/fps⌋; windows
/// running past the end take the final 16 frames; a mel shorter than 16 is padded with
/// silence, -4).
pub fn mel_chunk(mel: ArrayView2<f32>, i: usize, fps: u32) -> Array2<f32> {
    let total = mel.ncols();
    let mut chunk = Array2::<f32>::from_elem((mel.nrows(), MEL_STEP), -MAX_ABS as f32);
    if total < MEL_STEP {
        chunk.slice_mut(s![.., ..total]).assign(&mel);
        return chunk;
    }
    let start = ((i as f64) * 80.0 / f64::from(fps.max(1))).floor() as usize;
    let start = start.min(total - MEL_STEP);
    chunk.assign(&mel.slice(s![.., start..start + MEL_STEP]));
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_mel_scale_matches_librosa() {
        // librosa.hz_to_mel(55) = 0.825, hz_to_mel(7600) = 44.49957547823767
        assert!((hz_to_mel(55.0) - 0.825).abs() < 1e-12);
        assert!((hz_to_mel(7600.0) - 44.49957547823767).abs() < 1e-9);
        assert!((mel_to_hz(hz_to_mel(3000.0)) - 3000.0).abs() < 1e-9);
    }

    #[test]
    fn filterbank_rows_match_librosa_values() {
        let fb = mel_filterbank(16000, 800, 80, 55.0, 7600.0);
        assert_eq!(fb.dim(), (80, 401));
        // librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)[0, 2:6]
        let want = [0.0f32, 0.003869592, 0.01934796, 0.02081245];
        for (k, w) in want.iter().enumerate() {
            assert!((fb[[0, 2 + k]] - w).abs() < 1e-7, "bin {}: {} vs {w}", 2 + k, fb[[0, 2 + k]]);
        }
        // Row 40 starts at bin 84 with 0.0043831076.
        assert_eq!(fb[[40, 83]], 0.0);
        assert!((fb[[40, 84]] - 0.004_383_107_6).abs() < 1e-7);
    }

    #[test]
    fn frame_count_and_chunks_follow_wav2lip() {
        assert_eq!(video_frame_count(32000, 16000, 25), 50);
        let mel = wav2lip_mel(&vec![0.0; 32000]);
        assert_eq!(mel.dim(), (80, 161));
        assert!(mel.iter().all(|&v| v == -4.0));
        let ramp = Array2::from_shape_fn((80, 161), |(_, t)| t as f32);
        assert_eq!(mel_chunk(ramp.view(), 3, 25)[[0, 0]], 9.0); // ⌊3·3.2⌋
        assert_eq!(mel_chunk(ramp.view(), 49, 25)[[0, 0]], 145.0); // last 16 frames
    }
}

//! Mixing narration over a music bed with ducking: the music drops while someone speaks
//! and comes back smoothly afterwards, like a radio side-chain compressor.

use super::audio::{Audio, AudioError};

/// How the music bed is ducked under narration.
#[derive(Debug, Clone, PartialEq)]
pub struct Ducking {
    /// Music gain when nobody speaks (linear; 1 = as is).
    pub music_gain: f32,
    /// Music gain while narration is active (linear; 0.25 ≈ −12 dB).
    pub ducked_gain: f32,
    /// Narration level above which it counts as active (RMS, linear; 0.01 ≈ −40 dBFS).
    pub threshold: f32,
    /// Seconds for the music to fall to the ducked level.
    pub attack_s: f32,
    /// Seconds for the music to come back after narration stops.
    pub release_s: f32,
    /// Seconds narration must stay quiet before the music comes back (bridges short pauses).
    pub hold_s: f32,
    /// Window of the narration level detector, seconds.
    pub window_s: f32,
    /// Loop the music when it is shorter than the narration (else it ends in silence).
    pub loop_music: bool,
}

impl Default for Ducking {
    fn default() -> Self {
        Self {
            music_gain: 0.8,
            ducked_gain: 0.2,
            threshold: 0.01,
            attack_s: 0.08,
            release_s: 0.4,
            hold_s: 0.25,
            window_s: 0.02,
            loop_music: true,
        }
    }
}

/// Per-sample music gain for a narration track: `ducked_gain` where it is active,
/// `music_gain` elsewhere, with linear attack/release ramps. The attack starts early by
/// `attack_s`, so the first word is never drowned.
pub fn ducking_gains(narration: &[f32], sample_rate: u32, d: &Ducking) -> Vec<f32> {
    let n = narration.len();
    let sr = sample_rate.max(1) as f32;
    let window = ((d.window_s * sr) as usize).max(1);
    let hold = (d.hold_s * sr) as usize;
    let lead = (d.attack_s * sr) as usize;

    // Active where the windowed RMS (centred) exceeds the threshold.
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f64);
    for &x in narration {
        let last = prefix.last().copied().unwrap_or(0.0);
        prefix.push(last + f64::from(x) * f64::from(x));
    }
    let threshold_sq = f64::from(d.threshold) * f64::from(d.threshold);
    let mut active: Vec<bool> = (0..n)
        .map(|i| {
            let (a, b) = (i.saturating_sub(window / 2), (i + window / 2 + 1).min(n));
            (prefix[b] - prefix[a]) / (b - a) as f64 > threshold_sq
        })
        .collect();

    // Extend activity forwards by the hold time and backwards by the attack lead.
    let mut since_active = usize::MAX;
    for a in active.iter_mut() {
        if *a {
            since_active = 0;
        } else if since_active < hold {
            since_active += 1;
            *a = true;
        }
    }
    let mut until_active = usize::MAX;
    for a in active.iter_mut().rev() {
        if *a {
            until_active = 0;
        } else if until_active < lead {
            until_active += 1;
            *a = true;
        }
    }

    // Slew-limited gain: at most (music − ducked) per attack/release time.
    let span = (d.music_gain - d.ducked_gain).abs().max(f32::EPSILON);
    let down_step = span / (d.attack_s * sr).max(1.0);
    let up_step = span / (d.release_s * sr).max(1.0);
    let mut gain = if active.first().copied().unwrap_or(false) { d.ducked_gain } else { d.music_gain };
    active
        .iter()
        .map(|&a| {
            let target = if a { d.ducked_gain } else { d.music_gain };
            if gain > target {
                gain = (gain - down_step).max(target);
            } else if gain < target {
                gain = (gain + up_step).min(target);
            }
            gain
        })
        .collect()
}

/// Mixes narration over a ducked music bed. Both are brought to the higher of their
/// sample rates (at most 48 kHz); the result is stereo, as long as the narration, and
/// clipped to [-1, 1].
pub fn mix_with_ducking(narration: &Audio, music: &Audio, d: &Ducking) -> Result<Audio, AudioError> {
    // At the better of the two rates (up to 48 kHz): a voice's 22.05 kHz would take the
    // music's treble above 11 kHz away; a voice loses nothing going up.
    let rate = narration.sample_rate.max(music.sample_rate).min(48_000);
    let music = music.resampled(rate)?.to_stereo();
    let narration = narration.resampled(rate)?;
    let voice = narration.to_stereo();
    let gains = ducking_gains(&narration.to_mono(), rate, d);
    let n = voice.frames();
    let m = music.frames();
    let channels = (0..2)
        .map(|c| {
            (0..n)
                .map(|i| {
                    let bed = match (m, d.loop_music) {
                        (0, _) => 0.0,
                        (_, true) => music.channels[c][i % m],
                        (_, false) => music.channels[c].get(i).copied().unwrap_or(0.0),
                    };
                    (voice.channels[c][i] + gains[i] * bed).clamp(-1.0, 1.0)
                })
                .collect()
        })
        .collect();
    Ok(Audio { sample_rate: rate, channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One second of silence, one of "speech" (a loud tone), one of silence, at 1 kHz.
    fn narration() -> Vec<f32> {
        (0..3000).map(|i| if (1000..2000).contains(&i) { (i as f32 * 0.7).sin() * 0.5 } else { 0.0 }).collect()
    }

    #[test]
    fn music_is_ducked_while_narration_speaks_and_recovers_after() {
        let d = Ducking::default();
        let g = ducking_gains(&narration(), 1000, &d);
        assert_eq!(g[0], d.music_gain);
        assert_eq!(g[1500], d.ducked_gain);
        // Fully ducked by the time speech starts (the attack leads it).
        assert_eq!(g[1000], d.ducked_gain);
        // Still held just after speech ends, fully back after hold + release.
        assert_eq!(g[2000 + 200], d.ducked_gain);
        assert_eq!(g[2000 + 250 + 450], d.music_gain);
    }

    #[test]
    fn gain_changes_smoothly_without_jumps() {
        let d = Ducking::default();
        let g = ducking_gains(&narration(), 1000, &d);
        let span = d.music_gain - d.ducked_gain;
        let max_step = g.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max);
        assert!(max_step <= span / (d.attack_s * 1000.0) + 1e-6, "step {max_step}");
        assert!(g.iter().all(|&x| x >= d.ducked_gain && x <= d.music_gain));
    }

    #[test]
    fn mix_is_narration_plus_gained_music() {
        let voice = Audio::mono(narration(), 1000);
        let music = Audio::mono(vec![0.1; 500], 1000);
        let d = Ducking::default();
        let out = mix_with_ducking(&voice, &music, &d).expect("mix");
        assert_eq!(out.channels.len(), 2);
        assert_eq!(out.frames(), 3000);
        assert!((out.channels[0][10] - 0.1 * d.music_gain).abs() < 1e-6);
        let gains = ducking_gains(&narration(), 1000, &d);
        let want = narration()[1500] + 0.1 * gains[1500];
        assert!((out.channels[1][1500] - want).abs() < 1e-6);
    }
}

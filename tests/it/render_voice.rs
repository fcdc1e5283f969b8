//! What a film says and sounds like, on the real daemon with the real voice and ffmpeg: a
//! title stays with its name in the narration and the subtitles ("Dr. Åsa Lindqvist"),
//! emoji are shown but never read out by name, the sound is at one loudness with its peaks
//! under full scale, and the MP4 is titled by its opening words.

use crate::common;

use std::process::Command;

use common::provision::JOE;
use common::render::{artifact, models_dir, rendered};
use serde_json::{Value, json};

/// A WAV's length in samples.
fn wav_samples(bytes: &[u8]) -> u32 {
    hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV").duration()
}

/// (integrated loudness in LUFS, true peak in dBTP) of a file's sound, as ffmpeg's EBU R128
/// meter measures it.
fn loudness(path: &std::path::Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-vn", "-af", "ebur128=peak=true", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    let summary = &log[log.rfind("Summary:").expect("an ebur128 summary")..];
    let value = |label: &str| -> f64 {
        let line = summary.lines().find(|l| l.trim_start().starts_with(label)).expect(label);
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
    };
    (value("I:"), value("Peak:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_film_keeps_titles_with_names_shows_emoji_unspoken_and_plays_at_one_loudness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = models_dir(dir.path());
    let d = common::render::daemon(dir.path(), &models);
    let c = reqwest::Client::new();

    // Speech of "Good night! 😊" is "Good night!": the emoji was read as "smiling face with
    // smiling eyes", 1.8 s more. Without noise the voice speaks the same samples each time.
    let speak = |text: &'static str| {
        let (c, url) = (c.clone(), d.at("/v1/audio/speech"));
        async move {
            let body = json!({"model": "tts-1", "voice": JOE, "input": text, "response_format": "wav",
                              "noise_scale": 0.0, "noise_w": 0.0});
            let resp = c.post(url).json(&body).send().await.expect("speech");
            assert_eq!(resp.status(), 200, "{text}");
            wav_samples(&resp.bytes().await.expect("bytes"))
        }
    };
    assert_eq!(speak("Good night! 😊").await, speak("Good night!").await, "the emoji is not spoken");

    let script = "In 1987, Dr. Åsa Lindqvist arrived. The harbour was calm. 🌊\n\nGood night! 😊";
    let body = json!({"script": script, "model": "tiny-sd", "steps": 2, "width": 256, "height": 144});
    let id = rendered(&c, &d, body).await;

    let timeline: Value = serde_json::from_slice(&artifact(&c, &d, &id, "timeline.json").await).expect("timeline");
    let said: Vec<&str> =
        timeline["sentences"].as_array().expect("sentences").iter().filter_map(|s| s["text"].as_str()).collect();
    // The voice read on through "Dr." (it ended a sentence there: `In 1987, Dr.` | `Åsa …`),
    // and the subtitles show each sentence as written, emoji and all.
    assert_eq!(said, ["In 1987, Dr. Åsa Lindqvist arrived.", "The harbour was calm. 🌊", "Good night! 😊"]);
    let vtt = String::from_utf8(artifact(&c, &d, &id, "film.vtt").await).expect("utf8");
    assert!(vtt.lines().any(|l| l.contains("Dr. Åsa Lindqvist")), "{vtt}");
    assert!(!vtt.lines().any(|l| l.trim_end().ends_with("Dr.")), "{vtt}");
    // The last cue, "Good night! 😊", is as long as the voice says "Good night!" (its end is
    // the narration's end; an emoji read out made it 1.8 s longer than the words).
    let last = &timeline["sentences"][2];
    let shown = last["end"].as_f64().expect("end") - last["start"].as_f64().expect("start");
    let spoken = f64::from(speak("Good night!").await) / 22050.0;
    assert!(shown < spoken * 1.5, "the cue lasts {shown} s for {spoken} s of words");

    let film = dir.path().join("film.mp4");
    std::fs::write(&film, artifact(&c, &d, &id, "film.mp4").await).expect("write");
    // Narration was peak-normalised to full scale (+0.2 dBTP, the AAC decoding over 0 dBFS)
    // and −17.7 to −20.8 LUFS film to film.
    let (integrated, peak) = loudness(&film);
    assert!(peak <= -1.0, "true peak {peak} dBTP");
    assert!((integrated + 16.0).abs() <= 1.5, "integrated loudness {integrated} LUFS");
    // A player lists the film by its opening words.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format_tags=title", "-of", "default=nw=1:nk=1"])
        .arg(&film)
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "In 1987, Dr. Åsa Lindqvist arrived");
}

//! Media against real files and the real ffmpeg: decoding every supported format, clear
//! errors for bad inputs, the mel spectrogram against librosa, and MP4 round trips.

use crate::common;

use std::path::Path;

use common::fixture;
use common::media::{ffmpeg, test_picture};
use image::RgbImage;
use ndarray::ArrayD;
use reelbox::media::audio::{Audio, AudioError, decode_file, write_wav};
use reelbox::media::ffmpeg::{FfmpegError, VideoOptions, VideoReader, VideoWriter, write_video};
use reelbox::media::ffprobe::{probe, probe_with};
use reelbox::media::mel::wav2lip_mel;
use reelbox::media::subtitles::{Cue, to_srt, to_webvtt};

fn sine_wav(path: &Path, seconds: f32, rate: u32) {
    let n = (seconds * rate as f32) as usize;
    let left = (0..n).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.4).collect();
    let right = (0..n).map(|i| (i as f32 * 660.0 * std::f32::consts::TAU / rate as f32).sin() * 0.4).collect();
    write_wav(path, &Audio { sample_rate: rate, channels: vec![left, right] }).expect("write wav");
}

#[test]
fn mel_matches_librosa_reference() {
    let audio = decode_file(&fixture("audio/mel_input.wav")).expect("decode");
    assert_eq!(audio.sample_rate, 16000);
    let mel = wav2lip_mel(&audio.to_mono());
    let want: ArrayD<f32> = ndarray_npy::read_npy(fixture("reference/mel.npy")).expect("read mel.npy");
    let shape = want.shape().to_vec();
    assert_eq!(shape, vec![mel.nrows(), mel.ncols()]);
    let max_diff = mel.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("mel: max |rust - librosa| = {max_diff:e}");
    assert!(max_diff <= 1e-3, "max |rust - librosa| = {max_diff}");
}

#[test]
fn every_supported_format_decodes_to_the_right_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("src.wav");
    sine_wav(&wav, 1.5, 44100);
    let wav_s = wav.to_str().expect("utf8");
    for (ext, codec) in [("mp3", "libmp3lame"), ("flac", "flac"), ("ogg", "libvorbis"), ("m4a", "aac"), ("aac", "aac")]
    {
        let out = dir.path().join(format!("x.{ext}"));
        ffmpeg(&["-i", wav_s, "-c:a", codec, out.to_str().expect("utf8")]);
        let audio = decode_file(&out).unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(audio.sample_rate, 44100, "{ext}");
        assert_eq!(audio.channels.len(), 2, "{ext}");
        assert!((audio.duration_s() - 1.5).abs() < 0.1, "{ext}: {} s", audio.duration_s());
        let mono16 = audio.mono_at(16000).expect("resample");
        assert!((mono16.len() as f64 / 16000.0 - audio.duration_s()).abs() < 1e-3, "{ext}");
    }
}

#[test]
fn truncated_mp3_is_reported_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("src.wav");
    sine_wav(&wav, 3.0, 44100);
    let mp3 = dir.path().join("narration.mp3");
    ffmpeg(&["-i", wav.to_str().expect("utf8"), "-c:a", "libmp3lame", mp3.to_str().expect("utf8")]);
    let bytes = std::fs::read(&mp3).expect("read");
    std::fs::write(&mp3, &bytes[..bytes.len() / 3]).expect("truncate");
    let err = decode_file(&mp3).expect_err("truncated mp3 must not decode");
    assert!(matches!(err, AudioError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("narration.mp3"), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn zero_length_and_header_only_wavs_are_rejected_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").expect("write");
    let err = decode_file(&empty).expect_err("empty");
    assert!(matches!(err, AudioError::Empty { .. }) && err.to_string().contains("empty.wav"), "{err}");

    let header_only = dir.path().join("silent.wav");
    write_wav(&header_only, &Audio::mono(Vec::new(), 16000)).expect("write");
    let err = decode_file(&header_only).expect_err("no samples");
    assert!(matches!(err, AudioError::NoSamples { .. }) && err.to_string().contains("silent.wav"), "{err}");
}

#[test]
fn an_image_is_not_audio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("portrait.wav");
    test_picture(32, 32, 1).save_with_format(&png, image::ImageFormat::Png).expect("png");
    let err = decode_file(&png).expect_err("png is not audio");
    assert!(matches!(err, AudioError::NotAudio { .. }), "{err:?}");
    assert!(err.to_string().contains("portrait.wav"), "{err}");
}

#[test]
fn two_seconds_of_frames_and_audio_round_trip_through_ffmpeg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("audio.wav");
    sine_wav(&wav, 2.0, 44100);
    let out = dir.path().join("out.mp4");
    let frames: Vec<RgbImage> = (0..50).map(|i| test_picture(160, 120, i)).collect();
    let mut opts = VideoOptions::new(160, 120, 25);
    opts.audio = Some(wav);
    let written = write_video(&out, &opts, &frames).expect("encode");
    assert_eq!(written.frames, 50);

    let info = probe_with(&out, true).expect("probe");
    let v = info.video().expect("video stream");
    assert_eq!((v.codec_name.as_str(), v.width, v.height), ("h264", Some(160), Some(120)));
    assert_eq!(v.fps, Some(25.0));
    assert_eq!(v.frames, Some(50));
    assert_eq!(v.pix_fmt.as_deref(), Some("yuv420p"));
    let a = info.audio().expect("audio stream");
    assert_eq!(a.codec_name, "aac");
    let duration = info.duration_s.expect("duration");
    assert!((duration - 2.0).abs() < 0.05, "duration {duration}");

    // faststart puts the index (moov) before the media data (mdat).
    let bytes = std::fs::read(&out).expect("read mp4");
    let find = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).expect("box");
    assert!(find(b"moov") < find(b"mdat"), "moov must come first");

    // Decoding gives the frames back, up to lossy coding.
    let mut reader = VideoReader::open(&out).expect("open");
    assert_eq!((reader.info().width, reader.info().height), (160, 120));
    let decoded: Vec<RgbImage> = reader.by_ref().collect::<Result<_, _>>().expect("decode");
    assert_eq!(decoded.len(), 50);
    let mean_err =
        decoded[10].as_raw().iter().zip(frames[10].as_raw()).map(|(a, b)| a.abs_diff(*b) as f64).sum::<f64>()
            / frames[10].as_raw().len() as f64;
    assert!(mean_err < 12.0, "mean abs error {mean_err}");
}

#[test]
fn soft_and_burned_subtitles_end_up_in_the_mp4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cues = [Cue::new(0.0, 2.0, "HELLO WORLD")];
    let srt = dir.path().join("subs.srt");
    std::fs::write(&srt, to_srt(&cues)).expect("srt");
    let vtt = dir.path().join("subs.vtt");
    std::fs::write(&vtt, to_webvtt(&cues)).expect("vtt");
    let grey = RgbImage::from_pixel(320, 240, image::Rgb([40, 40, 40]));
    let frames = vec![grey.clone(); 25];

    let soft = dir.path().join("soft.mp4");
    let mut opts = VideoOptions::new(320, 240, 25);
    opts.subtitles = Some(vtt);
    write_video(&soft, &opts, &frames).expect("soft subs");
    let sub = probe(&soft).expect("probe").subtitle().cloned().expect("subtitle stream");
    assert_eq!(sub.codec_name, "mov_text");

    let burned = dir.path().join("burned.mp4");
    let mut opts = VideoOptions::new(320, 240, 25);
    opts.burn_subtitles = Some(srt);
    write_video(&burned, &opts, &frames).expect("burned subs");
    let frame = VideoReader::open(&burned).expect("open").next().expect("a frame").expect("decode");
    let bright = frame.pixels().filter(|p| p.0[0] > 150).count();
    assert!(bright > 100, "burned-in text should draw bright pixels, found {bright}");
}

#[test]
fn ffmpeg_failure_carries_its_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_audio = dir.path().join("music.wav");
    std::fs::write(&not_audio, b"this is not a wav file at all").expect("write");
    let mut opts = VideoOptions::new(64, 64, 25);
    opts.audio = Some(not_audio);
    let out = dir.path().join("out.mp4");
    let result = VideoWriter::create(&out, &opts).and_then(|mut w| {
        for i in 0..25 {
            w.push(&test_picture(64, 64, i))?;
        }
        w.finish()
    });
    match result {
        Err(FfmpegError::Encode { stderr, .. }) => assert!(stderr.contains("music.wav"), "stderr: {stderr}"),
        other => panic!("expected an encode error, got {other:?}"),
    }
}

#[test]
fn frames_of_the_wrong_size_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = VideoWriter::create(&dir.path().join("o.mp4"), &VideoOptions::new(64, 64, 25)).expect("start");
    let err = w.push(&test_picture(32, 64, 0)).expect_err("wrong size");
    assert!(matches!(err, FfmpegError::FrameSize { .. }), "{err}");
}

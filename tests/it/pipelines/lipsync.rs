//! Lip-sync: frame count, untouched background, audio-driven mouth, model variants, job
//! kind output and input errors.

use image::RgbImage;
use reelbox::gpu::DeviceId;
use reelbox::kinds::lipsync::Lipsync;
use reelbox::media::ffprobe::probe_with;
use reelbox::pipelines::lipsync::{
    BatchAxis, FaceBox, FaceTrack, LipsyncError, Wav2Lip, face::WAV2LIP_PADS, lipsync, lipsync_frames,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::common::fixture;
use super::common::media::{ffmpeg, png, speechy_16k, test_picture, wav_bytes};
use super::common::sink::{DirSink, fixture_config, run_kind};
use super::{engine, no_progress};

const FACE: FaceBox = FaceBox { x: 50, y: 30, w: 60, h: 56 };

fn model(name: &str) -> std::path::PathBuf {
    fixture(&format!("models/{name}"))
}

fn run(name: &str, portrait: &RgbImage, audio: &[f32], batch: usize) -> Vec<RgbImage> {
    let e = engine();
    let m = Wav2Lip::load(e, DeviceId::Cpu, &model(name)).expect("load model");
    let track = FaceTrack::still(portrait, FACE).expect("track");
    let cancel = CancellationToken::new();
    lipsync_frames(&m, track, audio, 25, batch, &cancel, &no_progress)
        .expect("start")
        .collect::<Result<_, _>>()
        .expect("frames")
}

/// Mean absolute difference over the padded face box rows `rows` (relative to the box).
fn box_diff(a: &RgbImage, b: &RgbImage, rows: std::ops::Range<u32>) -> f64 {
    let face = FACE.padded(WAV2LIP_PADS, a.width(), a.height()).expect("box");
    let (mut sum, mut n) = (0.0, 0.0);
    for y in face.y + rows.start..face.y + rows.end.min(face.h) {
        for x in face.x..face.x + face.w {
            for c in 0..3 {
                sum += f64::from(a.get_pixel(x, y).0[c].abs_diff(b.get_pixel(x, y).0[c]));
                n += 1.0;
            }
        }
    }
    sum / n
}

#[test]
fn frame_count_is_duration_times_25() {
    let portrait = test_picture(160, 120, 3);
    let frames = run("tiny-wav2lip", &portrait, &speechy_16k(32000), 16);
    assert_eq!(frames.len(), 50);
    assert!(frames.iter().all(|f| f.dimensions() == (160, 120)));
    // 2.3 s → 57.5 frames, rounded.
    assert_eq!(run("tiny-wav2lip", &portrait, &speechy_16k(36800), 16).len(), 58);
}

#[test]
fn pixels_outside_the_face_box_equal_the_input() {
    let portrait = test_picture(160, 120, 5);
    let face = FACE.padded(WAV2LIP_PADS, 160, 120).expect("box");
    let frames = run("tiny-wav2lip", &portrait, &speechy_16k(16000), 16);
    let mut inside_changed = 0;
    for f in &frames {
        for (x, y, px) in f.enumerate_pixels() {
            if face.contains(x, y) {
                inside_changed += usize::from(px != portrait.get_pixel(x, y));
            } else {
                assert_eq!(px, portrait.get_pixel(x, y), "pixel ({x},{y}) outside the box changed");
            }
        }
    }
    assert!(inside_changed > 1000, "the face should change, {inside_changed} pixels did");
}

#[test]
fn mouth_region_follows_the_audio() {
    let portrait = test_picture(160, 120, 7);
    let speech = run("tiny-wav2lip", &portrait, &speechy_16k(32000), 16);
    let silence = run("tiny-wav2lip", &portrait, &vec![0.0; 32000], 16);
    // Frame 10 (0.4 s) is inside a spoken stretch of the test signal.
    let lower = box_diff(&speech[10], &silence[10], 33..66);
    let upper = box_diff(&speech[10], &silence[10], 0..20);
    eprintln!("mouth diff: lower {lower:.2}, upper {upper:.2}");
    assert!(lower > 3.0, "mouth should move with the audio: mean diff {lower}");
    assert!(lower > 2.0 * upper, "lower half {lower} vs upper {upper}");
    // With silence the mouth stays put from frame to frame.
    assert_eq!(box_diff(&silence[10], &silence[30], 0..66), 0.0);
}

#[test]
fn alt_named_model_with_swapped_inputs_gives_the_same_frames() {
    let portrait = test_picture(160, 120, 9);
    let audio = speechy_16k(12000);
    let main = run("tiny-wav2lip", &portrait, &audio, 16);
    let alt = run("tiny-wav2lip-alt", &portrait, &audio, 16);
    for (a, b) in main.iter().zip(&alt) {
        let worst = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
        assert!(worst <= 1, "alt model differs by {worst}");
    }
}

#[test]
fn fixed_batch_model_runs_one_frame_at_a_time_with_the_same_result() {
    let e = engine();
    let fixed = Wav2Lip::load(e, DeviceId::Cpu, &model("tiny-wav2lip-fixed1")).expect("load");
    assert_eq!(fixed.batch_axis(), BatchAxis::Fixed(1));
    assert_eq!(fixed.run_batch(16), 1);
    let portrait = test_picture(160, 120, 2);
    let audio = speechy_16k(8000);
    let a = run("tiny-wav2lip-fixed1", &portrait, &audio, 16);
    let b = run("tiny-wav2lip", &portrait, &audio, 5);
    assert_eq!(a.len(), 13);
    for (x, y) in a.iter().zip(&b) {
        let worst = x.as_raw().iter().zip(y.as_raw()).map(|(p, q)| p.abs_diff(*q)).max().unwrap_or(0);
        assert!(worst <= 1, "fixed vs dynamic batch differ by {worst}");
    }
}

#[test]
fn library_call_streams_progress_and_honours_cancel() {
    let e = engine();
    let portrait = test_picture(96, 96, 1);
    let steps = std::sync::Mutex::new(Vec::new());
    let progress = |p: reelbox::pipelines::Progress| steps.lock().expect("lock").push((p.step, p.total));
    let frames = lipsync(
        e,
        DeviceId::Cpu,
        &model("tiny-wav2lip"),
        &portrait,
        FaceBox::new(20, 20, 50, 50),
        &speechy_16k(16000),
        25,
        &CancellationToken::new(),
        &progress,
    )
    .expect("lipsync");
    assert_eq!(frames.len(), 25);
    assert_eq!(*steps.lock().expect("lock"), vec![(16, 25), (25, 25)]);

    let cancel = CancellationToken::new();
    cancel.cancel();
    let m = Wav2Lip::load(e, DeviceId::Cpu, &model("tiny-wav2lip")).expect("load");
    let track = FaceTrack::still(&portrait, FaceBox::new(20, 20, 50, 50)).expect("track");
    let mut it = lipsync_frames(&m, track, &speechy_16k(16000), 25, 16, &cancel, &no_progress).expect("start");
    assert!(matches!(it.next(), Some(Err(LipsyncError::Canceled))));
    assert!(it.next().is_none());
}

#[test]
fn face_box_outside_the_portrait_is_an_error() {
    let portrait = test_picture(64, 64, 1);
    let err = FaceTrack::still(&portrait, FaceBox::new(100, 10, 20, 20)).err().expect("outside");
    assert!(err.to_string().contains("64x64"), "{err}");
}

#[test]
fn a_non_wav2lip_model_is_refused_with_its_tensors_listed() {
    let err = Wav2Lip::load(engine(), DeviceId::Cpu, &model("tiny-esrgan-x4")).err().expect("not wav2lip");
    assert!(matches!(err, LipsyncError::Interface { .. }), "{err}");
    assert!(err.to_string().contains("input"), "{err}");
}

#[test]
fn lipsync_job_writes_an_mp4_with_the_narration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(dir.path());
    let portrait = sink.upload("face.png", "image/png", &png(&test_picture(160, 120, 4)));
    // 22.05 kHz narration, as Piper writes it: resampled to 16 kHz for the mel.
    let samples: Vec<f32> = (0..44100).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let audio = sink.upload("narration.wav", "audio/wav", &wav_bytes(samples, 22050));
    let config = fixture_config();
    let params = json!({"portrait": portrait.to_string(), "audio": audio.to_string(),
        "face_box": [50, 30, 60, 56], "model": "tiny-wav2lip"});
    run_kind(&Lipsync, &config, engine(), &sink, params).expect("job");
    let out = sink.produced("lipsync");
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].name.as_str(), out[0].media_type.as_str()), ("lipsync.mp4", "video/mp4"));
    let info = probe_with(&dir.path().join(&out[0].path), true).expect("probe");
    let v = info.video().expect("video");
    assert_eq!((v.codec_name.as_str(), v.width, v.height, v.fps), ("h264", Some(160), Some(120), Some(25.0)));
    assert_eq!(v.frames, Some(50));
    assert_eq!(info.audio().expect("audio").codec_name, "aac");
    assert_eq!(sink.progress.lock().expect("lock").last(), Some(&(50, 50)));
}

#[test]
fn lipsync_job_accepts_a_short_video_portrait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=128x96:rate=25:duration=0.4",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().expect("utf8"),
    ]);
    let sink = DirSink::new(&dir.path().join("store"));
    let portrait = sink.upload("clip.mp4", "video/mp4", &std::fs::read(&clip).expect("read"));
    let audio = sink.upload("n.wav", "audio/wav", &wav_bytes(speechy_16k(24000), 16000));
    let params = json!({"portrait": portrait.to_string(), "audio": audio.to_string(),
        "face_box": [30, 20, 50, 50], "model": "tiny-wav2lip"});
    run_kind(&Lipsync, &fixture_config(), engine(), &sink, params).expect("job");
    let out = &sink.produced("lipsync")[0];
    let v = probe_with(&sink.dir.join(&out.path), true).expect("probe").video().cloned().expect("video");
    assert_eq!((v.width, v.height, v.frames), (Some(128), Some(96), Some(38)));
}

/// Runs the job with the given uploads and returns its error text.
fn job_error(portrait: (&str, &str, Vec<u8>), audio: (&str, &str, Vec<u8>)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(dir.path());
    let p = sink.upload(portrait.0, portrait.1, &portrait.2);
    let a = sink.upload(audio.0, audio.1, &audio.2);
    let params = json!({"portrait": p.to_string(), "audio": a.to_string(), "face_box": [10, 10, 40, 40],
        "model": "tiny-wav2lip"});
    run_kind(&Lipsync, &fixture_config(), engine(), &sink, params).expect_err("must fail")
}

#[test]
fn bad_inputs_fail_with_errors_naming_them() {
    let face = || ("face.png", "image/png", png(&test_picture(64, 64, 0)));
    let good_audio = || ("n.wav", "audio/wav", wav_bytes(speechy_16k(8000), 16000));

    let err = job_error(face(), ("empty.wav", "audio/wav", Vec::new()));
    assert!(err.contains("empty.wav") && err.contains("empty"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("s.wav");
    std::fs::write(&wav, wav_bytes(speechy_16k(48000), 16000)).expect("wav");
    let mp3 = dir.path().join("s.mp3");
    ffmpeg(&["-i", wav.to_str().expect("utf8"), "-c:a", "libmp3lame", mp3.to_str().expect("utf8")]);
    let mut bytes = std::fs::read(&mp3).expect("mp3");
    bytes.truncate(bytes.len() / 3);
    let err = job_error(face(), ("speech.mp3", "audio/mpeg", bytes));
    assert!(err.contains("speech.mp3") && err.contains("truncated"), "{err}");

    let err = job_error(("notes.png", "image/png", b"just some text, not a picture".to_vec()), good_audio());
    assert!(err.contains("portrait artifact") && err.contains("notes.png"), "{err}");
    assert!(err.contains("neither an image"), "{err}");
}

#[test]
fn validation_names_the_bad_field() {
    let config = fixture_config();
    let tmp = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(tmp.path());
    let ctx = reelbox::kinds::ValidateCtx { config: &config, artifacts: &sink };
    use reelbox::kinds::JobKind;
    let portrait = sink.upload("face.png", "image/png", b"png").to_string();
    let audio = sink.upload("hello.wav", "audio/wav", b"wav").to_string();
    let base = json!({"portrait": portrait, "audio": audio, "face_box": [1, 2, 3, 4], "model": "tiny-wav2lip"});
    assert!(Lipsync.validate(base.clone(), &ctx).is_ok());
    let field = |mut v: serde_json::Value, k: &str, x: serde_json::Value| {
        v[k] = x;
        Lipsync.validate(v, &ctx).expect_err("invalid").field
    };
    assert_eq!(field(base.clone(), "face_box", json!([1, 2, 0, 4])), "face_box");
    assert_eq!(field(base.clone(), "model", json!("not-installed")), "model");
    assert_eq!(field(base.clone(), "model", json!("../etc")), "model");
    assert_eq!(field(base.clone(), "portrait", json!("nope")), "portrait");
    assert_eq!(field(base.clone(), "portrait", json!(ulid::Ulid::new().to_string())), "portrait", "not this key's");
    assert_eq!(field(base.clone(), "portrait", json!(audio)), "portrait", "a WAV is no portrait");
    assert_eq!(field(base.clone(), "text", json!("hello")), "text");
    assert_eq!(field(base.clone(), "voice", json!("en_US-joe-medium")), "voice");
    assert_eq!(field(base, "fps", json!(0)), "fps");
}

#[test]
fn the_onnx_face_detector_finds_the_face_scaled_to_the_frame_or_none() {
    use reelbox::pipelines::lipsync::{FaceDetector, OnnxFaceDetector};
    let detector = OnnxFaceDetector::load(engine(), DeviceId::Cpu, &model("tiny-face-detector")).expect("detector");
    assert_eq!(detector.detect(&test_picture(160, 120, 2)).expect("runs"), Some(FaceBox::new(50, 30, 60, 60)));
    assert_eq!(detector.detect(&test_picture(320, 240, 2)).expect("runs"), Some(FaceBox::new(100, 60, 120, 120)));
    assert_eq!(detector.detect(&RgbImage::new(160, 120)).expect("runs"), None, "a black frame has no face");
    let err = OnnxFaceDetector::load(engine(), DeviceId::Cpu, &model("tiny-esrgan-x4"))
        .err()
        .expect("not a detector")
        .to_string();
    assert!(err.contains("UltraFace"), "{err}");
}

/// A models dir with the Wav2Lip fixture and the detector installed as `face-detector`.
fn detector_config(dir: &std::path::Path) -> reelbox::config::Config {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    std::os::unix::fs::symlink(model("tiny-wav2lip"), models.join("tiny-wav2lip")).expect("link wav2lip");
    std::os::unix::fs::symlink(model("tiny-face-detector"), models.join("face-detector")).expect("link detector");
    reelbox::config::Config { models_dir: Some(models), ..reelbox::config::Config::default() }
}

#[test]
fn without_a_face_box_the_installed_detector_finds_the_face() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = detector_config(dir.path());
    let sink = DirSink::new(&dir.path().join("store"));
    let audio = sink.upload("n.wav", "audio/wav", &wav_bytes(speechy_16k(32000), 16000));
    let portrait = sink.upload("face.png", "image/png", &png(&test_picture(160, 120, 4)));
    let params = json!({"portrait": portrait.to_string(), "audio": audio.to_string(), "model": "tiny-wav2lip"});
    run_kind(&Lipsync, &config, engine(), &sink, params).expect("detected and lip-synced");
    let out = &sink.produced("lipsync")[0];
    let v = probe_with(&sink.dir.join(&out.path), true).expect("probe").video().cloned().expect("video");
    assert_eq!((v.width, v.height, v.frames), (Some(160), Some(120), Some(50)));

    let dark = sink.upload("dark.png", "image/png", &png(&RgbImage::new(160, 120)));
    let params = json!({"portrait": dark.to_string(), "audio": audio.to_string(), "model": "tiny-wav2lip"});
    let err = run_kind(&Lipsync, &config, engine(), &sink, params).expect_err("no face to find");
    assert!(err.contains("found no face") && err.contains("dark.png"), "{err}");
}

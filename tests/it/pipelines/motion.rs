//! Motion: seeded camera moves are deterministic and move, clips have the right length,
//! crossfades blend exactly, and a sequence encodes to a video of the expected length.

use image::RgbImage;
use reelbox::media::ffmpeg::{VideoOptions, VideoWriter};
use reelbox::media::ffprobe::probe_with;
use reelbox::pipelines::motion::{
    CameraMotion, CameraMove, ClipSpec, ImageToVideo, Sequence, camera_frame, crossfade, sequence_length,
};
use tokio_util::sync::CancellationToken;

use super::common::media::test_picture;

fn spec(seed: u64) -> ClipSpec {
    ClipSpec { duration_s: 1.0, fps: 25, width: 96, height: 54, seed }
}

fn clip(key: &RgbImage, s: ClipSpec) -> Vec<RgbImage> {
    let cancel = CancellationToken::new();
    CameraMotion.animate(key, s, &cancel).expect("animate").collect::<Result<_, _>>().expect("frames")
}

#[test]
fn same_seed_gives_same_pixels() {
    let key = test_picture(320, 240, 4);
    let a = clip(&key, spec(42));
    let b = clip(&key, spec(42));
    assert_eq!(a, b);
    assert_ne!(a.first(), a.last(), "the camera should move");
    let moves: std::collections::HashSet<String> = (0..40).map(|s| format!("{:?}", CameraMove::from_seed(s))).collect();
    assert!(moves.len() > 30, "seeds should pick varied moves");
    assert!((0..10).any(|s| clip(&key, spec(s)) != a), "other seeds should move differently");
}

#[test]
fn clip_has_duration_times_fps_frames_at_the_output_size() {
    let key = test_picture(200, 300, 1);
    let frames = clip(&key, ClipSpec { duration_s: 2.5, fps: 24, width: 64, height: 36, seed: 3 });
    assert_eq!(frames.len(), 60);
    assert!(frames.iter().all(|f| f.dimensions() == (64, 36)));
}

#[test]
fn frames_are_a_pure_function_of_time() {
    let key = test_picture(300, 200, 2);
    let mv = CameraMove::from_seed(9);
    assert_eq!(camera_frame(&key, &mv, 0.37, 80, 45), camera_frame(&key, &mv, 0.37, 80, 45));
    let frames = clip(&key, ClipSpec { seed: 9, width: 80, height: 45, ..spec(9) });
    assert_eq!(frames[0], camera_frame(&key, &mv, 0.0, 80, 45));
    assert_eq!(frames[24], camera_frame(&key, &mv, 1.0, 80, 45));
}

#[test]
fn crossfade_midpoint_is_the_average() {
    let (ka, kb) = (test_picture(160, 90, 1), test_picture(160, 90, 7));
    let cancel = CancellationToken::new();
    let a = clip(&ka, spec(1));
    let b = clip(&kb, spec(2));
    let seq: Vec<RgbImage> = Sequence::new(
        vec![
            CameraMotion.animate(&ka, spec(1), &cancel).expect("a"),
            CameraMotion.animate(&kb, spec(2), &cancel).expect("b"),
        ],
        5,
    )
    .collect::<Result<_, _>>()
    .expect("sequence");
    assert_eq!(seq.len(), 45);
    assert_eq!(seq.len(), sequence_length(&[25, 25], 5));
    assert_eq!(seq[..20], a[..20]);
    assert_eq!(seq[25..], b[5..]);
    // Transition frame 2 of 5 (alpha 1/2) blends A's frame 22 with B's frame 2.
    let mid = &seq[22];
    for ((m, x), y) in mid.as_raw().iter().zip(a[22].as_raw()).zip(b[2].as_raw()) {
        assert_eq!(u16::from(*m), (u16::from(*x) + u16::from(*y)).div_ceil(2));
    }
    assert_eq!(*mid, crossfade(&a[22], &b[2], 0.5).expect("fade"));
}

#[test]
fn a_sequence_encodes_to_a_video_of_the_expected_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [test_picture(320, 180, 1), test_picture(320, 180, 2), test_picture(180, 320, 3)];
    let cancel = CancellationToken::new();
    let spec = ClipSpec { duration_s: 0.8, fps: 25, width: 128, height: 72, seed: 5 };
    let clips = keys.iter().map(|k| CameraMotion.animate(k, spec, &cancel).expect("clip")).collect();
    let out = dir.path().join("scenes.mp4");
    let mut writer = VideoWriter::create(&out, &VideoOptions::new(128, 72, 25)).expect("writer");
    for frame in Sequence::new(clips, 4) {
        writer.push(&frame.expect("frame")).expect("push");
    }
    assert_eq!(writer.finish().expect("finish").frames, 20 * 3 - 8);
    let v = probe_with(&out, true).expect("probe").video().cloned().expect("video");
    assert_eq!(v.frames, Some(52));
}

#[test]
fn cancel_stops_a_clip() {
    let key = test_picture(64, 64, 0);
    let cancel = CancellationToken::new();
    let mut frames = CameraMotion.animate(&key, spec(1), &cancel).expect("animate");
    assert!(frames.next().is_some_and(|f| f.is_ok()));
    cancel.cancel();
    assert!(matches!(frames.next(), Some(Err(reelbox::pipelines::motion::MotionError::Canceled))));
}

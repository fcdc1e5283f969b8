//! Upscale: scale from the model, tiling equals no tiling, fixed-size models on any
//! image, videos keep frames and sound, and the job kind.

use image::RgbImage;
use image::imageops::{FilterType, resize};
use reelbox::gpu::DeviceId;
use reelbox::kinds::upscale::Upscale;
use reelbox::media::ffprobe::probe_with;
use reelbox::pipelines::upscale::{TileOptions, Upscaler};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::common::fixture;
use super::common::media::{ffmpeg, png, test_picture};
use super::common::sink::{DirSink, fixture_config, run_kind};
use super::{engine, no_progress};

fn upscaler(name: &str) -> Upscaler {
    Upscaler::load(engine(), DeviceId::Cpu, &fixture(&format!("models/{name}"))).expect("load upscaler")
}

fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.as_raw().len() as f64
}

#[test]
fn scale_is_read_from_the_model() {
    let x4 = upscaler("tiny-esrgan-x4");
    assert_eq!((x4.scale(), x4.fixed_size()), (4, None));
    let x2 = upscaler("tiny-esrgan-x2-fixed64");
    assert_eq!((x2.scale(), x2.fixed_size()), (2, Some((64, 64))));
}

#[test]
fn tiled_output_equals_untiled_output() {
    let up = upscaler("tiny-esrgan-x4");
    let img = test_picture(150, 100, 3);
    let cancel = CancellationToken::new();
    let whole = up.upscale_image(&img, TileOptions { tile: 0, pad: 10 }, &cancel, &no_progress).expect("untiled");
    assert_eq!(whole.dimensions(), (600, 400));
    let tiled = up.upscale_image(&img, TileOptions { tile: 40, pad: 10 }, &cancel, &no_progress).expect("tiled");
    assert_eq!(tiled.dimensions(), (600, 400));
    let worst = max_diff(&whole, &tiled);
    assert!(worst <= 2, "tiled differs from untiled by {worst}/255");
    // Without context the seams show: the test would catch a tiler that ignored padding.
    let seamy = up.upscale_image(&img, TileOptions { tile: 40, pad: 0 }, &cancel, &no_progress).expect("no pad");
    assert!(max_diff(&whole, &seamy) > 2, "zero padding should leave seams");
}

#[test]
fn fixed_64_model_upscales_a_200x150_image() {
    let up = upscaler("tiny-esrgan-x2-fixed64");
    let img = test_picture(200, 150, 1);
    let cancel = CancellationToken::new();
    let steps = std::sync::Mutex::new(0u64);
    let progress = |p: reelbox::pipelines::Progress| *steps.lock().expect("lock") = p.total;
    let out = up.upscale_image(&img, TileOptions::default(), &cancel, &progress).expect("upscale");
    assert_eq!(out.dimensions(), (400, 300));
    assert_eq!(*steps.lock().expect("lock"), 20);
    // The tiny model is a bilinear upscale plus a small learned residual.
    let bilinear = resize(&img, 400, 300, FilterType::Triangle);
    assert!(mean_diff(&out, &bilinear) < 20.0, "mean diff {}", mean_diff(&out, &bilinear));
    // A 64×64 window given to the model on its own agrees with the tiled result inside
    // its context margin.
    let window = image::imageops::crop_imm(&img, 60, 40, 64, 64).to_image();
    let alone = up.upscale_image(&window, TileOptions::default(), &cancel, &no_progress).expect("window");
    let mut worst = 0;
    for y in 20..108 {
        for x in 20..108 {
            let a = alone.get_pixel(x, y).0;
            let b = out.get_pixel(120 + x, 80 + y).0;
            worst = worst.max((0..3).map(|c| a[c].abs_diff(b[c])).max().unwrap_or(0));
        }
    }
    assert!(worst <= 2, "window vs tiled differ by {worst}");
    // Images smaller than the model's size are padded up and cropped back.
    let small = up.upscale_image(&test_picture(30, 20, 2), TileOptions::default(), &cancel, &no_progress);
    assert_eq!(small.expect("small").dimensions(), (60, 40));
}

/// A channel-last export with a fixed input (the interface of Qualcomm AI Hub's
/// Real-ESRGAN-x4plus: `image` [1, H, W, 3] → `upscaled_image` [1, 4H, 4W, 3]) upscales
/// exactly as the NCHW export of the same weights, and tiles larger pictures.
#[test]
fn a_channel_last_export_upscales_like_the_channel_first_one() {
    let nhwc = upscaler("tiny-esrgan-x4-nhwc32");
    assert_eq!((nhwc.scale(), nhwc.fixed_size()), (4, Some((32, 32))));
    let nchw = upscaler("tiny-esrgan-x4");
    let cancel = CancellationToken::new();
    let img = test_picture(32, 32, 5);
    let a = nhwc.upscale_image(&img, TileOptions::default(), &cancel, &no_progress).expect("nhwc");
    let b = nchw.upscale_image(&img, TileOptions::default(), &cancel, &no_progress).expect("nchw");
    assert_eq!(max_diff(&a, &b), 0, "the same weights in either layout give the same pixels");
    // Swapped channels or a transposed picture would be far from a bilinear upscale.
    let bilinear = resize(&img, 128, 128, FilterType::Triangle);
    assert!(mean_diff(&a, &bilinear) < 20.0, "mean diff {}", mean_diff(&a, &bilinear));
    let big = nhwc.upscale_image(&test_picture(48, 40, 1), TileOptions::default(), &cancel, &no_progress);
    assert_eq!(big.expect("tiled").dimensions(), (192, 160));
}

#[test]
fn cancel_stops_between_tiles() {
    let up = upscaler("tiny-esrgan-x4");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = up.upscale_image(&test_picture(64, 64, 0), TileOptions::default(), &cancel, &no_progress);
    assert!(matches!(r, Err(reelbox::pipelines::upscale::UpscaleError::Canceled)));
}

#[test]
fn upscale_job_turns_an_image_into_a_4x_png() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(dir.path());
    let input = sink.upload("small.png", "image/png", &png(&test_picture(48, 32, 6)));
    let params = json!({"input": input.to_string(), "model": "tiny-esrgan-x4", "tile": 32});
    run_kind(&Upscale, &fixture_config(), engine(), &sink, params).expect("job");
    let out = &sink.produced("upscale")[0];
    assert_eq!(out.media_type, "image/png");
    let img = image::open(sink.dir.join(&out.path)).expect("png").to_rgb8();
    assert_eq!(img.dimensions(), (192, 128));
}

#[test]
fn upscale_job_keeps_video_frames_and_sound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=25:duration=0.6",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=0.6",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        clip.to_str().expect("utf8"),
    ]);
    let sink = DirSink::new(&dir.path().join("store"));
    let input = sink.upload("clip.mp4", "video/mp4", &std::fs::read(&clip).expect("read"));
    let params = json!({"input": input.to_string(), "model": "tiny-esrgan-x2-fixed64"});
    run_kind(&Upscale, &fixture_config(), engine(), &sink, params).expect("job");
    let out = &sink.produced("upscale")[0];
    assert_eq!(out.media_type, "video/mp4");
    let info = probe_with(&sink.dir.join(&out.path), true).expect("probe");
    let v = info.video().expect("video");
    assert_eq!((v.width, v.height, v.frames, v.fps), (Some(128), Some(96), Some(15), Some(25.0)));
    assert_eq!(info.audio().expect("audio").codec_name, "aac");
}

#[test]
fn upscale_job_refuses_a_non_image_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(dir.path());
    // Refused at submission by its type; one typed as a picture, when it is read.
    let input = sink.upload("readme.txt", "text/plain", b"hello");
    let params = json!({"input": input.to_string(), "model": "tiny-esrgan-x4"});
    let err = run_kind(&Upscale, &fixture_config(), engine(), &sink, params).expect_err("not an image");
    assert!(err.contains("readme.txt") && err.contains("input takes a picture"), "{err}");
    let input = sink.upload("readme.png", "image/png", b"hello");
    let params = json!({"input": input.to_string(), "model": "tiny-esrgan-x4"});
    let err = run_kind(&Upscale, &fixture_config(), engine(), &sink, params).expect_err("not an image");
    assert!(err.contains("readme.png") && err.contains("neither an image"), "{err}");
}

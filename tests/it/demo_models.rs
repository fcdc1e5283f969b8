//! Quality gates of the bundled demo models (issue 9), run on the committed ONNX files
//! through reelbox's own pipelines.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{palette, provision};
use image::RgbImage;
use reelbox::config::Config;
use reelbox::engine::Engine;
use reelbox::gpu::DeviceId;
use reelbox::kinds::image::{Image, validate_params};
use reelbox::media::audio::Audio;
use reelbox::media::mel::{mel_chunk, wav2lip_mel};
use reelbox::pipelines::lipsync::{DEFAULT_BATCH, FaceBox, FaceTrack, Wav2Lip, lipsync_frames};
use reelbox::pipelines::tts::{self, SpeechOptions, SynthesisRun, Voice};
use reelbox::pipelines::upscale::{TileOptions, Upscaler};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/demo")
}

fn config() -> Config {
    let mut c = Config { models_dir: Some(demo()), ..Config::default() };
    c.runtime.onnxruntime = Some(provision::runtime());
    c
}

/// One engine per test process: ONNX Runtime allows one environment.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(&config()))
}

#[test]
fn shapes_model_draws_the_asked_background_and_shape_colours() {
    let config = config();
    let captions: Vec<Value> =
        serde_json::from_slice(&std::fs::read(demo().join("shapes/captions_heldout.json")).expect("captions"))
            .expect("json");
    assert!(captions.len() >= 40, "at least 40 held-out captions");
    let palette = palette::load();
    let (mut background_ok, mut shapes_ok) = (0, 0);
    for (i, c) in captions.iter().enumerate() {
        let params = validate_params(
            &json!({"prompt": c["caption"], "model": "shapes", "seed": 1000 + i, "preview_every": 0}),
            &config,
        )
        .expect("valid request");
        let out =
            Image.render(&config, engine(), DeviceId::Cpu, &params, None, None, None, None, None).expect("render");
        let img = image::load_from_memory(&out.images[0].1).expect("png").to_rgb8();
        let shares = palette::shares(&img, &palette, 60.0);
        if palette::dominant(&shares) == c["background"].as_str().unwrap_or_default() {
            background_ok += 1;
        }
        let wanted = c["shapes"].as_array().expect("shapes");
        if wanted
            .iter()
            .all(|s| shares.iter().any(|(n, share)| Some(n.as_str()) == s["colour"].as_str() && *share >= 0.006))
        {
            shapes_ok += 1;
        }
    }
    let n = captions.len() as f32;
    let (bg, sh) = (background_ok as f32 / n, shapes_ok as f32 / n);
    eprintln!("shapes gate: background {bg:.3}, shape colours {sh:.3} over {n} captions");
    assert!(bg >= 0.8, "background dominant in {bg:.3} of images (gate 0.8)");
    assert!(sh >= 0.7, "shape colours present in {sh:.3} of images (gate 0.7)");
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt()).max(1e-12)
}

#[test]
fn presenter_mouth_follows_the_loudness_of_held_out_speech() {
    let token = CancellationToken::new();
    let text = std::fs::read_to_string(demo().join("presenter/heldout.txt")).expect("held-out paragraph");
    let voice = Voice::load(&provision::joe_voice()).expect("joe voice");
    let progress = |_: reelbox::pipelines::Progress| {};
    let speech = tts::synthesize(
        engine(),
        &voice,
        &text,
        &SpeechOptions::default(),
        SynthesisRun { device: DeviceId::Cpu, progress: &progress, cancel: &token, on_sentence: None },
    )
    .expect("speech");
    let samples: Vec<f32> = speech.samples.iter().map(|s| f32::from(*s) / 32768.0).collect();
    let audio = Audio::mono(samples, speech.sample_rate).mono_at(16_000).expect("16 kHz");
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let portrait = image::open(assets.join("portrait.png")).expect("portrait").to_rgb8();
    let face = FaceBox::from_xywh([80, 56, 96, 96]);
    let model = Wav2Lip::load(engine(), DeviceId::Cpu, &demo().join("presenter")).expect("presenter model");
    let track = FaceTrack::still(&portrait, face).expect("track");
    let frames: Vec<RgbImage> = lipsync_frames(&model, track, &audio, 25, DEFAULT_BATCH, &token, &progress)
        .expect("lipsync")
        .collect::<Result<_, _>>()
        .expect("frames");
    let mel = wav2lip_mel(&audio);
    let mouth = |x: u32, y: u32| (28..68).contains(&x) && (52..84).contains(&y);
    let (mut open, mut loud, mut worst) = (Vec::new(), Vec::new(), 0u8);
    for (i, f) in frames.iter().enumerate() {
        let mut dark = 0;
        for y in 0..96 {
            for x in 0..96 {
                let p = f.get_pixel(80 + x, 56 + y);
                if mouth(x, y) {
                    dark += usize::from(p.0.iter().max().copied().unwrap_or(0) < 110);
                } else {
                    let q = portrait.get_pixel(80 + x, 56 + y);
                    worst = worst.max((0..3).map(|k| p[k].abs_diff(q[k])).max().unwrap_or(0));
                }
            }
        }
        open.push(dark as f64);
        loud.push(f64::from(mel_chunk(mel.view(), i, 25).mean().unwrap_or(0.0)));
    }
    let r = pearson(&open, &loud);
    eprintln!("presenter gate: r = {r:.3} over {} frames, worst pixel away from the mouth {worst}/255", frames.len());
    assert!(r >= 0.7, "mouth openness vs loudness r = {r:.3} (gate 0.7)");
    assert!(worst <= 3, "pixels away from the mouth moved by {worst}/255 (gate 3)");
}

fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mse: f64 = a
        .pixels()
        .zip(b.pixels())
        .flat_map(|(p, q)| (0..3).map(move |k| (f64::from(p[k]) - f64::from(q[k])).powi(2)))
        .sum::<f64>()
        / (a.width() * a.height() * 3) as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn upscaler_beats_bicubic_by_a_decibel_on_held_out_images() {
    let token = CancellationToken::new();
    let up = Upscaler::load(engine(), DeviceId::Cpu, &demo().join("upscaler")).expect("upscaler");
    assert_eq!(up.scale(), 2);
    let (mut ours, mut bicubic, mut n) = (0.0, 0.0, 0.0);
    for i in 0..8 {
        let dir = demo().join("upscaler/heldout");
        let lr = image::open(dir.join(format!("{i:02}_lr.png"))).expect("lr").to_rgb8();
        let hr = image::open(dir.join(format!("{i:02}_hr.png"))).expect("hr").to_rgb8();
        let progress = |_: reelbox::pipelines::Progress| {};
        let out = up.upscale_image(&lr, TileOptions { tile: 0, pad: 10 }, &token, &progress).expect("upscale");
        let bic = image::imageops::resize(&lr, hr.width(), hr.height(), image::imageops::FilterType::CatmullRom);
        ours += psnr(&out, &hr);
        bicubic += psnr(&bic, &hr);
        n += 1.0;
    }
    let (ours, bicubic) = (ours / n, bicubic / n);
    eprintln!("upscaler gate: {ours:.2} dB vs bicubic {bicubic:.2} dB");
    assert!(ours >= bicubic + 1.0, "{ours:.2} dB is not ≥ bicubic {bicubic:.2} dB + 1");
}

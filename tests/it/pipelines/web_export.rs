//! A web export of a Stable Diffusion model (what `microsoft/sd-turbo-webnn` ships: the
//! ONNX folders and a `tokenizer/tokenizer.json`, no `model_index.json`, no scheduler
//! config) renders the same pixels as the same weights in the diffusers layout with an
//! Euler, trailing-timesteps scheduler config: the tokenizer, the family and the scheduler
//! defaults are what the full layout would say.

use std::path::Path;

use reelbox::config::Config;
use reelbox::kinds::image::Image;
use serde_json::json;

use super::common::sink::{DirSink, run_kind};
use super::common::{copy_dir, fixture};
use super::engine;

/// The tiny SD's tokenizer as one `tokenizer.json` (vocab + merges in the BPE model).
fn tokenizer_json(tokenizer: &Path) -> serde_json::Value {
    let vocab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tokenizer.join("vocab.json")).expect("vocab")).expect("vocab json");
    let merges: Vec<String> = std::fs::read_to_string(tokenizer.join("merges.txt"))
        .expect("merges")
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    json!({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": merges}})
}

fn render(config: &Config, model: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = DirSink::new(dir.path());
    let params = json!({"prompt": "a lighthouse at dusk", "model": model, "steps": 2, "seed": 11});
    run_kind(&Image, config, engine(), &sink, params).unwrap_or_else(|e| panic!("{model}: {e}"));
    let out = sink.produced("generate");
    assert_eq!(out.len(), 1, "{model}: one picture");
    // Pixels, not file bytes: the PNG's text chunks name the model.
    image::open(sink.dir.join(&out[0].path)).expect("a picture").to_rgb8().into_raw()
}

#[test]
fn a_web_export_renders_what_the_diffusers_layout_renders() {
    let models = tempfile::tempdir().expect("tempdir");
    let source = fixture("models/tiny-sd");

    let full = models.path().join("tiny-full");
    copy_dir(&source, &full);
    let euler_trailing = json!({
        "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
        "beta_end": 0.012, "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        "timestep_spacing": "trailing"
    });
    std::fs::write(full.join("scheduler/scheduler_config.json"), euler_trailing.to_string()).expect("write");

    let web = models.path().join("tiny-web");
    for part in ["text_encoder", "unet", "vae_decoder"] {
        copy_dir(&source.join(part), &web.join(part));
    }
    std::fs::create_dir_all(web.join("tokenizer")).expect("mkdir");
    for f in ["special_tokens_map.json", "tokenizer_config.json"] {
        std::fs::copy(source.join("tokenizer").join(f), web.join("tokenizer").join(f)).expect("copy");
    }
    let json = tokenizer_json(&source.join("tokenizer"));
    std::fs::write(web.join("tokenizer/tokenizer.json"), json.to_string()).expect("write");

    let config = Config { models_dir: Some(models.path().to_path_buf()), ..Config::default() };
    let (a, b) = (render(&config, "tiny-full"), render(&config, "tiny-web"));
    assert!(a == b, "the web export renders other pixels than the diffusers layout");
    // The fixture's own scheduler (PNDM, leading) gives another picture: the comparison
    // above can tell schedulers apart.
    let fixture_config = Config { models_dir: Some(fixture("models")), ..Config::default() };
    assert!(render(&fixture_config, "tiny-sd") != b, "the default scheduler is not the fixture's own");
}

//! Single-file Stable Diffusion 1.x checkpoints (original LDM key layout) as A1111 and
//! ComfyUI users have them: `X.safetensors` through the CLI and a pickled `X.ckpt` through
//! `POST /api/v1/models/import` convert offline (the original config `X.yaml` beside the
//! file, the tokenizer folder beside it), pass the self-check, and render the same pixels
//! as the same model imported from its diffusers folder. `--prediction v` is recorded in
//! the scheduler config; a file that does not fit the shipped SD 1.x config is refused
//! naming it and the config. A lone file whose text encoder has OpenAI CLIP's 49408-token
//! vocabulary needs nothing beside it: the converter brings CLIP's tokenizer. An SD 2.x file
//! (OpenCLIP's keys, one layer more than it conditions on) with `--prediction v` renders as
//! its v-prediction diffusers folder does (`tests/fixtures/make_byo_sd2_ckpt.py`).
//!
//! Fixtures are made at test time by `tests/fixtures/make_byo_ckpt.py`.

use crate::common;

use std::time::Duration;

use common::byo::{
    fixture_once, import_again_command, import_cmd, import_daemon, import_report as import, max_diff, read_json,
    render_rgb,
};
use common::daemon::{is_final, post_json, wait_job};
use common::tools::convert_pyenv;
use reelbox::pipelines::diffusion::tokenizer::ClipTokenizer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_file_checkpoints_convert_offline_and_render_like_their_diffusers_folder() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_ckpt.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let (h, m) = (home.path(), models.as_path());

    let report =
        import(&env, h, m, &["--name", "sd1"], &src.join("tiny-sd1.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    let record = read_json(&models.join("sd1/conversion.json"));
    let d = &record["details"];
    assert_eq!((d["source_format"].as_str(), d["version"].as_str()), (Some("single-file"), Some("v1")), "{record}");
    assert_eq!(d["original_config"], "beside the checkpoint", "{record}");
    assert_eq!(d["prediction_type"], "epsilon", "{record}");
    assert!(models.join("sd1/unet/model.onnx_data").is_file() && models.join("sd1/tokenizer/vocab.json").is_file());
    import(&env, h, m, &["--name", "reference"], &src.join("tiny-sd1-diffusers")).unwrap_or_else(|e| panic!("{e}"));

    // --prediction v: the scheduler config says so (the user knows better than a guess).
    let vpred = import(&env, h, m, &["--name", "sd1v", "--prediction", "v"], &src.join("tiny-sd1.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(vpred["self_check"]["max_abs_diff"].as_f64().expect("diff") <= 1e-3, "{vpred}");
    let sched = read_json(&models.join("sd1v/scheduler/scheduler_config.json"));
    assert_eq!(sched["prediction_type"], "v_prediction", "{sched}");
    // Its fix imports it again with --prediction v (it came back epsilon); a guessed type
    // is guessed alike again.
    let again = import_again_command(h, m, "sd1v");
    assert!(again.ends_with("--kind diffusion --name sd1v --prediction v"), "{again}");
    let again = import_again_command(h, m, "sd1");
    assert!(again.ends_with("--kind diffusion --name sd1"), "{again}");

    let daemon = import_daemon(h, &models, &env);
    let http = reqwest::Client::new();
    // A pickled .ckpt ({"state_dict": ...}) through the API, read with weights_only.
    let body = json!({"path": src.join("tiny-sd1-pickle.ckpt"), "name": "sd1-ckpt"});
    let (s, job) = post_json(&http, &daemon, "/api/v1/models/import", body).await;
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let done = wait_job(&http, &daemon, &id, Duration::from_secs(300), is_final).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let events = http.get(daemon.at(&format!("/api/v1/jobs/{id}/events"))).send().await.expect("events");
    let events = events.text().await.expect("event text");
    assert!(events.contains("Stable Diffusion 1.x checkpoint") && events.contains("self-check passed"), "{events}");

    let reference = render_rgb(&http, &daemon, "reference", 7).await;
    let single = render_rgb(&http, &daemon, "sd1", 7).await;
    let pickle = render_rgb(&http, &daemon, "sd1-ckpt", 7).await;
    assert_eq!(reference.len(), single.len());
    assert!(max_diff(&reference, &single) <= 1, "the single file renders as its diffusers folder does");
    assert_eq!(max_diff(&single, &pickle), 0, "the .ckpt holds the same weights");
}

#[test]
fn a_checkpoint_that_does_not_fit_the_shipped_config_is_refused_naming_both() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_ckpt.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    // Just the file and a tokenizer: no tiny-sd1.yaml beside it, so the SD 1.x config
    // chosen from its keys is the shipped one, which the tiny UNet does not fit.
    let alone = home.path().join("alone");
    std::fs::create_dir_all(&alone).expect("dir");
    std::fs::copy(src.join("tiny-sd1.safetensors"), alone.join("tiny-sd1.safetensors")).expect("copy");
    let err = import(&env, home.path(), &models, &["--name", "alone"], &alone.join("tiny-sd1.safetensors"))
        .expect_err("no tokenizer");
    assert!(err.contains("tiny-sd1.safetensors") && err.contains("needs the CLIP tokenizer"), "{err}");
    let tok = alone.join("tokenizer");
    std::fs::create_dir_all(&tok).expect("tokenizer dir");
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(src.join("tokenizer").join(f), tok.join(f)).expect("copy");
    }
    let err = import(&env, home.path(), &models, &["--name", "alone"], &alone.join("tiny-sd1.safetensors"))
        .expect_err("wrong config");
    // It was diffusers' words cut at 200 characters ("Cannot load  because … please make su").
    let said = "tiny-sd1.safetensors: does not fit the shipped SD 1.x config (v1-inference.yaml): its \
                time_embedding.linear_1.weight is [128, 32] in the file, [1280, 320] in the config; put the model's \
                original config beside it as tiny-sd1.yaml (A1111's convention)";
    assert!(err.contains(said), "{err}");
    assert!(!models.join("alone").exists() && !models.join(".staging/alone").exists(), "nothing installed");

    // A checkpoint of another kind than --kind says was refused after its whole conversion
    // (reference images, ONNX export); now as soon as the converter reads its keys.
    let sd1 = src.join("tiny-sd1.safetensors");
    let mut cmd = import_cmd(&env, home.path(), &models);
    let out = cmd.args(["--kind", "upscale", "--name", "wrong"]).arg(&sd1).output().expect("run reelbox");
    let err = String::from_utf8_lossy(&out.stderr);
    let said = format!("{}: is a diffusion model (stable-diffusion), not upscale", sd1.display());
    assert!(!out.status.success() && err.contains(&said), "{err}");
    assert!(
        !err.contains("Stable Diffusion 1.x checkpoint") && !err.contains("exported"),
        "refused before converting: {err}"
    );
    assert!(!models.join("wrong").exists() && !models.join(".staging/wrong").exists(), "nothing installed");
}

/// OpenAI CLIP's ids for the self-check's prompt (its `SimpleTokenizer`, as transformers).
const CAT_IDS: [u32; 7] = [49406, 320, 1125, 539, 320, 2368, 49407];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_checkpoint_with_clip_s_vocabulary_gets_clip_s_tokenizer_and_renders() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_ckpt.py");
    // No tokenizer beside the file and no model installed: the only CLIP tokenizer is the
    // one the converter builds from the pinned open_clip_torch's vocabulary.
    let file = src.join("lone/tiny-sd1-clip.safetensors");
    assert!(!src.join("lone/tokenizer").exists());
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let report = import(&env, home.path(), &models, &["--name", "lone"], &file).unwrap_or_else(|e| panic!("{e}"));
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    let record = read_json(&models.join("lone/conversion.json"));
    let from = record["details"]["tokenizer"].as_str().unwrap_or_default();
    assert!(from.contains("open_clip_torch 3.3.0"), "{record}");

    // reelbox's own tokenizer reads the installed folder as OpenAI CLIP tokenizes.
    let tok = ClipTokenizer::load(&models.join("lone/tokenizer")).expect("installed tokenizer");
    let ids = tok.encode("a photo of a cat").expect("encode").ids;
    assert_eq!((ids.len(), &ids[..7]), (77, &CAT_IDS[..]));
    assert!(ids[7..].iter().all(|&id| id == 49407), "SD 1.x pads with <|endoftext|>: {ids:?}");

    let daemon = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    let a = render_rgb(&http, &daemon, "lone", 7).await;
    let b = render_rgb(&http, &daemon, "lone", 8).await;
    assert!(max_diff(&a, &b) > 0, "the seed changes the picture");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sd2_single_file_with_prediction_v_renders_like_its_diffusers_folder() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sd2_ckpt.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let (h, m) = (home.path(), models.as_path());
    // An installed model's CLIP tokenizer that pads with its end token, as SD 1.x's does: the
    // converter must not take it for SD 2.x, whose text encoder saw "!" padding.
    let eot = models.join("sd1-like/tokenizer");
    std::fs::create_dir_all(&eot).expect("tokenizer dir");
    for f in ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"] {
        let text = std::fs::read_to_string(src.join("tiny-sd2-diffusers/tokenizer").join(f)).expect("read");
        std::fs::write(eot.join(f), text.replace(r#""pad_token": "!""#, r#""pad_token": "<|endoftext|>""#))
            .expect("write");
    }
    let file = src.join("sd2/tiny-sd2.safetensors");
    let report = import(&env, h, m, &["--name", "sd2", "--prediction", "v"], &file).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(models.join("sd1-like")).expect("remove");
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    let d = read_json(&models.join("sd2/conversion.json"))["details"].clone();
    assert_eq!((d["version"].as_str(), d["prediction_from"].as_str()), (Some("v2"), Some("--prediction")), "{d}");
    assert!(d["tokenizer"].as_str().is_some_and(|t| t.contains("open_clip_torch")), "{d}");
    let sched = read_json(&models.join("sd2/scheduler/scheduler_config.json"));
    assert_eq!(sched["prediction_type"], "v_prediction", "{sched}");
    // SD 2.x's tokenizer pads with "!" (id 0), not with its end token.
    let ids = ClipTokenizer::load(&models.join("sd2/tokenizer")).expect("tokenizer").encode("a photo of a cat");
    let ids = ids.expect("encode").ids;
    assert_eq!(&ids[..7], &CAT_IDS[..]);
    assert!(ids[7..].iter().all(|&id| id == 0), "{ids:?}");
    import(&env, h, m, &["--name", "sd2-folder"], &src.join("tiny-sd2-diffusers")).unwrap_or_else(|e| panic!("{e}"));

    let daemon = import_daemon(h, &models, &env);
    let http = reqwest::Client::new();
    let single = render_rgb(&http, &daemon, "sd2", 7).await;
    let folder = render_rgb(&http, &daemon, "sd2-folder", 7).await;
    assert!(max_diff(&single, &folder) <= 1, "the SD 2.x file renders as its diffusers folder does");
}

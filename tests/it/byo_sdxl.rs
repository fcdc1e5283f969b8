//! Bring your own SDXL: a diffusers SDXL base folder (two text encoders, the second with a
//! pooled `text_embeds` output; a UNet with `text_embeds`/`time_ids`) imports through
//! `POST /api/v1/models/import`, converts to the ONNX layout the diffusion pipeline loads
//! for SDXL, passes the self-check with SDXL's inputs (one UNet step with the added
//! conditioning and a 4-step image against diffusers' StableDiffusionXLPipeline, ≤ 1e-3),
//! and renders an image in the real daemon; an SDXL LoRA (UNet and both text encoders)
//! fuses at import, passes the same check against diffusers with it loaded, and changes
//! the picture, and the same LoRA in kohya's format renders the same pixels. The tiny SDXL
//! and its LoRAs are made at test time by
//! `tests/fixtures/make_byo_sdxl.py`.
//!
//! An SDXL base single file in Stability's sgm layout, alone (no config, no tokenizers beside
//! it), imports with the shipped `sd_xl_base.yaml` and the converter's own CLIP tokenizers,
//! and renders as its diffusers folder does; a refiner file is refused by name. Made by
//! `tests/fixtures/make_byo_sdxl_single.py`.

use crate::common;

use common::byo::{
    api_import, fixture_once, import_cmd, import_daemon, import_report, max_diff, read_json, render_rgb,
};
use common::daemon::get_json;
use common::tools::convert_pyenv;
use reelbox::pipelines::diffusion::tokenizer::ClipTokenizer;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdxl_diffusers_folder_and_its_lora_import_self_check_and_render_in_the_daemon() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sdxl.py");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let d = import_daemon(home.path(), &models, &env);
    let http = reqwest::Client::new();
    let base = src.join("tiny-sdxl-diffusers");
    api_import(&http, &d, json!({"path": base, "name": "my-sdxl"}), "exported the text encoders").await;

    let dir = models.join("my-sdxl");
    for part in ["text_encoder_2/model.onnx", "tokenizer_2/vocab.json", "unet/model.onnx_data"] {
        assert!(dir.join(part).is_file(), "{part} is installed");
    }
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("model_index.json")).expect("index")).expect("JSON");
    assert_eq!(index["_class_name"], "StableDiffusionXLPipeline", "{index}");

    // A LoRA for SDXL fuses at import; the check compares with diffusers with it loaded.
    let lora = format!("{}:1", src.join("style-xl.safetensors").display());
    api_import(&http, &d, json!({"path": base, "name": "styled-xl", "loras": [lora]}), "fused style-xl at 1").await;
    // The same LoRA in kohya's format (lora_unet_/lora_te1_/lora_te2_, alpha) fuses the same.
    let kohya = format!("{}:1", src.join("style-xl-kohya.safetensors").display());
    let body = json!({"path": base, "name": "styled-xl-kohya", "loras": [kohya]});
    api_import(&http, &d, body, "fused style-xl-kohya at 1").await;
    let listed = get_json(&http, &d, "/api/v1/models").await;
    let entry = listed["models"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "styled-xl").cloned());
    let entry = entry.unwrap_or_else(|| panic!("no styled-xl in {listed}"));
    assert_eq!(
        (entry["kind"].as_str(), entry["fused"].as_str()),
        (Some("diffusion"), Some("tiny-sdxl-diffusers + style-xl×1"))
    );

    // The imported SDXL serves image jobs: the seed and the LoRA change the picture.
    let (a, b) = (render_rgb(&http, &d, "my-sdxl", 7).await, render_rgb(&http, &d, "my-sdxl", 8).await);
    assert_ne!(a, b, "the seed changes the picture");
    let styled = render_rgb(&http, &d, "styled-xl", 7).await;
    assert!(max_diff(&a, &styled) > 16, "the LoRA changes the picture");
    let styled_kohya = render_rgb(&http, &d, "styled-xl-kohya", 7).await;
    assert!(max_diff(&styled, &styled_kohya) <= 1, "kohya and diffusers formats render alike");
}

#[test]
fn an_sdxl_refiner_is_refused_naming_it_and_nothing_is_installed() {
    let env = convert_pyenv();
    let home = tempfile::tempdir().expect("tempdir");
    let refiner = home.path().join("tiny-sdxl-refiner");
    common::copy_dir(&fixture_once(&env, "make_byo_sdxl.py").join("tiny-sdxl-diffusers"), &refiner);
    // A refiner's index, as diffusers saves one: no first text encoder or tokenizer.
    let index = refiner.join("model_index.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&index).expect("index")).expect("JSON");
    v["_class_name"] = json!("StableDiffusionXLImg2ImgPipeline");
    v["text_encoder"] = json!([null, null]);
    v["tokenizer"] = json!([null, null]);
    std::fs::write(&index, v.to_string()).expect("write index");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let out =
        import_cmd(&env, home.path(), &models).args(["--name", "refiner"]).arg(&refiner).output().expect("run reelbox");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refiner was accepted");
    assert!(stderr.contains("tiny-sdxl-refiner") && stderr.contains("SDXL refiner"), "{stderr}");
    assert!(!models.join("refiner").exists(), "nothing is installed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdxl_single_file_alone_imports_and_renders_like_its_diffusers_folder() {
    let env = convert_pyenv();
    let src = fixture_once(&env, "make_byo_sdxl_single.py");
    let file = src.join("xl-single/tiny-sdxl.safetensors");
    let home = tempfile::tempdir().expect("tempdir");
    let models = home.path().join("models");
    std::fs::create_dir_all(&models).expect("models dir");
    let (h, m) = (home.path(), models.as_path());
    let report = import_report(&env, h, m, &["--name", "xl-file"], &file).unwrap_or_else(|e| panic!("{e}"));
    let diff = report["self_check"]["max_abs_diff"].as_f64().expect("max_abs_diff");
    assert!(diff <= 1e-3, "reelbox differs from diffusers by {diff}: {report}");
    eprintln!("SDXL single file self-check: {}", report["self_check"]);
    let d = read_json(&models.join("xl-file/conversion.json"))["details"].clone();
    assert_eq!((d["family"].as_str(), d["version"].as_str()), (Some("sdxl"), Some("xl")), "{d}");
    assert_eq!(d["original_config"], "shipped sd_xl_base.yaml", "{d}");
    assert!(d["tokenizer_2"].as_str().is_some_and(|t| t.contains("open_clip_torch")), "{d}");
    // The second tokenizer pads with "!" (id 0), as OpenCLIP's does; the first with its end.
    for (sub, pad) in [("tokenizer", 49407), ("tokenizer_2", 0)] {
        let tok = ClipTokenizer::load(&models.join("xl-file").join(sub)).expect("installed tokenizer");
        let ids = tok.encode("a photo of a cat").expect("encode").ids;
        assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407], "{sub}");
        assert!(ids[7..].iter().all(|&id| id == pad), "{sub} pads with {pad}: {ids:?}");
    }
    let folder = src.join("tiny-sdxl-single-diffusers");
    import_report(&env, h, m, &["--name", "xl-folder"], &folder).unwrap_or_else(|e| panic!("{e}"));

    // A refiner (only the OpenCLIP-G embedder) is refused by name; nothing is installed.
    let refiner = src.join("xl-refiner/tiny-sdxl-refiner.safetensors");
    let err = import_report(&env, h, m, &["--name", "xl-refiner"], &refiner).expect_err("a refiner");
    assert!(err.contains("tiny-sdxl-refiner.safetensors") && err.contains("SDXL refiner"), "{err}");
    assert!(!models.join("xl-refiner").exists(), "nothing is installed");

    let daemon = import_daemon(h, &models, &env);
    let http = reqwest::Client::new();
    let single = render_rgb(&http, &daemon, "xl-file", 7).await;
    let reference = render_rgb(&http, &daemon, "xl-folder", 7).await;
    assert!(max_diff(&single, &reference) <= 1, "the single file renders as its diffusers folder does");
    assert_ne!(single, render_rgb(&http, &daemon, "xl-file", 8).await, "the seed changes the picture");
}

//! The models `reelbox bench gpu` compares besides the installed ones: the test fixtures'
//! tiny Stable Diffusion in the layouts real exports use (fp32 with int64 ids, the
//! diffusers convert script's int32 ids, an f16-IO UNet, a CUDA-only manifest as
//! sd-turbo-cuda's) and a channel-last upscaler with a fixed input (Qualcomm AI Hub's
//! Real-ESRGAN interface), so one GPU run covers every input path the pipelines take.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::Context;
use reelbox::config::Config;
use reelbox::models::{Manifest, ManifestFile, ModelKind};
use serde_json::{Value, json};

use super::Spec;

/// The CUDA-only copy of the tiny SD: refused on the CPU daemon, placed on the GPU.
pub(super) const CUDA_ONLY: &str = "tiny-sd-cuda-only";

/// A models dir for the comparison: links to every installed model, plus the fixtures'
/// models under the names [`fixture_specs`] asks for.
pub(super) fn bench_models(config: &Config, scratch: &Path, fixtures: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = scratch.join("models");
    std::fs::create_dir_all(&dir)?;
    let installed = config.models_dir();
    for entry in
        std::fs::read_dir(&installed).with_context(|| format!("cannot list {}", installed.display()))?.flatten()
    {
        symlink(entry.path(), dir.join(entry.file_name()))?;
    }
    let fixtures = fixtures.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("tests/fixtures/models"));
    if !fixtures.join("tiny-sd/model_index.json").is_file() {
        println!("no tiny SD fixtures at {} (give --fixtures): those jobs are skipped", fixtures.display());
        return Ok(dir);
    }
    let fixtures = std::fs::canonicalize(&fixtures)?;
    let tiny = fixtures.join("tiny-sd");
    symlink(&tiny, dir.join("tiny-sd"))?;
    // The same weights with a half-precision-IO UNet (what web exports ship).
    let f16 = linked_copy(&tiny, &dir.join("tiny-sd-f16"), &["unet"])?;
    std::fs::create_dir_all(f16.join("unet"))?;
    symlink(tiny.join("unet/config.json"), f16.join("unet/config.json"))?;
    std::fs::copy(fixtures.join("tiny-sd-unet-f16io.onnx"), f16.join("unet/model.onnx"))?;
    let int32 = fixtures.join("tiny-sd-diffusers");
    if int32.is_dir() {
        symlink(&int32, dir.join("tiny-sd-int32"))?;
    }
    linked_copy(&tiny, &dir.join(CUDA_ONLY), &[])?;
    install_manifest(&dir, CUDA_ONLY, ModelKind::Diffusion, true, "model_index.json")?;
    let nhwc = fixtures.join("tiny-esrgan-x4-nhwc32");
    if nhwc.is_dir() {
        symlink(&nhwc, dir.join("tiny-esrgan-nhwc"))?;
        install_manifest(&dir, "tiny-esrgan-nhwc", ModelKind::Upscale, false, "model.onnx")?;
    }
    Ok(dir)
}

/// Writes the installed manifest of `dir/name`, pinning `file` as a pull would (a
/// manifest lists at least one file).
fn install_manifest(dir: &Path, name: &str, kind: ModelKind, cuda_only: bool, file: &str) -> anyhow::Result<()> {
    let (size, sha256) = reelbox::store::artifacts::sha256_file(&dir.join(name).join(file))?;
    let files = vec![ManifestFile { path: file.into(), size, sha256 }];
    let manifest = Manifest { cuda_only, ..Manifest::new(name.into(), kind, files) };
    reelbox::models::write_atomic(&dir.join(format!("{name}.toml")), manifest.to_toml().as_bytes())?;
    Ok(())
}

/// A folder of links to each entry of `from` but those in `except`.
fn linked_copy(from: &Path, to: &Path, except: &[&str]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        if !except.iter().any(|e| entry.file_name() == *e) {
            symlink(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(to.to_path_buf())
}

/// An 8-step square picture request at a fixed seed.
pub(super) fn image_body(model: &str, side: u32) -> Value {
    json!({"prompt": "a red circle on a blue background", "model": model, "width": side, "height": side,
           "steps": 8, "seed": 42})
}

/// The fixture jobs whose models `bench_models` made; `upload` is an uploaded picture's id.
pub(super) fn fixture_specs(installed: impl Fn(&str) -> bool, upload: &Value) -> Vec<Spec> {
    let mut out = Vec::new();
    for (label, model) in [
        ("image tiny-sd fp32", "tiny-sd"),
        ("image tiny-sd f16 unet", "tiny-sd-f16"),
        ("image tiny-sd int32 ids", "tiny-sd-int32"),
        ("image tiny-sd cuda-only", CUDA_ONLY),
    ] {
        if installed(model) {
            out.push(Spec { label, route: "/api/v1/images", body: image_body(model, 512) });
        }
    }
    if installed("tiny-esrgan-nhwc") {
        out.push(Spec {
            label: "upscale nhwc fixed 32",
            route: "/api/v1/upscale",
            body: json!({"input": upload, "model": "tiny-esrgan-nhwc"}),
        });
    }
    out
}

//! What a model directory's files say it is. Two layouts are recognised without a
//! manifest: a Stable Diffusion ONNX pipeline (a `model_index.json` or, in web exports
//! that ship none, a `unet/model.onnx`: what `pipelines::diffusion::ModelInfo` reads) and a Piper voice (`X.onnx` beside its config,
//! what `pipelines::tts::Voice` loads). Single-file models (lip-sync, upscale, face) are a
//! bare `model.onnx` whose kind only a manifest can tell.

use std::path::{Path, PathBuf};

use super::manifest::ModelKind;

/// True when `dir` holds a Stable Diffusion ONNX pipeline.
pub fn is_diffusion(dir: &Path) -> bool {
    dir.join("model_index.json").is_file() || dir.join("unet/model.onnx").is_file()
}

/// The Piper config beside a voice `X.onnx`: `X.onnx.json`, else `X.json`.
pub fn piper_config(onnx: &Path) -> Option<PathBuf> {
    if onnx.extension()? != "onnx" {
        return None;
    }
    let file = onnx.file_name()?.to_string_lossy().into_owned();
    [onnx.with_file_name(format!("{file}.json")), onnx.with_extension("json")].into_iter().find(|p| p.is_file())
}

/// The `.onnx` files directly in `dir`, sorted.
pub fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect();
    out.sort();
    out
}

/// True when model directory `dir` named `name` holds a Piper voice: `NAME.onnx`, or the
/// only `.onnx` in it, with its config beside it.
pub fn is_voice(dir: &Path, name: &str) -> bool {
    if piper_config(&dir.join(format!("{name}.onnx"))).is_some() {
        return true;
    }
    match onnx_files(dir).as_slice() {
        [one] => piper_config(one).is_some(),
        _ => false,
    }
}

/// The file an installed textual-inversion embedding keeps its vectors in
/// (`pipelines::diffusion::embedding::FILE`).
pub const EMBEDDING_FILE: &str = "embedding.safetensors";

/// The kind `dir`'s files show, when they show one.
pub fn detect(dir: &Path, name: &str) -> Option<ModelKind> {
    if is_diffusion(dir) {
        Some(ModelKind::Diffusion)
    } else if dir.join(EMBEDDING_FILE).is_file() {
        Some(ModelKind::Embedding)
    } else if is_voice(dir, name) {
        Some(ModelKind::Tts)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart_by_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = dir.path().join("sd");
        std::fs::create_dir_all(&sd).expect("mkdir");
        std::fs::write(sd.join("model_index.json"), "{}").expect("write");
        let voice = dir.path().join("joe");
        std::fs::create_dir_all(&voice).expect("mkdir");
        std::fs::write(voice.join("other-name.onnx"), "x").expect("write");
        std::fs::write(voice.join("other-name.json"), "{}").expect("write");
        let bare = dir.path().join("up");
        std::fs::create_dir_all(&bare).expect("mkdir");
        std::fs::write(bare.join("model.onnx"), "x").expect("write");
        assert_eq!(detect(&sd, "sd"), Some(ModelKind::Diffusion));
        assert_eq!(detect(&voice, "joe"), Some(ModelKind::Tts));
        assert_eq!(detect(&bare, "up"), None);
    }
}

//! Installed models as the compatibility APIs name them, found the way the job kinds find
//! them: diffusion models are directories with a `model_index.json` in the `image` kind's
//! search path ([`crate::models::search_dirs`]); Piper voices are directories
//! of the models dir holding a voice `.onnx` beside its `.onnx.json` (what
//! [`crate::pipelines::tts::Voice::find`] loads). Listing reads directory entries only, so
//! it is cheap enough to do per request.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::models::search_dirs;

/// What an installed model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRole {
    /// A Stable Diffusion pipeline (`image` jobs).
    Diffusion,
    /// A Piper voice (`speech` jobs).
    Voice,
}

/// One installed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    pub name: String,
    pub role: ModelRole,
    pub dir: PathBuf,
    /// Directory modification time, Unix seconds (OpenAI's `created`).
    pub created: i64,
}

/// Installed diffusion models and voices, sorted by name (the first directory wins a name).
pub fn installed(config: &Config) -> Vec<InstalledModel> {
    let models_dir = config.models_dir();
    let mut out: Vec<InstalledModel> = Vec::new();
    for dir in search_dirs(config) {
        for m in installed_in(&dir) {
            let voice_elsewhere = m.role == ModelRole::Voice && dir != models_dir;
            if !voice_elsewhere && !out.iter().any(|o| o.name == m.name) {
                out.push(m);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Installed models of one directory, sorted by name.
pub fn installed_in(models_dir: &Path) -> Vec<InstalledModel> {
    let Ok(entries) = std::fs::read_dir(models_dir) else { return Vec::new() };
    let mut out: Vec<InstalledModel> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            // Staging, trash and lock directories of the installer start with a dot.
            if name.starts_with('.') {
                return None;
            }
            let dir = e.path();
            let role = role_of(&dir, &name)?;
            let created = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            Some(InstalledModel { name, role, dir, created })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn role_of(dir: &Path, name: &str) -> Option<ModelRole> {
    if dir.join("model_index.json").is_file() {
        return Some(ModelRole::Diffusion);
    }
    let has_config = |onnx: &Path| onnx.with_extension("onnx.json").is_file();
    if has_config(&dir.join(format!("{name}.onnx"))) {
        return Some(ModelRole::Voice);
    }
    // Voice::find also takes a directory holding exactly one voice under another name.
    let onnx: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx"))
        .collect();
    match onnx.as_slice() {
        [one] if has_config(one) => Some(ModelRole::Voice),
        _ => None,
    }
}

/// Installed models of one role, sorted by name.
pub fn installed_of(config: &Config, role: ModelRole) -> Vec<InstalledModel> {
    installed(config).into_iter().filter(|m| m.role == role).collect()
}

/// Finds an installed model of `role` by its name or a checkpoint-style alias: a file name
/// with an extension (`tiny-sd.safetensors`, `tiny-sd.ckpt`) or a subfolder path
/// (`SD1.5/tiny-sd.safetensors`), as ComfyUI and A1111 clients send them.
pub fn find(config: &Config, role: ModelRole, requested: &str) -> Option<InstalledModel> {
    let models = installed_of(config, role);
    if let Some(m) = models.iter().find(|m| m.name == requested) {
        return Some(m.clone());
    }
    let base = requested.rsplit(['/', '\\']).next().unwrap_or(requested);
    let stem = strip_model_extension(base);
    models.into_iter().find(|m| m.name == stem || m.name.eq_ignore_ascii_case(stem))
}

/// `name` without a checkpoint file extension.
pub fn strip_model_extension(name: &str) -> &str {
    const EXTS: [&str; 6] = [".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx"];
    EXTS.iter().find_map(|ext| name.strip_suffix(ext)).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_models() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = dir.path().join("tiny-sd");
        std::fs::create_dir_all(&sd).expect("mkdir");
        std::fs::write(sd.join("model_index.json"), "{}").expect("write");
        let voice = dir.path().join("en_US-joe-medium");
        std::fs::create_dir_all(&voice).expect("mkdir");
        std::fs::write(voice.join("en_US-joe-medium.onnx"), "x").expect("write");
        std::fs::write(voice.join("en_US-joe-medium.onnx.json"), "{}").expect("write");
        std::fs::create_dir_all(dir.path().join(".staging/other")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
        dir
    }

    #[test]
    fn models_are_told_apart_by_their_files() {
        let dir = fake_models();
        let found: Vec<(String, ModelRole)> = installed_in(dir.path()).into_iter().map(|m| (m.name, m.role)).collect();
        assert_eq!(
            found,
            vec![("en_US-joe-medium".to_string(), ModelRole::Voice), ("tiny-sd".to_string(), ModelRole::Diffusion)]
        );
    }

    #[test]
    fn checkpoint_file_names_find_the_model_directory() {
        let dir = fake_models();
        let config = Config { models_dir: Some(dir.path().to_path_buf()), ..Config::default() };
        for name in ["tiny-sd", "tiny-sd.safetensors", "SD1.5/tiny-sd.ckpt", "SD1.5\\tiny-sd.safetensors"] {
            assert_eq!(find(&config, ModelRole::Diffusion, name).map(|m| m.name), Some("tiny-sd".into()), "{name}");
        }
        assert!(find(&config, ModelRole::Diffusion, "en_US-joe-medium").is_none());
        assert!(find(&config, ModelRole::Diffusion, "missing.safetensors").is_none());
    }
}

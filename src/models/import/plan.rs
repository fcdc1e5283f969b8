//! What an import of ready ONNX files copies, and under which names: a Piper voice's
//! `X.onnx` + `X.onnx.json`, a Stable Diffusion ONNX folder's `model_index.json` and part
//! folders, or the one ONNX file of a single-file model (lip-sync, upscale, face), given
//! itself or in a folder, installed as the `model.onnx` its loader opens. Nothing else at
//! the path is copied: it is listed as left out.

use std::path::{Path, PathBuf};

use super::super::fetch::hash_file;
use super::super::manifest::{self, Manifest, ManifestFile, ModelKind};
use super::super::{MODEL_FILE, ModelError, layout};
use super::Via;

/// What an import will copy and the manifest it will write.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub manifest: Manifest,
    /// (path inside the model dir, source file).
    pub copies: Vec<(String, PathBuf)>,
    /// Files at the imported folder that are not part of the model, not copied (paths
    /// relative to it: notes, pictures, PyTorch weights beside an ONNX export).
    pub left_out: Vec<String>,
    /// What the kind's loader opens to check the model where it lies: the ONNX file of a
    /// single-file model or a voice, a diffusion model's folder.
    pub load_from: PathBuf,
}

impl ImportPlan {
    /// The ONNX files it copies, where they lie now (each a session the check loads).
    pub fn onnx_sources(&self) -> impl Iterator<Item = &Path> {
        self.copies.iter().filter(|(rel, _)| rel.ends_with(".onnx")).map(|(_, src)| src.as_path())
    }
}

/// Why a path is no model to copy, said after the path (`ModelError::Import`'s reason).
#[derive(Debug)]
struct Refusal(String);

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Refusal(reason)
    }
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal(reason.to_string())
    }
}

/// What a path holds: the name it suggests, its kind, the files to copy, what to load.
struct Picked {
    name: String,
    kind: ModelKind,
    copies: Vec<(String, PathBuf)>,
    load_from: PathBuf,
}

/// Works out an import of `path` (an `.onnx` file, or a folder).
/// `via` is where it was asked for: its refusals name the options the asker sets.
pub fn plan(path: &Path, name: Option<&str>, kind: Option<ModelKind>, via: Via) -> Result<ImportPlan, ModelError> {
    let fail = |reason: String| ModelError::Import { path: path.to_path_buf(), reason };
    if !path.exists() {
        return Err(fail("no such file or directory".into()));
    }
    let (picked, left_out) = if path.is_file() {
        (file(path, kind, via).map_err(|r| fail(r.0))?, Vec::new())
    } else {
        let all = walk(path).map_err(|e| fail(e.to_string()))?;
        let picked = folder(path, kind, via).map_err(|r| fail(r.0))?;
        let left_out = all
            .into_iter()
            .filter(|(_, src)| !picked.copies.iter().any(|(_, c)| c == src))
            .map(|(rel, _)| rel)
            .collect();
        (picked, left_out)
    };
    let name = name.map(str::to_owned).unwrap_or(picked.name);
    if !manifest::valid_name(&name) {
        return Err(fail(format!("name {name:?} {}", manifest::NAME_RULE)));
    }
    let summary = format!("{IMPORTED_FROM}{}", path.display());
    let manifest = manifest_of(path, name, picked.kind, summary, &picked.copies)?;
    Ok(ImportPlan { manifest, copies: picked.copies, left_out, load_from: picked.load_from })
}

/// How an import's manifest summary begins; [`source_of`] reads the path back.
const IMPORTED_FROM: &str = "imported from ";

/// Where an imported model came from, as its manifest's summary says (`imported from
/// PATH`, or a conversion's `… converted from PATH`); `None` for a catalog model, whose
/// manifest names sources (and whose summary may say anything).
pub fn source_of(m: &Manifest) -> Option<&str> {
    if !m.sources.is_empty() {
        return None;
    }
    m.summary
        .strip_prefix(IMPORTED_FROM)
        .or_else(|| m.summary.rsplit_once(super::super::convert::CONVERTED_FROM).map(|(_, path)| path))
        .filter(|p| !p.is_empty())
}

/// The name an import of file `path` installs under when none is given: a Piper voice
/// keeps its file's stem (Piper's naming, which `Voice::find` looks for); any other file
/// has its stem made into a model name (`4x Ultra Sharp.onnx` → `4x-Ultra-Sharp`).
pub fn default_file_name(path: &Path, kind: Option<ModelKind>) -> String {
    match piper_pair(path) {
        Some(voice) if kind.is_none_or(|k| k == ModelKind::Tts) => voice.name,
        _ => super::super::convert::default_name(path),
    }
}

/// An `.onnx` file given itself: a Piper voice (its config beside it), or with `--kind` the
/// one file of a single-file model.
fn file(path: &Path, kind: Option<ModelKind>, via: Via) -> Result<Picked, Refusal> {
    if path.extension().is_none_or(|x| x != "onnx") {
        return Err("a file imported as it is must be an .onnx model".into());
    }
    match kind {
        None | Some(ModelKind::Tts) => piper_pair(path).ok_or_else(|| match kind {
            None => format!(
                "a lone .onnx file needs its kind named ({}, lipsync or face), or, for a Piper voice, its \
                 X.onnx.json beside it",
                via.set("kind", "\"upscale\"")
            )
            .into(),
            _ => "a Piper voice needs its config beside it (X.onnx.json, or X.json)".into(),
        }),
        Some(ModelKind::Diffusion) => Err("a Stable Diffusion ONNX model is a folder (model_index.json, \
                                           unet/model.onnx, ...): import the folder"
            .into()),
        Some(k) => Ok(single(path, k, default_file_name(path, kind))),
    }
}

/// A folder: a Stable Diffusion ONNX layout, a Piper voice in it, or with `--kind` a
/// single-file model's one ONNX file.
fn folder(dir: &Path, kind: Option<ModelKind>, via: Via) -> Result<Picked, Refusal> {
    std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    let diffusion = layout::is_diffusion(dir);
    match kind {
        None | Some(ModelKind::Diffusion) if diffusion => diffusion_folder(dir),
        Some(ModelKind::Diffusion) => Err("no Stable Diffusion ONNX layout here (model_index.json, \
                                           unet/model.onnx); checkpoints and diffusers folders are converted"
            .into()),
        Some(k) if diffusion => Err(format!(
            "a Stable Diffusion ONNX folder (model_index.json, unet/model.onnx) is a diffusion model, not {}",
            k.as_str()
        )
        .into()),
        None | Some(ModelKind::Tts) => {
            let mut voices: Vec<Picked> = layout::onnx_files(dir).iter().filter_map(|p| piper_pair(p)).collect();
            match (voices.len(), kind) {
                (1, _) => Ok(voices.remove(0)),
                (0, None) => Err(format!(
                    "no model reelbox knows in this folder: not a Piper voice (X.onnx + X.onnx.json), nor a \
                     Stable Diffusion folder (model_index.json); checkpoints (.safetensors, .ckpt, .pth) are \
                     imported as the file itself; name the kind ({}) to import another ONNX folder",
                    via.name("kind")
                )
                .into()),
                (0, _) => Err("no Piper voice in this folder (X.onnx with X.onnx.json beside it)".into()),
                _ => Err("more than one Piper voice here; import the .onnx file itself".into()),
            }
        }
        Some(k) => {
            let onnx = layout::onnx_files(dir);
            let one = match onnx.as_slice() {
                [] => {
                    return Err(format!(
                        "no .onnx file in this folder, so it is no {} model to copy; checkpoints \
                         (.safetensors, .ckpt, .pth) are imported as the file itself",
                        k.as_str()
                    )
                    .into());
                }
                [one] => one,
                many => many.iter().find(|p| p.file_name().is_some_and(|n| n == MODEL_FILE)).ok_or_else(|| {
                    let names: Vec<String> = many.iter().map(|p| file_name(p)).collect();
                    let kind = via.set("kind", &format!("{:?}", k.as_str()));
                    let again = match via {
                        Via::Cli => {
                            let file = crate::error_text::shell_word(&many[0].display().to_string());
                            format!("`reelbox models import {file} {kind}`")
                        }
                        Via::Api => format!("{}, {kind}", via.set("path", &format!("{:?}", many[0].display()))),
                    };
                    format!(
                        "{} .onnx files here ({}) and none is {MODEL_FILE}, the one {} model file reelbox \
                         opens: import the one you mean as the file itself ({again})",
                        many.len(),
                        names.join(", "),
                        k.as_str(),
                    )
                })?,
            };
            Ok(single(one, k, dir_name(dir)))
        }
    }
}

/// A single-file model: `onnx` installed as `model.onnx` (whatever it was called), with
/// its external data beside it, which keeps its own name (the model refers to it by that).
fn single(onnx: &Path, kind: ModelKind, name: String) -> Picked {
    let mut copies = vec![(MODEL_FILE.to_string(), onnx.to_path_buf())];
    let own = file_name(onnx);
    let siblings = onnx.parent().and_then(|d| std::fs::read_dir(d).ok()).into_iter().flatten().flatten();
    for sibling in siblings.map(|e| e.path()).filter(|p| p.is_file()) {
        let n = file_name(&sibling);
        // ONNX's external data conventions: `X.onnx.data`, `X.onnx_data`.
        if n.len() > own.len() && n.starts_with(&own) && n[own.len()..].starts_with(['.', '_']) {
            copies.push((n, sibling));
        }
    }
    Picked { name, kind, copies, load_from: onnx.to_path_buf() }
}

/// Endings of weights the ONNX pipeline never reads (PyTorch, Flax): a hub snapshot holds
/// them beside its ONNX export, as the catalog's manifests `exclude` them too.
const NOT_ONNX_WEIGHTS: [&str; 6] = [".safetensors", ".bin", ".msgpack", ".ckpt", ".pth", ".pt"];

/// A Stable Diffusion ONNX folder: `model_index.json` and its part folders (text
/// encoders, tokenizers, UNet with its external data, VAE, scheduler), less other weights.
fn diffusion_folder(dir: &Path) -> Result<Picked, Refusal> {
    let copies = walk(dir)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(rel, _)| {
            if rel.contains('/') {
                !NOT_ONNX_WEIGHTS.iter().any(|x| rel.ends_with(x))
            } else {
                rel == "model_index.json"
            }
        })
        .collect();
    Ok(Picked { name: dir_name(dir), kind: ModelKind::Diffusion, copies, load_from: dir.to_path_buf() })
}

/// The manifest of a converted model in `dir` (every file in it, hashed).
pub fn plan_converted(dir: &Path, name: &str, kind: ModelKind, summary: String) -> Result<Manifest, ModelError> {
    let copies = walk(dir).map_err(|e| ModelError::Import { path: dir.to_path_buf(), reason: e.to_string() })?;
    manifest_of(dir, name.to_string(), kind, summary, &copies)
}

/// A manifest listing `copies` (hashed) under `name`; `path` is what errors name.
fn manifest_of(
    path: &Path,
    name: String,
    kind: ModelKind,
    summary: String,
    copies: &[(String, PathBuf)],
) -> Result<Manifest, ModelError> {
    let fail = |reason: String| ModelError::Import { path: path.to_path_buf(), reason };
    if copies.is_empty() {
        return Err(fail("nothing to import".into()));
    }
    let mut files = Vec::with_capacity(copies.len());
    for (rel, src) in copies {
        let (sha256, size) = hash_file(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
        files.push(ManifestFile { path: rel.clone(), size, sha256 });
    }
    let manifest = Manifest { summary, ..Manifest::new(name, kind, files) };
    manifest.validate().map_err(|e| fail(e.to_string()))?;
    Ok(manifest)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn dir_name(path: &Path) -> String {
    path.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "imported".into())
}

/// `X.onnx` with `X.onnx.json` (or `X.json`) → name X and the two files.
fn piper_pair(onnx: &Path) -> Option<Picked> {
    let json = layout::piper_config(onnx)?;
    let file = file_name(onnx);
    let stem = onnx.file_stem()?.to_string_lossy().into_owned();
    // Installed voices keep Piper's naming, which Voice::load looks for.
    let copies = vec![(file.clone(), onnx.to_path_buf()), (format!("{file}.json"), json)];
    Some(Picked { name: stem, kind: ModelKind::Tts, copies, load_from: onnx.to_path_buf() })
}

/// Every regular file under `root` (dotfiles skipped), as (relative path, file).
fn walk(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file()
                && let Ok(rel) = p.strip_prefix(root)
            {
                out.push((rel.to_string_lossy().replace('\\', "/"), p.clone()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piper_pair_is_found_from_its_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("v.onnx"), b"onnx").expect("write");
        std::fs::write(dir.path().join("v.onnx.json"), b"{}").expect("write");
        std::fs::write(dir.path().join("README.md"), b"about v").expect("write");
        let plan = plan(dir.path(), None, None, Via::Cli).expect("plan");
        assert_eq!(plan.manifest.name, "v");
        assert_eq!(plan.manifest.kind, ModelKind::Tts);
        let paths: Vec<_> = plan.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["v.onnx", "v.onnx.json"]);
        assert_eq!(plan.left_out, ["README.md"]);
        // `printf onnx | sha256sum`
        assert_eq!(plan.manifest.files[0].sha256, "87e93f89f2be0db364e8be052f79f389e6c2da239831922e24513288af522a43");
        assert_eq!(plan.manifest.files[0].size, 4);
        assert_eq!(source_of(&plan.manifest), Some(dir.path().to_str().expect("utf-8")));
    }

    #[test]
    fn diffusion_layout_is_recognised_and_walked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("my-sd");
        std::fs::create_dir_all(root.join("unet")).expect("mkdir");
        std::fs::write(root.join("model_index.json"), b"{}").expect("write");
        std::fs::write(root.join("unet/model.onnx"), b"x").expect("write");
        std::fs::write(root.join("unet/model.onnx_data"), b"x").expect("write");
        std::fs::write(root.join("unet/diffusion_pytorch_model.safetensors"), b"x").expect("write");
        std::fs::write(root.join("README.md"), b"x").expect("write");
        std::fs::write(root.join(".DS_Store"), b"x").expect("write");
        let plan = plan(&root, None, None, Via::Cli).expect("plan");
        assert_eq!(plan.manifest.name, "my-sd");
        assert_eq!(plan.manifest.kind, ModelKind::Diffusion);
        let paths: Vec<_> = plan.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["model_index.json", "unet/model.onnx", "unet/model.onnx_data"]);
        assert_eq!(plan.left_out, ["README.md", "unet/diffusion_pytorch_model.safetensors"]);
        let err = super::plan(&root, None, Some(ModelKind::Upscale), Via::Cli).expect_err("an SD folder").to_string();
        assert!(err.contains("is a diffusion model, not upscale"), "{err}");
    }

    #[test]
    fn a_single_file_model_is_installed_as_model_onnx_whatever_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let esr = dir.path().join("esr");
        std::fs::create_dir_all(&esr).expect("mkdir");
        let file = esr.join("Real-ESRGAN x4plus.onnx");
        std::fs::write(&file, b"x").expect("write");
        std::fs::write(esr.join("Real-ESRGAN x4plus.onnx.data"), b"weights").expect("write");
        std::fs::write(esr.join("notes.txt"), b"x").expect("write");
        let one = plan(&file, None, Some(ModelKind::Upscale), Via::Cli).expect("file");
        assert_eq!(one.manifest.name, "Real-ESRGAN-x4plus");
        let paths: Vec<_> = one.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["model.onnx", "Real-ESRGAN x4plus.onnx.data"]);
        let folder = plan(&esr, None, Some(ModelKind::Upscale), Via::Cli).expect("folder");
        assert_eq!(folder.manifest.name, "esr");
        assert_eq!(folder.copies, one.copies);
        assert_eq!(folder.left_out, ["notes.txt"]);
        assert_eq!(folder.load_from, file);
        // Without a kind a lone ONNX file says which to name.
        let err = plan(&file, None, None, Via::Cli).expect_err("kind").to_string();
        assert!(err.contains("--kind upscale, lipsync or face"), "{err}");
        // Two files, neither model.onnx: which one is meant is asked.
        std::fs::write(esr.join("other.onnx"), b"x").expect("write");
        let err = plan(&esr, None, Some(ModelKind::Face), Via::Cli).expect_err("two").to_string();
        assert!(err.contains("2 .onnx files here (Real-ESRGAN x4plus.onnx, other.onnx)"), "{err}");
        assert!(err.contains(&format!("(`reelbox models import '{}' --kind face`)", file.display())), "{err}");
    }

    #[test]
    fn unknown_layout_asks_for_a_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.onnx"), b"x").expect("write");
        let err = plan(dir.path(), None, None, Via::Cli).expect_err("needs kind").to_string();
        assert!(err.contains("name the kind (--kind)"), "{err}");
        // A `model_import` job names the API's field, not the CLI's flag.
        let err = plan(dir.path(), None, None, Via::Api).expect_err("needs kind").to_string();
        assert!(err.contains(r#"name the kind (the field "kind")"#), "{err}");
        assert!(plan(dir.path(), Some("up"), Some(ModelKind::Upscale), Via::Cli).is_ok());
    }
}

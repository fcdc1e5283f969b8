//! Models named by a file, as ComfyUI and A1111 clients name them: `tiny-sd.safetensors`,
//! `SD1.5/tiny-sd.ckpt`, `Realistic Vision V5.1 (fp16).safetensors`. The file's folder and
//! extension are not part of the model's name, and a file imported without `--name` is
//! installed under the name the import gives it ([`convert::default_name`]), so that name
//! is tried too: the one rule, not a second spelling of it.

use std::path::Path;

use super::catalog::{Catalog, CatalogModel};
use super::convert;
use super::manifest::ModelKind;

/// `name` without a checkpoint file extension.
pub fn strip_model_extension(name: &str) -> &str {
    const EXTS: [&str; 6] = [".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx"];
    EXTS.iter().find_map(|ext| name.strip_suffix(ext)).unwrap_or(name)
}

/// The model of `names` that a client's `requested` means, best first: the name itself;
/// the file's stem without its folder and extension (any case); the name an import of the
/// file gives it, now (`Realistic-Vision-V5.1-fp16`) and before runs of `-` were joined
/// (`Realistic-Vision-V5.1--fp16-`, which models imported then keep).
pub fn named_by_file<'a>(requested: &str, names: &'a [String]) -> Option<&'a String> {
    if let Some(exact) = names.iter().find(|n| *n == requested) {
        return Some(exact);
    }
    let base = requested.rsplit(['/', '\\']).next().unwrap_or(requested);
    let stem = strip_model_extension(base);
    // The import names a model from its file's stem (it strips one extension too).
    let file = Path::new(base);
    let imported = [convert::default_name(file), convert::former_default_name(file)];
    let candidates = std::iter::once(stem).chain(imported.iter().map(String::as_str));
    candidates.into_iter().find_map(|c| names.iter().find(|n| n.eq_ignore_ascii_case(c)))
}

impl Catalog {
    /// An installed model of `kind` by its name or as a client names its file
    /// ([`named_by_file`]): `tiny-sd.safetensors`, `SD1.5/tiny-sd.ckpt`, `4x Ultra Sharp.pth`.
    pub fn find(&self, kind: ModelKind, requested: &str) -> Option<&CatalogModel> {
        let names = self.installed_names(kind);
        let name = named_by_file(requested, &names)?;
        self.installed(kind).find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::catalog::tests::fake;

    #[test]
    fn checkpoint_file_names_find_the_model_directory() {
        let (_dir, store) = fake();
        let catalog = Catalog::of(&store);
        for name in ["tiny-sd", "tiny-sd.safetensors", "SD1.5/tiny-sd.ckpt", "SD1.5\\tiny-sd.safetensors"] {
            assert_eq!(catalog.find(ModelKind::Diffusion, name).map(CatalogModel::name), Some("tiny-sd"), "{name}");
        }
        assert!(catalog.find(ModelKind::Diffusion, "en_US-joe-medium").is_none());
        assert!(catalog.find(ModelKind::Diffusion, "missing.safetensors").is_none());
    }

    #[test]
    fn a_file_name_with_spaces_finds_the_model_its_import_named_then_or_now() {
        let names: Vec<String> = ["Realistic-Vision-V5.1-fp16", "4x-Ultra-Sharp--1-", "dreamshaper_8"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let found = |requested: &str| named_by_file(requested, &names).map(String::as_str);
        assert_eq!(found("SD1.5/Realistic Vision V5.1 (fp16).safetensors"), Some("Realistic-Vision-V5.1-fp16"));
        assert_eq!(found("4x Ultra Sharp (1).pth"), Some("4x-Ultra-Sharp--1-"), "imported under the former rule");
        assert_eq!(found("DreamShaper_8.safetensors"), Some("dreamshaper_8"));
        assert_eq!(found("Realistic Vision V6.0.safetensors"), None);
    }
}

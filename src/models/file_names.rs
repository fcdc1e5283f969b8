//! Models named by a file, as ComfyUI and A1111 clients name them: `tiny-sd.safetensors`,
//! `SD1.5/tiny-sd.ckpt`, `4x-UltraSharp.pth`. The file's folder and extension are not
//! part of the model's name.

use super::catalog::{Catalog, CatalogModel};
use super::manifest::ModelKind;

/// `name` without a checkpoint file extension.
pub fn strip_model_extension(name: &str) -> &str {
    const EXTS: [&str; 6] = [".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx"];
    EXTS.iter().find_map(|ext| name.strip_suffix(ext)).unwrap_or(name)
}

impl Catalog {
    /// An installed model of `kind` by its name or a checkpoint-style alias: a file name
    /// with an extension (`tiny-sd.safetensors`, `tiny-sd.ckpt`) or a subfolder path
    /// (`SD1.5/tiny-sd.safetensors`), as ComfyUI and A1111 clients send them.
    pub fn find(&self, kind: ModelKind, requested: &str) -> Option<&CatalogModel> {
        if let Some(m) = self.installed(kind).find(|m| m.name() == requested) {
            return Some(m);
        }
        let base = requested.rsplit(['/', '\\']).next().unwrap_or(requested);
        let stem = strip_model_extension(base);
        self.installed(kind).find(|m| m.name() == stem || m.name().eq_ignore_ascii_case(stem))
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
}

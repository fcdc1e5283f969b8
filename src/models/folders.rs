//! A manifest's `folders` turned into files: each folder of its `hf:` source is listed
//! with the hub's tree API, and every file in it (less the `exclude`d endings) becomes a
//! manifest file with the hub's size and, for LFS files, its sha256. A file the manifest
//! lists itself keeps what the manifest pins (the catalog's sha256 wins over the hub's).

use std::collections::BTreeMap;

use super::ModelError;
use super::fetch::FetchError;
use super::hf::{HfSource, Hub, TreeEntry};
use super::manifest::{Manifest, ManifestFile, Source, check_relative};

/// `m` with its folders listed into files (unchanged when it has none); the first `hf:`
/// source whose hub answers is asked.
pub(super) async fn expand(m: &Manifest) -> Result<Manifest, ModelError> {
    if m.folders.is_empty() {
        return Ok(m.clone());
    }
    let hub = Hub::from_env();
    let mut failures = Vec::new();
    for source in m.parsed_sources() {
        let Source::Hf(hf) = source else { continue };
        match list(&hub, &hf, m).await {
            Ok(files) => return Ok(Manifest { files, ..m.clone() }),
            Err(e) => failures.push(e),
        }
    }
    Err(ModelError::Fetch { name: m.name.clone(), failures })
}

async fn list(hub: &Hub, hf: &HfSource, m: &Manifest) -> Result<Vec<ManifestFile>, FetchError> {
    let mut by_path: BTreeMap<String, ManifestFile> = BTreeMap::new();
    for folder in &m.folders {
        let unavailable =
            |reason: String| FetchError::Unavailable { source_name: hf.describe(), file: format!("{folder}/"), reason };
        let entries = hub
            .tree(&hf.repo, &hf.revision, &hf.remote_path(folder))
            .await
            .map_err(|e| e.for_source(&hf.describe(), &format!("{folder}/"), "listing the folder: "))?;
        let files = files_of(&entries, &hf.dir, &m.exclude);
        if files.is_empty() {
            return Err(unavailable("the hub lists no files there".into()));
        }
        for f in files {
            by_path.entry(f.path.clone()).or_insert(f);
        }
    }
    // The manifest's own entries win (they pin what the catalog checked).
    for f in &m.files {
        let hub_file = by_path.remove(&f.path);
        let size = if f.pinned_size().is_some() { f.size } else { hub_file.as_ref().map_or(0, |h| h.size) };
        let sha256 = match (f.pinned_sha256(), hub_file) {
            (Some(_), _) | (None, None) => f.sha256.clone(),
            (None, Some(h)) => h.sha256,
        };
        by_path.insert(f.path.clone(), ManifestFile { path: f.path.clone(), size, sha256 });
    }
    Ok(by_path.into_values().collect())
}

/// The files among `entries`, with paths relative to the source's `dir`, less those whose
/// names end with one of `exclude` or that would leave the model directory.
fn files_of(entries: &[TreeEntry], dir: &str, exclude: &[String]) -> Vec<ManifestFile> {
    entries
        .iter()
        .filter(|e| e.is_file())
        .filter_map(|e| {
            let path = if dir.is_empty() { e.path.as_str() } else { e.path.strip_prefix(dir)?.strip_prefix('/')? };
            let name = path.rsplit('/').next().unwrap_or(path);
            if exclude.iter().any(|x| name.ends_with(x.as_str())) || check_relative(path).is_err() {
                return None;
            }
            let sha256 = e.sha256().map(str::to_ascii_lowercase).unwrap_or_default();
            Some(ManifestFile { path: path.to_string(), size: e.file_size(), sha256 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, lfs: Option<&str>) -> TreeEntry {
        let json = match lfs {
            Some(sha) => {
                format!(r#"{{"type":"file","path":"{path}","size":134,"oid":"x","lfs":{{"oid":"{sha}","size":9}}}}"#)
            }
            None => format!(r#"{{"type":"file","path":"{path}","size":5,"oid":"x"}}"#),
        };
        serde_json::from_str(&json).expect("entry")
    }

    #[test]
    fn folder_files_are_relative_to_the_source_and_excludes_drop_weights_of_other_formats() {
        let sha = "e".repeat(64);
        let entries = vec![
            entry("onnx/unet/model.onnx", Some(&sha)),
            entry("onnx/unet/config.json", None),
            entry("onnx/unet/diffusion_pytorch_model.safetensors", Some(&sha)),
            entry("other/x.onnx", None),
        ];
        let files = files_of(&entries, "onnx", &[".safetensors".into()]);
        let got: Vec<(&str, u64, &str)> = files.iter().map(|f| (f.path.as_str(), f.size, f.sha256.as_str())).collect();
        assert_eq!(got, [("unet/model.onnx", 9, sha.as_str()), ("unet/config.json", 5, "")]);
    }
}

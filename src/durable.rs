//! Small files written so that a crash or power cut leaves the old content or the new one,
//! never half of either: the bytes go to a temp file beside the target, are fsynced, and the
//! temp file is renamed over the target, whose directory is then fsynced.
//!
//! A leaf module (it uses nothing else in the crate), so the API's ComfyUI files and the
//! models' manifests and choices share the one write without importing each other.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` as `path` through `<path>.partial`, creating the directory if needed.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = temp_of(path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_dir(dir);
    Ok(())
}

/// What a temp file's name ends with; a crash can leave one behind, and sweeps look for it.
pub const TEMP_SUFFIX: &str = ".partial";

/// The temp name beside `path` (`x.json` → `x.json.partial`), which no reader of `x.json`
/// or of a folder's `*.json` takes for the file.
pub fn temp_of(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Makes a rename into `dir` durable. A failure only weakens crash safety (the file itself
/// is whole), so it is logged rather than returned.
pub fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!("cannot fsync {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("index.json");
        write(&path, b"old").expect("first write");
        write(&path, b"new").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        let names: Vec<_> =
            std::fs::read_dir(path.parent().expect("dir")).expect("list").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["index.json"]);
    }
}

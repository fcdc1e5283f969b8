//! The ranged parts of one download and how far each has come, kept in
//! `<dest>.partial.parts` (one line per part: its bytes done) so a restarted pull
//! continues every part where it stopped.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes per ranged part.
const PART_SIZE: u64 = 8 << 20;
/// Bytes between saves of the parts file (a crash loses at most this much per part).
const SAVE_EVERY: u64 = 1 << 20;

/// The parts of one `.partial` and how far each has come, saved beside it.
pub(super) struct Parts {
    path: PathBuf,
    /// The whole file's bytes.
    pub(super) size: u64,
    state: Mutex<PartsState>,
}

struct PartsState {
    done: Vec<u64>,
    unsaved: u64,
}

impl Parts {
    /// Continues the parts file of `partial` when it matches `size`, else starts afresh
    /// with a `.partial` of the full size to write the parts into.
    pub(super) fn open(partial: &Path, size: u64) -> Result<Self, super::HubError> {
        let path = parts_path(partial);
        let count = usize::try_from(size.div_ceil(PART_SIZE)).unwrap_or(usize::MAX).max(1);
        let partial_len = std::fs::metadata(partial).map(|m| m.len()).ok();
        let saved = std::fs::read_to_string(&path).ok().and_then(|text| parse_parts(&text, size, count));
        let done = match (saved, partial_len) {
            (Some(done), Some(len)) if len == size => done,
            _ => {
                let file_err = |source| super::HubError::File { path: partial.to_path_buf(), source };
                let f = std::fs::File::create(partial).map_err(file_err)?;
                f.set_len(size).map_err(file_err)?;
                vec![0; count]
            }
        };
        let parts = Parts { path, size, state: Mutex::new(PartsState { done, unsaved: 0 }) };
        parts.save();
        Ok(parts)
    }

    pub(super) fn count(&self) -> usize {
        self.lock().done.len()
    }

    /// Part `i`'s byte range `[start, end)`.
    pub(super) fn bounds(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * PART_SIZE;
        (start, (start + PART_SIZE).min(self.size))
    }

    pub(super) fn done(&self, i: usize) -> u64 {
        self.lock().done.get(i).copied().unwrap_or(0)
    }

    pub(super) fn total_done(&self) -> u64 {
        self.lock().done.iter().sum()
    }

    /// Records `n` more bytes of part `i` and returns the file's total so far.
    pub(super) fn advance(&self, i: usize, n: u64) -> u64 {
        let mut state = self.lock();
        if let Some(d) = state.done.get_mut(i) {
            *d += n;
        }
        state.unsaved += n;
        if state.unsaved >= SAVE_EVERY {
            state.unsaved = 0;
            write_parts(&self.path, &state.done);
        }
        state.done.iter().sum()
    }

    pub(super) fn save(&self) {
        write_parts(&self.path, &self.lock().done);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PartsState> {
        // A panic while holding it leaves only counters behind, still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `<partial>.parts`: the file size, then each part's bytes done, one a line.
pub(super) fn parts_path(partial: &Path) -> PathBuf {
    let mut s = partial.as_os_str().to_owned();
    s.push(".parts");
    PathBuf::from(s)
}

fn write_parts(path: &Path, done: &[u64]) {
    let text: String = done.iter().map(|d| format!("{d}\n")).collect();
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!(path = %path.display(), error = %e, "cannot save download progress; a restart begins anew");
    }
}

/// The saved per-part progress, when it fits a file of `size` in `count` parts.
fn parse_parts(text: &str, size: u64, count: usize) -> Option<Vec<u64>> {
    let done: Vec<u64> = text.lines().map(|l| l.trim().parse().ok()).collect::<Option<_>>()?;
    let fits = done.len() == count
        && done
            .iter()
            .enumerate()
            .all(|(i, d)| *d <= (i as u64 * PART_SIZE + PART_SIZE).min(size) - i as u64 * PART_SIZE);
    fits.then_some(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_parts_are_used_only_when_they_fit_the_file() {
        let size = PART_SIZE + 10;
        assert_eq!(parse_parts("5\n10\n", size, 2), Some(vec![5, 10]));
        assert_eq!(parse_parts("5\n11\n", size, 2), None, "past the part's end");
        assert_eq!(parse_parts("5\n", size, 2), None, "another layout");
    }
}

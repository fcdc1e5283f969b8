//! Which sessions stay loaded: least-recently-used eviction under a per-device memory
//! budget, and unloading after a keep-alive of idleness (Ollama's model, 5 minutes by
//! default). Generic over the cached value so the policy is tested without ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::SessionProfile;
use crate::gpu::DeviceId;
use crate::store::records::{Millis, now_ms};

/// Cache key: one session per model file, device and build profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub model: PathBuf,
    pub device: DeviceId,
    pub profile: SessionProfile,
    /// Name of an in-memory transform applied before loading ("" for the file as is).
    pub variant: &'static str,
}

struct Entry<T> {
    key: Key,
    value: Arc<T>,
    bytes: u64,
    loaded_at: Millis,
    load_ms: u64,
    last_used: Instant,
    uses: u64,
    /// Idle time after which it goes: the cache's keep-alive, or less once shortened
    /// ([`SessionCache::shorten`]).
    keep_alive: Duration,
}

impl<T> Entry<T> {
    /// A value is in use while anyone besides the cache holds it.
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.value) > 1
    }
}

/// A snapshot of one loaded session, for `GET /api/v1/system`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedSession {
    /// Model file the session was created from.
    pub model: PathBuf,
    /// Device name: `cpu`, `cuda:0`.
    pub device: String,
    /// How the session was built.
    pub profile: SessionProfile,
    /// In-memory transform of the model ("" for none), e.g. `durations`.
    pub variant: String,
    /// Estimated memory held, bytes (model file plus external weights).
    pub bytes: u64,
    /// When it was loaded, Unix milliseconds.
    pub loaded_at: Millis,
    /// How long creating the session took, milliseconds.
    pub load_ms: u64,
    /// Seconds since it was last handed out.
    pub idle_s: u64,
    /// Seconds until the keep-alive unloads it (0 while in use counts from the end of use).
    pub expires_in_s: u64,
    /// True while a job holds it.
    pub in_use: bool,
    /// Times it was handed out.
    pub uses: u64,
}

/// The cache policy state; callers hold it behind a mutex.
pub struct SessionCache<T> {
    entries: Vec<Entry<T>>,
    /// Per-device budget in bytes; `None` means unlimited.
    budget: Option<u64>,
    keep_alive: Duration,
}

impl<T> SessionCache<T> {
    /// An empty cache with a per-device budget (bytes, `None` = unlimited) and keep-alive.
    pub fn new(budget: Option<u64>, keep_alive: Duration) -> Self {
        Self { entries: Vec::new(), budget, keep_alive }
    }

    /// Hands out a cached value and marks it used.
    pub fn get(&mut self, key: &Key, now: Instant) -> Option<Arc<T>> {
        let e = self.entries.iter_mut().find(|e| &e.key == key)?;
        e.last_used = now;
        e.uses += 1;
        Some(e.value.clone())
    }

    /// True when `key` is cached (does not count as a use).
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.iter().any(|e| &e.key == key)
    }

    /// Evicts idle values on `device`, least recently used first, until `bytes` more fit
    /// the budget. Returns the evicted keys; values in use are never evicted, so the budget
    /// may still be exceeded (the caller logs it).
    pub fn make_room(&mut self, device: DeviceId, bytes: u64) -> Vec<Key> {
        let Some(budget) = self.budget else { return Vec::new() };
        let mut evicted = Vec::new();
        while self.device_bytes(device) + bytes > budget {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.key.device == device && !e.in_use())
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            let Some(i) = victim else { break };
            evicted.push(self.entries.remove(i).key);
        }
        evicted
    }

    /// Adds a freshly loaded value (already counted as one use).
    pub fn insert(&mut self, key: Key, value: Arc<T>, bytes: u64, load_ms: u64, now: Instant) {
        self.entries.retain(|e| e.key != key);
        let keep_alive = self.keep_alive;
        self.entries.push(Entry {
            key,
            value,
            bytes,
            loaded_at: now_ms(),
            load_ms,
            last_used: now,
            uses: 1,
            keep_alive,
        });
    }

    /// Drops values idle for longer than the keep-alive. A value still in use counts as
    /// used now, so a long job does not come back to an expired session.
    pub fn expire(&mut self, now: Instant) -> Vec<Key> {
        for e in self.entries.iter_mut().filter(|e| e.in_use()) {
            e.last_used = now;
        }
        let mut evicted = Vec::new();
        self.entries.retain(|e| {
            let keep = e.in_use() || now.saturating_duration_since(e.last_used) < e.keep_alive;
            if !keep {
                evicted.push(e.key.clone());
            }
            keep
        });
        evicted
    }

    /// Lets the values of models under `dir` on `device` go after `keep_alive` of idleness
    /// when that is shorter than theirs, until they are loaded again; returns how many.
    pub fn shorten(&mut self, dir: &Path, device: DeviceId, keep_alive: Duration) -> usize {
        let mut shortened = 0;
        for e in self.entries.iter_mut().filter(|e| e.key.device == device && e.key.model.starts_with(dir)) {
            e.keep_alive = e.keep_alive.min(keep_alive);
            shortened += 1;
        }
        shortened
    }

    /// Drops every value no job is using now, idle or not (ComfyUI's `/free`).
    pub fn drop_unused(&mut self) -> Vec<Key> {
        let mut evicted = Vec::new();
        self.entries.retain(|e| {
            if !e.in_use() {
                evicted.push(e.key.clone());
            }
            e.in_use()
        });
        evicted
    }

    /// Removes every entry for `model` (any device), e.g. after the model file changed.
    pub fn remove_model(&mut self, model: &Path) -> Vec<Key> {
        let mut removed = Vec::new();
        self.entries.retain(|e| {
            let keep = e.key.model != model;
            if !keep {
                removed.push(e.key.clone());
            }
            keep
        });
        removed
    }

    /// Bytes held on `device`.
    pub fn device_bytes(&self, device: DeviceId) -> u64 {
        self.entries.iter().filter(|e| e.key.device == device).map(|e| e.bytes).sum()
    }

    /// The budget in bytes per device, if any.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    /// Snapshot of every entry, most recently used first.
    pub fn snapshot(&mut self, now: Instant) -> Vec<LoadedSession> {
        let mut out: Vec<(Instant, LoadedSession)> = self
            .entries
            .iter()
            .map(|e| {
                let idle = now.saturating_duration_since(e.last_used);
                let in_use = e.in_use();
                let expires = if in_use { e.keep_alive } else { e.keep_alive.saturating_sub(idle) };
                let session = LoadedSession {
                    model: e.key.model.clone(),
                    device: e.key.device.name(),
                    profile: e.key.profile,
                    variant: e.key.variant.to_string(),
                    bytes: e.bytes,
                    loaded_at: e.loaded_at,
                    load_ms: e.load_ms,
                    idle_s: if in_use { 0 } else { idle.as_secs() },
                    expires_in_s: expires.as_secs(),
                    in_use,
                    uses: e.uses,
                };
                (e.last_used, session)
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.into_iter().map(|(_, s)| s).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, device: DeviceId) -> Key {
        Key { model: PathBuf::from(name), device, profile: SessionProfile::Steady, variant: "" }
    }

    #[test]
    fn least_recently_used_idle_session_is_evicted_first() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(Some(100), Duration::from_secs(300));
        c.insert(key("a", DeviceId::Cpu), Arc::new(()), 40, 0, t0);
        c.insert(key("b", DeviceId::Cpu), Arc::new(()), 40, 0, t0 + Duration::from_secs(1));
        // `a` used again after `b`, so `b` is now the least recently used.
        assert!(c.get(&key("a", DeviceId::Cpu), t0 + Duration::from_secs(2)).is_some());
        let evicted = c.make_room(DeviceId::Cpu, 40);
        assert_eq!(evicted, vec![key("b", DeviceId::Cpu)]);
        assert_eq!(c.device_bytes(DeviceId::Cpu), 40);
    }

    #[test]
    fn budget_is_per_device() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(Some(100), Duration::from_secs(300));
        c.insert(key("a", DeviceId::Cuda(0)), Arc::new(()), 90, 0, t0);
        assert!(c.make_room(DeviceId::Cuda(1), 90).is_empty());
        assert_eq!(c.make_room(DeviceId::Cuda(0), 90), vec![key("a", DeviceId::Cuda(0))]);
    }

    #[test]
    fn sessions_in_use_are_never_evicted() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(Some(50), Duration::from_secs(1));
        c.insert(key("a", DeviceId::Cpu), Arc::new(()), 40, 0, t0);
        let held = c.get(&key("a", DeviceId::Cpu), t0);
        assert!(c.make_room(DeviceId::Cpu, 40).is_empty(), "held session must stay");
        assert!(c.expire(t0 + Duration::from_secs(10)).is_empty(), "held session must not expire");
        drop(held);
        // Use ended just now (the expire pass above refreshed it), so it lives one more keep-alive.
        assert!(c.expire(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(c.expire(t0 + Duration::from_secs(12)), vec![key("a", DeviceId::Cpu)]);
    }

    #[test]
    fn zero_keep_alive_unloads_only_after_use_ends() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(None, Duration::ZERO);
        c.insert(key("a", DeviceId::Cpu), Arc::new(()), 1, 0, t0);
        let held = c.get(&key("a", DeviceId::Cpu), t0);
        assert!(c.expire(t0).is_empty());
        drop(held);
        assert_eq!(c.expire(t0).len(), 1);
    }

    #[test]
    fn idle_sessions_expire_after_keep_alive() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(None, Duration::from_secs(300));
        c.insert(key("a", DeviceId::Cpu), Arc::new(()), 1, 0, t0);
        c.insert(key("b", DeviceId::Cpu), Arc::new(()), 1, 0, t0 + Duration::from_secs(200));
        assert_eq!(c.expire(t0 + Duration::from_secs(301)), vec![key("a", DeviceId::Cpu)]);
        let snap = c.snapshot(t0 + Duration::from_secs(301));
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].idle_s, 101);
        assert_eq!(snap[0].expires_in_s, 199);
    }

    #[test]
    fn a_shortened_model_goes_sooner_and_only_on_its_device() {
        let t0 = Instant::now();
        let mut c = SessionCache::new(None, Duration::from_secs(300));
        c.insert(key("m/unet/model.onnx", DeviceId::Cpu), Arc::new(()), 1, 0, t0);
        c.insert(key("m/vae/model.onnx", DeviceId::Cuda(0)), Arc::new(()), 1, 0, t0);
        c.insert(key("other/model.onnx", DeviceId::Cpu), Arc::new(()), 1, 0, t0);
        assert_eq!(c.shorten(Path::new("m"), DeviceId::Cpu, Duration::from_secs(10)), 1);
        assert_eq!(c.snapshot(t0).iter().map(|s| s.expires_in_s).min(), Some(10));
        assert_eq!(c.expire(t0 + Duration::from_secs(11)), vec![key("m/unet/model.onnx", DeviceId::Cpu)]);
        assert!(c.expire(t0 + Duration::from_secs(299)).is_empty(), "the others keep the keep-alive");
    }

    #[test]
    fn unlimited_budget_never_evicts() {
        let mut c = SessionCache::new(None, Duration::from_secs(300));
        c.insert(key("a", DeviceId::Cpu), Arc::new(()), u64::MAX / 2, 0, Instant::now());
        assert!(c.make_room(DeviceId::Cpu, u64::MAX / 2).is_empty());
    }
}

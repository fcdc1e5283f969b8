//! Cleaning up after boxes that left, on the head: what a box whose heartbeat has been gone
//! longer than `[cluster] forget_box_after_h` left on the server (see [`leftovers`](super::leftovers))
//! is deleted, unless the head still waits for a run of that box, and so is the bucket all
//! boxes shared before each had its own, once it holds nothing. Without this, every box
//! that ever joined would keep an (empty) stream and a consumer on the server for good.

use std::sync::Mutex;

use futures::StreamExt;

use super::Bus;
use super::last_seen::LastSeen;
use super::leftovers::{bucket_boxes, drop_shared_bucket, forget_box, known_boxes, last_write_ms};
use super::protocol::object_bucket;
use crate::config::ClusterConfig;

/// When boxes were last seen alive, and when to look at the buckets next.
pub struct Sweeper {
    /// `forget_box_after_h` in ms; `None`: never forget a box.
    forget_after_ms: Option<i64>,
    /// When each box was last seen alive, also across head restarts.
    last_seen: LastSeen,
    /// Next sweep, ms since the epoch; the shared bucket is looked at until it is gone.
    next_ms: Mutex<i64>,
    /// The shared bucket from before per-box buckets is gone (or never was).
    shared_gone: std::sync::atomic::AtomicBool,
    /// Each box's bucket as last counted for `GET /api/v1/cluster`, and when. Counting
    /// lists every bucket, so it happens only when asked; a tokio lock, held while counting,
    /// so that callers arriving meanwhile take that count instead of listing again.
    usage: tokio::sync::Mutex<Option<(Vec<BoxBucket>, std::time::Instant)>>,
}

impl Sweeper {
    /// A sweeper with `[cluster]`'s setting.
    pub fn new(config: &ClusterConfig) -> Self {
        let hours = config.forget_box_after_h;
        let forget_after_ms = (hours > 0.0).then_some((hours * 3_600_000.0) as i64);
        Self {
            forget_after_ms,
            last_seen: LastSeen::new(every_ms(forget_after_ms)),
            next_ms: Mutex::new(0),
            shared_gone: std::sync::atomic::AtomicBool::new(false),
            usage: tokio::sync::Mutex::new(None),
        }
    }

    /// Notes the boxes alive now; at most every [`Sweeper::every_ms`] deletes what boxes
    /// gone longer than the setting left on the server, except that of `busy` boxes (the head still
    /// waits for a result or keeps one whose outputs are there).
    pub async fn sweep(&self, bus: &Bus, alive: &[String], busy: &[String]) {
        // The head's heartbeat loop calls this: a NATS server that stalls a listing must not
        // stall the head's view of the boxes. What is left undone is done at the next look.
        if tokio::time::timeout(SWEEP_PATIENCE, self.look(bus, alive, busy)).await.is_err() {
            tracing::debug!("the artifact buckets' upkeep took over {SWEEP_PATIENCE:?}; trying again later");
        }
    }

    /// [`Sweeper::sweep`] without its time limit.
    async fn look(&self, bus: &Bus, alive: &[String], busy: &[String]) {
        let now = crate::time::now_ms();
        if self.forget_after_ms.is_some() {
            self.last_seen.note(bus, alive, now).await;
        }
        {
            let mut next = self.next_ms.lock().unwrap_or_else(|p| p.into_inner());
            if now < *next {
                return;
            }
            *next = now + self.every_ms();
        }
        if !self.shared_gone.load(std::sync::atomic::Ordering::Relaxed) && drop_shared_bucket(bus).await {
            self.shared_gone.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let Some(forget_after) = self.forget_after_ms else { return };
        let mut hosts = known_boxes(bus).await;
        hosts.extend(self.last_seen.recorded(bus).await);
        hosts.sort();
        hosts.dedup();
        for host in hosts {
            if alive.contains(&host) || busy.contains(&host) {
                continue;
            }
            let Some(seen) = self.last_seen.since(bus, &host, now).await else { continue };
            let since = seen.max(last_write_ms(bus, &host).await);
            if now - since > forget_after {
                forget_box(bus, &host, now - since, &self.last_seen).await;
                // The next status shows the bucket gone, not a count from before (a count
                // under way is left alone: the sweep does not wait for it).
                if let Ok(mut counted) = self.usage.try_lock() {
                    *counted = None;
                }
            }
        }
    }

    /// Each box's bucket with what it holds, boxes gone included: counted now, or the
    /// count of the last [`USAGE_FRESH`] (a status polled every second lists the buckets
    /// once per that). A count that takes over [`SWEEP_PATIENCE`] gives the last one.
    pub async fn usage(&self, bus: &Bus) -> Vec<BoxBucket> {
        let mut cached = self.usage.lock().await;
        if let Some((counted, at)) = cached.as_ref()
            && at.elapsed() < USAGE_FRESH
        {
            return counted.clone();
        }
        match tokio::time::timeout(SWEEP_PATIENCE, buckets(bus)).await {
            Ok(counted) => {
                *cached = Some((counted.clone(), std::time::Instant::now()));
                counted
            }
            Err(_) => {
                tracing::debug!("counting the artifact buckets took over {SWEEP_PATIENCE:?}");
                cached.as_ref().map(|(c, _)| c.clone()).unwrap_or_default()
            }
        }
    }

    /// How often to look: a quarter of the setting, between 1 s and a minute.
    fn every_ms(&self) -> i64 {
        every_ms(self.forget_after_ms)
    }
}

/// A quarter of the setting, between 1 s and a minute: how often the sweep looks, and how
/// often a live box's last-seen time is written.
fn every_ms(forget_after_ms: Option<i64>) -> i64 {
    forget_after_ms.map_or(60_000, |f| (f / 4).clamp(1_000, 60_000))
}

/// Longest one look at the buckets may take.
const SWEEP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a count of what the boxes' buckets hold (a listing per bucket) is served again.
const USAGE_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// A box's artifact bucket and what it holds, for `reelbox cluster status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoxBucket {
    /// The box.
    pub host: String,
    /// Objects in it (stage inputs and outputs in transit, or left over).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Every box's bucket on the server with what it holds, by box name (empty when this
/// connection may not list streams: a box's own user).
pub async fn buckets(bus: &Bus) -> Vec<BoxBucket> {
    let mut out = Vec::new();
    for host in bucket_boxes(bus).await {
        let Ok(store) = bus.js.get_object_store(object_bucket(&host)).await else { continue };
        if let Some(Usage { objects, bytes }) = usage(&store).await {
            out.push(BoxBucket { host, objects, bytes });
        }
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

/// What a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Objects in it.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The objects in a bucket and their bytes (deleted ones not counted); `None` when the
/// listing fails.
pub async fn usage(store: &async_nats::jetstream::object_store::ObjectStore) -> Option<Usage> {
    let mut list = store.list().await.ok()?;
    let mut u = Usage { objects: 0, bytes: 0 };
    while let Some(info) = list.next().await {
        let info = info.ok()?;
        u.objects += 1;
        u.bytes += info.size as u64;
    }
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_looks_a_quarter_of_the_setting_apart() {
        let at = |h: f64| Sweeper::new(&ClusterConfig { forget_box_after_h: h, ..Default::default() }).every_ms();
        assert_eq!(at(24.0), 60_000, "a minute at most");
        assert_eq!(at(0.001), 1_000, "a second at least");
        assert_eq!(at(0.01), 9_000);
        assert_eq!(at(0.0), 60_000, "never forgetting still drops the old shared bucket");
    }
}

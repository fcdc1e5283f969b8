//! When the head last saw each box alive: exact in memory, and durably in a KV bucket with
//! no TTL ([`SEEN_BUCKET`]) so that the forget clock (`[cluster] forget_box_after_h`)
//! survives a head restart. Not in the store: it is the cluster's own bookkeeping, kept on
//! the NATS server beside what it is about (buckets, consumers, heartbeats).

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use tokio::sync::OnceCell;

use super::Bus;
use super::protocol::{Advert, SEEN_BUCKET};

/// Logs the boxes that joined or left between two views of the heartbeats: in the head's
/// log, where an operator looks first, not only in job events and `cluster status`.
pub fn say_changes(ttl_s: u64, before: &HashMap<String, Advert>, now: &HashMap<String, Advert>) {
    for (host, a) in now.iter().filter(|(h, _)| !before.contains_key(*h)) {
        let devices: Vec<String> = a.devices.iter().map(|d| format!("{host}/{}", d.device)).collect();
        let models = if a.models.is_empty() { "none".to_string() } else { a.models.join(", ") };
        tracing::info!("worker box {host} joined: {} (reelbox {}); models: {models}", devices.join(", "), a.version);
    }
    for host in before.keys().filter(|h| !now.contains_key(*h)) {
        tracing::info!("worker box {host} left: it stopped, or sent no heartbeat within {ttl_s} s (cut off)");
    }
}

/// Each box's last-seen time, in memory and in [`SEEN_BUCKET`].
pub struct LastSeen {
    /// Last time each box's heartbeat was live, ms since the epoch.
    seen: Mutex<HashMap<String, i64>>,
    /// The time written in the bucket for each box (or read from it).
    written: Mutex<HashMap<String, i64>>,
    /// The bucket, bound (made, the first time) on first use.
    store: OnceCell<kv::Store>,
    /// Least ms between two writes for a box still alive.
    every_ms: i64,
}

impl LastSeen {
    /// Writes a live box's time at most every `every_ms`, and once more when it leaves.
    pub fn new(every_ms: i64) -> Self {
        Self { seen: Mutex::new(HashMap::new()), written: Mutex::new(HashMap::new()), store: OnceCell::new(), every_ms }
    }

    async fn store(&self, bus: &Bus) -> Option<&kv::Store> {
        match self.store.get_or_try_init(|| bus.seen_bucket()).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!("no last-seen bucket yet: {e}");
                None
            }
        }
    }

    /// Notes the boxes alive at `now`, and writes the time of each box that left since its
    /// last write, or (alive) whose last write is `every_ms` old: the record is at most
    /// that far behind even when the head stops without warning.
    pub async fn note(&self, bus: &Bus, alive: &[String], now: i64) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).extend(alive.iter().map(|h| (h.clone(), now)));
        let due = {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let written = self.written.lock().unwrap_or_else(|p| p.into_inner());
            due(&seen, &written, alive, self.every_ms)
        };
        if due.is_empty() {
            return;
        }
        let Some(store) = self.store(bus).await else { return };
        for (host, t) in due {
            match store.put(&host, t.to_string().into()).await {
                Ok(_) => _ = self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(host, t),
                Err(e) => tracing::debug!("cannot record when box {host} was last seen: {e}"),
            }
        }
    }

    /// When box `host` was last seen alive: by this head, else as recorded by an earlier
    /// run. A box with no record gets one now: its clock starts when a head first notices
    /// it. `None` when the bucket cannot be read (nothing is forgotten on a failed look).
    pub async fn since(&self, bus: &Bus, host: &str, now: i64) -> Option<i64> {
        if let Some(t) = self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return Some(*t);
        }
        let store = self.store(bus).await?;
        let recorded = store.get(host).await.ok()?;
        let t = match recorded.and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse::<i64>().ok()) {
            Some(t) => t,
            None => {
                store.put(host, now.to_string().into()).await.ok()?;
                now
            }
        };
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_string(), t);
        self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_string(), t);
        Some(t)
    }

    /// Boxes with a record in the bucket (a box whose other leftovers are gone is still
    /// looked at, so its record goes too).
    pub async fn recorded(&self, bus: &Bus) -> Vec<String> {
        let Some(store) = self.store(bus).await else { return Vec::new() };
        super::bus::kv_keys(store).await.unwrap_or_default()
    }

    /// Drops box `host`'s record, in memory and in the bucket; whether the bucket had one.
    pub async fn forget(&self, bus: &Bus, host: &str) -> bool {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(host);
        self.written.lock().unwrap_or_else(|p| p.into_inner()).remove(host);
        let Some(store) = self.store(bus).await else { return false };
        let key = format!("$KV.{SEEN_BUCKET}.{host}");
        store.stream.purge().filter(key).await.is_ok_and(|p| p.purged > 0)
    }
}

/// The boxes whose time to write now: never written, or seen later than written and either
/// gone (its last time, once) or alive with a write `every_ms` old.
fn due(
    seen: &HashMap<String, i64>,
    written: &HashMap<String, i64>,
    alive: &[String],
    every_ms: i64,
) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = seen
        .iter()
        .filter(|(h, t)| written.get(*h).is_none_or(|w| **t > *w && (!alive.contains(h) || **t - *w >= every_ms)))
        .map(|(h, t)| (h.clone(), *t))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_box_is_written_at_most_every_interval_and_once_when_it_leaves() {
        let map = |v: &[(&str, i64)]| v.iter().map(|(h, t)| (h.to_string(), *t)).collect::<HashMap<_, _>>();
        let alive = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let seen = map(&[("new", 100), ("fresh", 100), ("old", 100), ("left", 50), ("still", 40)]);
        let written = map(&[("fresh", 90), ("old", 30), ("left", 45), ("still", 40)]);
        let got = due(&seen, &written, &alive(&["new", "fresh", "old"]), 60);
        let want = [("left", 50), ("new", 100), ("old", 100)].map(|(h, t)| (h.to_string(), t));
        assert_eq!(got, want, "first sight, a write 70 ms old, a box that left; not one written 10 ms ago");
        assert!(due(&seen, &seen, &alive(&[]), 60).is_empty(), "nothing new: nothing to write");
    }
}

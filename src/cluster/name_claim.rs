//! One running box per name. Two boxes under one name (the default name is the hostname,
//! so cloned machines and two Pis share it) would pull from one work consumer, and a stage
//! would fail on the one lacking the models with a fix pointing at the other. A joining box
//! looks at the heartbeat under its name: one sent by another process within a TTL may be
//! a box still running or this box's own before a crash (kill -9, power cut), whose last
//! heartbeat lives on for up to a TTL. So the newcomer watches it for one TTL: a running
//! box sends a new one every third of it; a dead one's stays as it was.
//! While running, a box that finds the other one's heartbeat under its name (both started
//! at once) stops if it is the younger of the two.

use std::time::Duration;

use ulid::Ulid;

use super::Bus;
use super::ClusterError;
use super::protocol::{Advert, Instance};

/// This run of `reelbox worker`.
pub fn this_instance() -> Instance {
    Instance { id: Ulid::new(), machine: super::hostname(), pid: std::process::id() }
}

/// The heartbeat under `host` now, when it is readable.
async fn heartbeat(bus: &Bus, host: &str) -> Option<Advert> {
    let body = bus.boxes.get(host).await.ok().flatten()?;
    serde_json::from_slice(&body).ok()
}

/// Another process's heartbeat under `host` sent within `ttl`, if any.
fn others(advert: Option<Advert>, me: &Instance, ttl: Duration) -> Option<(Advert, Instance)> {
    let a = advert?;
    let fresh = crate::time::now_ms() - a.at_ms <= ttl.as_millis() as i64;
    let other = a.instance.clone().filter(|i| i.id != me.id)?;
    fresh.then_some((a, other))
}

/// The error naming the box that holds `host`.
pub fn taken(host: &str, other: Instance) -> ClusterError {
    let since = chrono::DateTime::from_timestamp_millis(other.id.timestamp_ms() as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    ClusterError::NameTaken { name: host.to_string(), machine: other.machine, pid: other.pid, since }
}

/// Joins under `host` unless another running box sends heartbeats under it; see the module docs.
pub async fn claim(bus: &Bus, host: &str, me: &Instance, ttl: Duration) -> Result<(), ClusterError> {
    let Some((first, _)) = others(heartbeat(bus, host).await, me, ttl) else { return Ok(()) };
    tracing::info!(
        "a heartbeat under the name {host} is {} ms old: watching it for {} s to tell whether another box \
         runs under this name or it is this box's own from before a restart",
        crate::time::now_ms() - first.at_ms,
        ttl.as_secs()
    );
    let t0 = std::time::Instant::now();
    while t0.elapsed() < ttl {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match others(heartbeat(bus, host).await, me, ttl) {
            Some((a, other)) if a.at_ms != first.at_ms => return Err(taken(host, other)),
            Some(_) => {}
            None => return Ok(()),
        }
    }
    Ok(())
}

/// While running: the box to stop for when its heartbeat is under `host` now and it
/// started before this one (two that joined at the same moment).
pub async fn check(bus: &Bus, host: &str, me: &Instance, ttl: Duration) -> Option<Instance> {
    let (_, other) = others(heartbeat(bus, host).await, me, ttl)?;
    (other.id < me.id).then_some(other)
}

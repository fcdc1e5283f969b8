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

/// The heartbeat under `host` now (`None`: there is none); `Err` when it cannot be read. A
/// server config written by an older `reelbox cluster nats-config` does not let a box read
/// its own key, and the refused read would wait out the request timeout: a second is plenty
/// for a direct get.
async fn heartbeat(bus: &Bus, host: &str) -> Result<Option<Advert>, ()> {
    let read = tokio::time::timeout(Duration::from_secs(1), bus.boxes.get(host)).await;
    let body = read.map_err(|_| ())?.map_err(|_| ())?;
    Ok(body.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Says once that this box cannot read its own heartbeat, so names go unchecked.
fn unreadable(host: &str) {
    tracing::info!(
        "cannot read this box's own heartbeat back (a NATS config from an older `reelbox cluster nats-config`?): \
         not checking that no other box runs as {host}; `reelbox cluster nats-config --add-to FILE` updates \
         the boxes' rights"
    );
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
/// `Ok(false)`: the heartbeat cannot be read here, so none is checked later either.
pub async fn claim(bus: &Bus, host: &str, me: &Instance, ttl: Duration) -> Result<bool, ClusterError> {
    let Ok(now) = heartbeat(bus, host).await else {
        unreadable(host);
        return Ok(false);
    };
    let Some((first, _)) = others(now, me, ttl) else { return Ok(true) };
    tracing::info!(
        "a heartbeat under the name {host} is {} ms old: watching it for {} s to tell whether another box \
         runs under this name or it is this box's own from before a restart",
        crate::time::now_ms() - first.at_ms,
        ttl.as_secs()
    );
    let t0 = std::time::Instant::now();
    while t0.elapsed() < ttl {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match others(heartbeat(bus, host).await.ok().flatten(), me, ttl) {
            Some((a, other)) if a.at_ms != first.at_ms => return Err(taken(host, other)),
            Some(_) => {}
            None => return Ok(true),
        }
    }
    Ok(true)
}

/// While running: the box to stop for when its heartbeat is under `host` now and it
/// started before this one (two that joined at the same moment).
pub async fn check(bus: &Bus, host: &str, me: &Instance, ttl: Duration) -> Option<Instance> {
    let (_, other) = others(heartbeat(bus, host).await.ok().flatten(), me, ttl)?;
    (other.id < me.id).then_some(other)
}

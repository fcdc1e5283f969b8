//! What a box leaves on the NATS server, and deleting it when the head forgets the box:
//! its artifact bucket (with any objects left in it), its durable work consumer (with any
//! stage still queued for it), its heartbeat key and the head's record of when it was last
//! seen. Each is made again when the box comes
//! back: the head makes the bucket before its next stage, the box its consumer and key.

use futures::StreamExt;

use super::Bus;
use super::last_seen::LastSeen;
use super::protocol::{BOXES_BUCKET, SHARED_BUCKET_BEFORE, box_consumer, object_bucket, work_subject};
use super::sweep::{Usage, usage};

/// Boxes that have something on the server: an artifact bucket or a work consumer, sorted.
/// A listing that fails leaves its part out (the box is looked at again next time).
pub async fn known_boxes(bus: &Bus) -> Vec<String> {
    let mut out = bucket_boxes(bus).await;
    let mut names = bus.work.consumer_names();
    while let Some(name) = names.next().await {
        match name {
            Ok(n) => out.extend(n.strip_prefix(&box_consumer("")).map(str::to_owned)),
            Err(e) => {
                tracing::debug!("cannot list the work consumers: {e}");
                break;
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Boxes that have an artifact bucket on the server (empty when this connection may not
/// list streams: a box's own user).
pub async fn bucket_boxes(bus: &Bus) -> Vec<String> {
    let prefix = format!("OBJ_{}", object_bucket(""));
    let mut names = bus.js.stream_names();
    let mut out = Vec::new();
    while let Some(name) = names.next().await {
        match name {
            Ok(n) => out.extend(n.strip_prefix(&prefix).map(str::to_owned)),
            Err(e) => {
                tracing::debug!("cannot list the artifact buckets: {e}");
                return Vec::new();
            }
        }
    }
    out
}

/// When box `host`'s bucket was made or last written, ms since the epoch: 0 when it has
/// none, now when the server does not say (nothing is deleted on a failed look).
pub async fn last_write_ms(bus: &Bus, host: &str) -> i64 {
    match bus.js.get_stream(format!("OBJ_{}", object_bucket(host))).await {
        Ok(s) => {
            let info = s.cached_info();
            let created = info.created.unix_timestamp_nanos() / 1_000_000;
            created.max(info.state.last_timestamp.unix_timestamp_nanos() / 1_000_000) as i64
        }
        Err(e) if super::bus::is_not_found(&e) => 0,
        Err(_) => crate::time::now_ms(),
    }
}

/// Deletes what box `host`, gone `gone_ms`, left on the server, saying in one line what
/// went. Not when its heartbeat is back (it returned since the caller looked): the head
/// may be about to send it work.
pub async fn forget_box(bus: &Bus, host: &str, gone_ms: i64, last_seen: &LastSeen) {
    if let Ok(Some(_)) = bus.boxes.get(host).await {
        return tracing::debug!("box {host} sent a heartbeat again; not forgetting it");
    }
    let gone = format!("its heartbeat has been gone for {} (cluster.forget_box_after_h)", for_humans(gone_ms));
    let bucket = object_bucket(host);
    let mut line = match delete_bucket(bus, host).await {
        Some(left) => {
            format!(
                "deleted the artifact bucket {bucket} of box {host}: {gone}; {left} leftover object(s) went with it"
            )
        }
        None => format!("forgot box {host}: {gone}"),
    };
    // Stages still queued for it first: deleting the consumer leaves them (work-queue
    // messages stay until acked), and a box coming back must not run what the head dropped.
    let queued = bus.work.purge().filter(work_subject(host)).await.map_or(0, |p| p.purged);
    let consumer = box_consumer(host);
    let mut went = Vec::new();
    match bus.work.delete_consumer(&consumer).await {
        Ok(_) => went.push(format!("its work consumer {consumer} ({queued} queued stage(s) with it)")),
        Err(e) if is_consumer_not_found(&e) => {}
        Err(e) => tracing::warn!("cannot delete the work consumer {consumer} of box {host}, gone: {e}"),
    }
    let key = format!("$KV.{BOXES_BUCKET}.{host}");
    if bus.boxes.stream.purge().filter(key).await.is_ok_and(|p| p.purged > 0) {
        went.push("its heartbeat key".into());
    }
    if last_seen.forget(bus, host).await {
        went.push("its last-seen record".into());
    }
    if !went.is_empty() {
        line.push_str(&format!("; also deleted {}", went.join(" and ")));
    }
    tracing::info!("{line}. Each is made again if the box comes back");
}

/// Deletes box `host`'s artifact bucket; the objects that were left in it, when it had one
/// and it went.
async fn delete_bucket(bus: &Bus, host: &str) -> Option<u64> {
    let bucket = object_bucket(host);
    let store = bus.js.get_object_store(&bucket).await.ok()?;
    let left = usage(&store).await.map_or(0, |u| u.objects);
    let deleted = bus.js.delete_object_store(&bucket).await;
    bus.forget_bucket(host);
    match deleted {
        Ok(_) => Some(left),
        Err(e) => {
            tracing::warn!("cannot delete the artifact bucket {bucket} of box {host}, gone: {e}");
            None
        }
    }
}

/// Whether a consumer request failed because the consumer does not exist.
fn is_consumer_not_found(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    use async_nats::jetstream::{ErrorCode, stream::ConsumerErrorKind};
    matches!(e.kind(), ConsumerErrorKind::JetStream(j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND)
}

/// Deletes the bucket all boxes shared before per-box buckets when it holds no object;
/// whether it is gone now (deleted, or never there).
pub async fn drop_shared_bucket(bus: &Bus) -> bool {
    let Ok(store) = bus.js.get_object_store(SHARED_BUCKET_BEFORE).await else {
        return true;
    };
    match usage(&store).await {
        Some(Usage { objects: 0, .. }) => match bus.js.delete_object_store(SHARED_BUCKET_BEFORE).await {
            Ok(_) => {
                tracing::info!(
                    "deleted the artifact bucket {SHARED_BUCKET_BEFORE} that boxes shared before each had \
                     its own: it was empty"
                );
                true
            }
            Err(e) => {
                tracing::warn!("cannot delete the old shared artifact bucket {SHARED_BUCKET_BEFORE}: {e}");
                false
            }
        },
        Some(u) => {
            tracing::debug!("the old shared bucket {SHARED_BUCKET_BEFORE} still holds {} object(s)", u.objects);
            false
        }
        None => false,
    }
}

/// A duration for a log line: seconds under an hour, else hours.
fn for_humans(ms: i64) -> String {
    if ms < 3_600_000 { format!("{:.1} s", ms as f64 / 1000.0) } else { format!("{:.1} h", ms as f64 / 3_600_000.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_say_seconds_under_an_hour_else_hours() {
        assert_eq!(for_humans(3_700), "3.7 s");
        assert_eq!(for_humans(90_000_000), "25.0 h");
    }
}

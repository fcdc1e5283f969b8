//! The head's view of its boxes: their heartbeats as last read, and the scheduler's
//! [`RemoteBoxes`] over them.

use std::collections::HashMap;
use std::time::Duration;

use super::Head;
use crate::cluster::protocol::Advert;
use crate::gpu::DeviceId;
use crate::scheduler::{RemoteBoxes, RemoteDevice, RemoteError, RemoteStage};

impl Head {
    /// Live boxes' heartbeats, by name.
    pub fn boxes(&self) -> Vec<Advert> {
        let mut v: Vec<Advert> = self.boxes.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.host.cmp(&b.host));
        v
    }

    /// Re-reads the heartbeats. When NATS does not answer within a second (a restart, a
    /// slow server, a cut) that is noted (nothing is placed meanwhile, see [`crate::cluster::reach`])
    /// and the boxes stay as last seen until their heartbeats are a TTL old: none is listed
    /// as alive on news that old.
    pub(super) async fn refresh_boxes(&self) {
        let ttl_ms = (self.cluster.heartbeat_ttl_s * 1000) as i64;
        let listed = match tokio::time::timeout(Duration::from_secs(1), self.bus.adverts()).await {
            Ok(Ok(a)) => {
                self.bus.reach.answered();
                Some(a)
            }
            Ok(Err(e)) => {
                tracing::debug!("cannot read heartbeats: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("no heartbeat listing within a second");
                None
            }
        };
        let now = crate::time::now_ms();
        let adverts = listed.unwrap_or_else(|| {
            self.bus.reach.unanswered();
            self.boxes()
        });
        let fresh: HashMap<String, Advert> =
            adverts.into_iter().filter(|a| now - a.at_ms <= ttl_ms).map(|a| (a.host.clone(), a)).collect();
        crate::kinds::box_models::set_live(fresh.values().map(|a| (a.host.clone(), a.model_details.clone())));
        let mut boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        crate::cluster::last_seen::say_changes(
            self.cluster.heartbeat_ttl_s,
            &std::mem::replace(&mut *boxes, fresh),
            &boxes,
        );
    }

    /// Whether box `host` may still be running what it was given: its heartbeat is live, or
    /// the head cannot tell (NATS did not answer within the last heartbeat TTL, so the box
    /// may not have been able to send one since).
    pub(super) fn alive(&self, host: &str) -> bool {
        let ttl = Duration::from_secs(self.cluster.heartbeat_ttl_s);
        if !self.bus.reach.settled(&self.bus.client, ttl) {
            return true;
        }
        self.boxes.lock().unwrap_or_else(|p| p.into_inner()).contains_key(host)
    }
}

impl RemoteBoxes for Head {
    fn devices(&self) -> Vec<RemoteDevice> {
        // Nothing is placed while NATS does not answer: no stage could be sent.
        if self.unreachable() {
            return Vec::new();
        }
        let boxes = self.boxes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for a in boxes.values() {
            let Ok(host) = crate::gpu::BoxName::new(&a.host) else { continue };
            for d in &a.devices {
                let Some(local) = DeviceId::parse(&d.device) else { continue };
                let gpu = match local {
                    DeviceId::Cuda(i) => Some(i),
                    _ => None,
                };
                out.push(RemoteDevice {
                    device: DeviceId::Remote { host, gpu },
                    name: gpu.map(|_| d.name.clone()),
                    total_mib: d.total_mib,
                    slots: d.slots,
                    free_mib: d.free_mib,
                    util: d.util,
                    installed: a.models.clone(),
                    held: a.disk_low.as_ref().map(|why| format!("box {} takes no new stages: {why}", a.host)),
                });
            }
        }
        out.sort_by_key(|d| d.device);
        out
    }

    fn run_stage(&self, stage: RemoteStage<'_>) -> Result<(), RemoteError> {
        self.run_blocking(stage)
    }

    fn unreachable(&self) -> bool {
        !self.bus.reach.answers(&self.bus.client)
    }

    fn max_running(&self) -> usize {
        self.cluster.remote_slots
    }

    fn adverts(&self) -> Vec<serde_json::Value> {
        self.boxes().iter().filter_map(|a| serde_json::to_value(a).ok()).collect()
    }

    fn heartbeat_ttl_s(&self) -> u64 {
        self.cluster.heartbeat_ttl_s
    }

    fn buckets(&self) -> futures::future::BoxFuture<'_, Vec<serde_json::Value>> {
        let to_json = |b: &crate::cluster::sweep::BoxBucket| serde_json::to_value(b).ok();
        Box::pin(async move { self.sweeper.usage(&self.bus).await.iter().filter_map(to_json).collect() })
    }
}

//! Worker boxes' GPU readings on the head: each heartbeat carries its box's latest GPU
//! samples, and the head's sampler folds them into its own samples as `NAME/cuda:N`, so
//! `reelbox top`, the telemetry stream and ComfyUI's `system_stats` show every box.

use std::sync::{Arc, Weak};

use super::Head;
use super::protocol::Advert;
use crate::gpu::GpuSample;
use crate::gpu::telemetry::RemoteReadings;

/// The GPUs of one heartbeat, each marked with its box.
pub fn advert_gpus(advert: &Advert) -> impl Iterator<Item = GpuSample> + '_ {
    advert.gpus.iter().map(|g| GpuSample { host: Some(advert.host.clone()), ..g.clone() })
}

/// The live boxes' GPUs, box by box (names sorted), for the head's sampler. Holds the head
/// weakly: once it is gone the readings are empty.
pub fn readings(head: &Arc<Head>) -> RemoteReadings {
    let head: Weak<Head> = Arc::downgrade(head);
    Arc::new(move || {
        let Some(head) = head.upgrade() else { return Vec::new() };
        head.boxes().iter().flat_map(|a| advert_gpus(a).collect::<Vec<_>>()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeats_gpus_are_named_after_their_box() {
        let gpu = GpuSample { index: 1, name: "Fake".into(), util_gpu: Some(40), ..Default::default() };
        let advert = Advert {
            host: "attic".into(),
            version: "0".into(),
            devices: vec![],
            gpus: vec![gpu],
            models: vec![],
            model_details: vec![],
            kinds: vec![],
            running: vec![],
            at_ms: 0,
            disk_low: None,
            instance: None,
        };
        let got: Vec<GpuSample> = advert_gpus(&advert).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].device(), "attic/cuda:1");
        assert_eq!(got[0].util_gpu, Some(40));
    }
}

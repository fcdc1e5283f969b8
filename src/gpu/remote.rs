//! Devices of other boxes (cluster workers): a box name small enough to keep
//! [`DeviceId`](super::DeviceId) `Copy`, so a remote device travels through placement, the
//! ledger and stored job states like a local one.

use serde::{Deserialize, Serialize};

/// Longest box name; it is a NATS subject token and part of every remote device id.
pub const MAX_BOX_NAME: usize = crate::config::cluster::MAX_NAME_LEN;

/// A worker box's name: 1–16 letters, digits, `-` or `_`, stored zero-padded.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BoxName([u8; MAX_BOX_NAME]);

/// A box name that breaks the rules above.
#[derive(Debug, thiserror::Error)]
#[error("box name {0:?} must be 1–16 letters, digits, '-' or '_'")]
pub struct BadBoxName(pub String);

impl BoxName {
    /// Checks and packs a name.
    pub fn new(name: &str) -> Result<Self, BadBoxName> {
        crate::config::cluster::check_name(name).map_err(|_| BadBoxName(name.to_string()))?;
        let mut bytes = [0u8; MAX_BOX_NAME];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self(bytes))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(MAX_BOX_NAME);
        // Only ASCII goes in (checked by `new`); a damaged record reads as empty.
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }
}

impl std::fmt::Display for BoxName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for BoxName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::DeviceId;
    use super::*;

    #[test]
    fn remote_device_names_round_trip() {
        let host = BoxName::new("attic-2").expect("valid");
        for d in [DeviceId::Remote { host, gpu: None }, DeviceId::Remote { host, gpu: Some(1) }] {
            assert_eq!(DeviceId::parse(&d.name()), Some(d));
        }
        assert_eq!(DeviceId::Remote { host, gpu: Some(0) }.name(), "attic-2/cuda:0");
        assert_eq!(DeviceId::parse("attic-2/cpu"), Some(DeviceId::Remote { host, gpu: None }));
        assert!(BoxName::new("a.b").is_err() && BoxName::new("").is_err() && BoxName::new(&"x".repeat(17)).is_err());
    }
}

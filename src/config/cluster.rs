//! `[cluster]`: joining boxes through a NATS JetStream server. Absent, nothing changes:
//! the daemon runs every job itself and never connects to NATS.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What this box is in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// Owns the store and the API, runs work locally and hands stages to workers.
    Head,
    /// Runs stages the head publishes; has no API and no store of jobs.
    Worker,
}

/// `[cluster]`: the NATS server, this box's role and name, credentials and timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server (`nats://HOST:4222`, `tls://HOST:4222`), JetStream enabled.
    pub nats_url: String,
    /// `head` (the default) or `worker`.
    pub role: ClusterRole,
    /// This box's name in device names (`NAME/cuda:0`); defaults to the hostname.
    /// Letters, digits, `-` and `_`, at most 16 characters.
    pub name: Option<String>,
    /// A NATS token (use `creds` or a token, not both).
    pub token: Option<String>,
    /// A NATS nkey seed (`SU…`), as `reelbox cluster nats-config` prints one per box.
    pub nkey: Option<String>,
    /// A NATS credentials file (JWT + nkey seed), as `nsc` writes it.
    pub creds: Option<PathBuf>,
    /// CA certificate (PEM) that signed the NATS server's certificate; turns TLS on.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that verify clients, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Seconds a worker's heartbeat lives; a box silent this long is gone.
    pub heartbeat_ttl_s: u64,
    /// Seconds JetStream waits for a stage's acknowledgement before it counts the worker
    /// lost; running workers send in-progress acks at a third of it.
    pub ack_wait_s: u64,
    /// Stages a worker runs at once on its CPU.
    pub cpu_slots: usize,
    /// Head: most stages running on worker boxes at once.
    pub remote_slots: usize,
    /// Head: also run jobs on this box's own devices (off: only hand stages out).
    pub local_work: bool,
    /// KiB of a stage's small artifacts, in all, that travel inside its work or result
    /// message instead of through the object store (0: always the object store).
    pub inline_kib: u64,
    /// Head: hours after a box's last heartbeat (counted across head restarts) when what it
    /// left on the NATS server (artifact bucket, work consumer, heartbeat key) is deleted,
    /// made again if it comes back; 0 keeps them for good.
    pub forget_box_after_h: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            role: ClusterRole::Head,
            name: None,
            token: None,
            nkey: None,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            heartbeat_ttl_s: 10,
            ack_wait_s: 30,
            cpu_slots: 1,
            remote_slots: 8,
            local_work: true,
            inline_kib: 128,
            forget_box_after_h: 24.0,
        }
    }
}

/// A `[cluster]` setting that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("cluster.{key}: {reason}")]
pub struct BadCluster {
    /// The key under `[cluster]`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Longest box name (it travels inside every device id).
pub const MAX_NAME_LEN: usize = 16;

impl ClusterConfig {
    /// `nats_url` without any `user:password@` it may carry: for logs and answers.
    pub fn nats_server(&self) -> &str {
        self.nats_url.rsplit('@').next().unwrap_or_default()
    }

    /// Whether `nats_url` carries credentials (`user:password@`, or a token as `token@`).
    pub fn url_has_credentials(&self) -> bool {
        self.nats_url.len() > self.nats_server().len()
    }

    /// Refuses settings that cannot work, naming the key.
    pub fn check(&self) -> Result<(), BadCluster> {
        let bad = |key, reason: &str| Err(BadCluster { key, reason: reason.into() });
        if !["nats://", "tls://"].iter().any(|p| self.nats_url.starts_with(p)) {
            let reason = format!("{:?} must start with nats:// or tls:// (e.g. nats://HEAD:4222)", self.nats_url);
            return bad("nats_url", &reason);
        }
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        if [self.token.is_some(), self.nkey.is_some(), self.creds.is_some()].iter().filter(|s| **s).count() > 1 {
            return bad("token", "set one of token, nkey or creds");
        }
        if self.nkey.as_deref().is_some_and(|s| !s.starts_with("SU")) {
            return bad("nkey", "must be a user nkey seed (starting with SU)");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert", "a client certificate needs tls_key, and the key its certificate");
        }
        // Each named on its own: a message naming the other key sent users to the wrong line.
        for (key, value) in [
            ("heartbeat_ttl_s", self.heartbeat_ttl_s as usize),
            ("ack_wait_s", self.ack_wait_s as usize),
            ("cpu_slots", self.cpu_slots),
            ("remote_slots", self.remote_slots),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1 (0 would never hand out, run or keep a stage)");
            }
        }
        if self.inline_kib > MAX_INLINE_KIB {
            // Base64 inside a message: NATS refuses messages over 1 MiB by default.
            return bad("inline_kib", &format!("must be at most {MAX_INLINE_KIB} (messages stay under 1 MiB)"));
        }
        if !(self.forget_box_after_h >= 0.0 && self.forget_box_after_h.is_finite()) {
            return bad("forget_box_after_h", "must be a number of hours, 0 or more (0: never)");
        }
        Ok(())
    }
}

/// Largest `inline_kib`: its base64 plus the message stays under NATS's 1 MiB default.
pub const MAX_INLINE_KIB: u64 = 512;

/// Checks a box name: 1–16 letters, digits, `-` or `_` (it is a NATS subject token).
pub fn check_name(name: &str) -> Result<(), BadCluster> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BadCluster {
            key: "name",
            reason: format!("{name:?} must be 1–{MAX_NAME_LEN} letters, digits, '-' or '_'"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_name_their_key() {
        let key = |c: ClusterConfig| c.check().err().map(|e| e.key);
        assert_eq!(key(ClusterConfig::default()), None);
        assert_eq!(key(ClusterConfig { nats_url: "http://x:4222".into(), ..Default::default() }), Some("nats_url"));
        assert_eq!(key(ClusterConfig { name: Some("a.b".into()), ..Default::default() }), Some("name"));
        let both = ClusterConfig { token: Some("t".into()), creds: Some("c".into()), ..Default::default() };
        assert_eq!(key(both), Some("token"));
        let two = ClusterConfig { token: Some("t".into()), nkey: Some("SUAB".into()), ..Default::default() };
        assert_eq!(key(two), Some("token"));
        assert_eq!(key(ClusterConfig { nkey: Some("UAB".into()), ..Default::default() }), Some("nkey"), "a public key");
        assert_eq!(key(ClusterConfig { tls_cert: Some("c".into()), ..Default::default() }), Some("tls_cert"));
        assert_eq!(key(ClusterConfig { ack_wait_s: 0, ..Default::default() }), Some("ack_wait_s"));
        assert_eq!(key(ClusterConfig { heartbeat_ttl_s: 0, ..Default::default() }), Some("heartbeat_ttl_s"));
        assert_eq!(key(ClusterConfig { cpu_slots: 0, ..Default::default() }), Some("cpu_slots"), "was taken as 1");
        assert_eq!(
            key(ClusterConfig { remote_slots: 0, ..Default::default() }),
            Some("remote_slots"),
            "hands out none"
        );
        assert_eq!(key(ClusterConfig { inline_kib: 513, ..Default::default() }), Some("inline_kib"), "over 1 MiB");
        assert_eq!(key(ClusterConfig { inline_kib: 0, ..Default::default() }), None, "object store only");
        let forget = |h| key(ClusterConfig { forget_box_after_h: h, ..Default::default() });
        assert_eq!(
            (forget(-1.0), forget(f64::NAN), forget(0.0)),
            (Some("forget_box_after_h"), Some("forget_box_after_h"), None)
        );
    }
}

//! Whether the config file hands its secrets to every user of the machine. A worker box's
//! `/etc/reelbox/config.toml` carries its NATS nkey seed (or a token, or a password in
//! `nats_url`), and a package installs that file world-readable (the CLI reads it too, for
//! the daemon's address): any local account could then join the cluster as that box. The
//! daemon and the worker say so in their log at start, and `reelbox doctor` with the fix, as
//! ssh does for a private key others can read.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Config;

/// A config file others can read that holds secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// The keys holding secrets (`cluster.nkey`, ...).
    pub keys: Vec<&'static str>,
}

impl Exposed {
    /// The commands that close it: the system file stays readable by the service's group
    /// (`reelbox`), a user's own file by that user only.
    pub fn fix(&self) -> String {
        let path = self.path.display();
        if self.path.starts_with("/etc") {
            // The CLI reads the system file too: a user outside the group then needs it.
            format!(
                "sudo chown root:reelbox {path} && sudo chmod 640 {path} (the CLI of a user outside the group \
                 reelbox then cannot read it: sudo usermod -aG reelbox USER)"
            )
        } else {
            format!("chmod 600 {path}")
        }
    }
}

impl fmt::Display for Exposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} holds {} and every user of this machine can read it (mode {:04o})",
            self.path.display(),
            self.keys.join(", "),
            self.mode & 0o7777
        )
    }
}

/// The config's secrets-holding keys, if its file is readable by others.
pub fn exposed(config: &Config) -> Option<Exposed> {
    let path = config.file.as_deref()?;
    let keys = secret_keys(config);
    if keys.is_empty() {
        return None;
    }
    let mode = mode_of(path)?;
    (mode & 0o004 != 0).then(|| Exposed { path: path.to_path_buf(), mode, keys })
}

/// Says so in the log (the daemon's and the worker's, at start).
pub fn warn_if_exposed(config: &Config) {
    if let Some(e) = exposed(config) {
        tracing::warn!("{e}; fix: {}", e.fix());
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

/// The keys of `config` that hold a secret.
fn secret_keys(config: &Config) -> Vec<&'static str> {
    let Some(cluster) = &config.cluster else { return Vec::new() };
    let url = cluster.url_has_credentials();
    [
        (cluster.nkey.is_some(), "cluster.nkey"),
        (cluster.token.is_some(), "cluster.token"),
        (url, "cluster.nats_url's credentials"),
    ]
    .into_iter()
    .filter_map(|(set, key)| set.then_some(key))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterConfig;

    fn with_file(mode: u32, cluster: ClusterConfig) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let config = Config { file: Some(path), cluster: Some(cluster), ..Config::default() };
        (dir, config)
    }

    #[test]
    fn a_seed_in_a_world_readable_file_is_exposed_and_named() {
        let seed = ClusterConfig { nkey: Some("SUAB".into()), ..Default::default() };
        let (_d, config) = with_file(0o644, seed.clone());
        let e = exposed(&config).expect("exposed");
        assert_eq!(e.keys, ["cluster.nkey"]);
        assert!(e.to_string().ends_with("holds cluster.nkey and every user of this machine can read it (mode 0644)"));
        assert!(e.fix().starts_with("chmod 600 "), "{}", e.fix());
        let (_d, closed) = with_file(0o640, seed);
        assert_eq!(exposed(&closed), None, "only its group reads it");
    }

    #[test]
    fn a_file_without_secrets_or_with_credentials_in_the_url_is_told_apart() {
        let (_d, plain) = with_file(0o644, ClusterConfig { nats_url: "nats://head:4222".into(), ..Default::default() });
        assert_eq!(exposed(&plain), None, "nothing secret in it");
        let url = ClusterConfig { nats_url: "nats://box:hunter2@head:4222".into(), ..Default::default() };
        let (_d, config) = with_file(0o604, url);
        assert_eq!(exposed(&config).map(|e| e.keys), Some(vec!["cluster.nats_url's credentials"]));
    }

    #[test]
    fn the_system_file_stays_readable_by_the_service() {
        let e = Exposed { path: "/etc/reelbox/config.toml".into(), mode: 0o100644, keys: vec!["cluster.token"] };
        let fix = e.fix();
        assert!(fix.starts_with("sudo chown root:reelbox /etc/reelbox/config.toml && sudo chmod 640 "), "{fix}");
    }
}

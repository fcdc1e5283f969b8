//! Who owns the data dir. The packages give `/var/lib/reelbox` to the `reelbox` system
//! user; a command run with sudo (`reelbox setup`, `pull`, `keys create --offline`) writes
//! root-owned files there that the service could read but never replace, lock or remove
//! (a root-made database stops it starting). [`hand_back`] gives such files to the dir's
//! owner; [`check_writable`] tells a user who cannot write there what to run instead.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// A data or models dir that cannot be written or handed back.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// The dir belongs to another user (the service's, as a rule) and this user may not write there.
    #[error(
        "{dir} belongs to the user {owner}{whose} and you cannot write there; \
         run the command as root (`sudo reelbox {command}`), which hands what it writes to {owner}",
        whose = service_note(.owner)
    )]
    NotYours { dir: PathBuf, owner: String, command: String },
    /// `reelbox serve` by a user who cannot write the (service's) data dir.
    #[error(
        "{dir} belongs to the user {owner} (the reelbox service's data) and you cannot write there; the \
         service runs that daemon (`sudo systemctl start reelbox`, its log: `journalctl -u reelbox`); for a \
         daemon of your own, set data_dir (or --data-dir) to a dir of yours"
    )]
    ServiceData { dir: PathBuf, owner: String },
    /// `reelbox serve` by a user who cannot write another user's data dir (not the service's).
    #[error(
        "{dir} belongs to the user {owner} and you cannot write there; set data_dir (or --data-dir) to a \
         dir of yours, or run the daemon as {owner}"
    )]
    OthersData { dir: PathBuf, owner: String },
    /// A long-running command (`serve`, `worker`) started as root on another user's dir.
    #[error(
        "{dir} belongs to the user {owner}: run as root, `reelbox {command}` would leave files there that \
         {owner} cannot open; start the service instead (`sudo systemctl start {unit}`), or run it as that \
         user (`sudo -u {owner} reelbox {command}`)"
    )]
    RootInOthersDir { dir: PathBuf, owner: String, command: String, unit: String },
    /// A file under the dir could not be given to its owner.
    #[error("cannot give {path} to the owner of {dir}")]
    Chown {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The dir could not be listed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The effective user id of this process.
fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A user's name as the system's user database (NSS: `/etc/passwd`, LDAP, SSSD) knows it,
/// else `uid N`.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

/// The dirs a local command writes into: the data dir, and the models dir when it lies
/// elsewhere.
fn owned_dirs(config: &Config) -> Vec<PathBuf> {
    let models = config.models_dir();
    let mut dirs = vec![config.data_dir.clone()];
    if !models.starts_with(&config.data_dir) {
        dirs.push(models);
    }
    dirs
}

/// After a command run as root wrote under the config's data (and models) dir: gives every
/// root-owned file under it to the dir's own owner and group when that owner is not root
/// (the packaged service's `reelbox` user), so the service can still write, lock and
/// remove them. Does nothing for other users or a root-owned dir. Returns how many
/// entries changed hands.
pub fn hand_back(config: &Config) -> Result<usize, OwnerError> {
    if euid() != 0 {
        return Ok(0);
    }
    let mut changed = 0;
    for dir in owned_dirs(config) {
        let Ok(meta) = std::fs::metadata(&dir) else { continue };
        if meta.uid() == 0 {
            continue;
        }
        let opened = std::fs::File::open(&dir).map_err(|source| OwnerError::Read { path: dir.clone(), source })?;
        changed += give(&opened, &dir, &dir, meta.uid(), meta.gid())?;
    }
    Ok(changed)
}

/// Gives the root-owned entries under the open dir `dir` to `uid`:`gid`. The service user
/// may write in these dirs, so each is reached through the descriptor of its parent
/// (`/proc/self/fd/N/NAME`) and opened without following links: a dir swapped for a
/// link mid-walk cannot send root's `chown` outside the data dir.
fn give(dir: &std::fs::File, named: &Path, top: &Path, uid: u32, gid: u32) -> Result<usize, OwnerError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let at = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let read = |source| OwnerError::Read { path: named.to_path_buf(), source };
    let mut changed = 0;
    for entry in std::fs::read_dir(&at).map_err(read)? {
        let name = entry.map_err(read)?.file_name();
        let p = at.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.uid() == 0 {
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(|source| OwnerError::Chown {
                path: named.join(&name),
                dir: top.to_path_buf(),
                source,
            })?;
            changed += 1;
        }
        if meta.is_dir() {
            let opened =
                std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(&p);
            // Gone or turned into a link since it was listed: nothing of ours to give.
            if let Ok(sub) = opened {
                changed += give(&sub, &named.join(&name), top, uid, gid)?;
            }
        }
    }
    Ok(changed)
}

/// The first uid of a login user on Debian, Fedora and Arch (`UID_MIN`); below it are
/// system users, such as the `reelbox` user the packages make for the service.
const FIRST_LOGIN_UID: u32 = 1000;

/// Refuses to run `command` (`serve`, `worker`) as root on a data dir a system user owns
/// (the packaged service's): unlike a short CLI command, a daemon's files cannot be handed
/// back while it writes them. A login user's dir (a container running as root on a volume
/// the host's user owns) only gets a warning: that is a deliberate setup.
pub fn check_not_root_over(config: &Config, command: &str) -> Result<(), OwnerError> {
    let Ok(meta) = std::fs::metadata(&config.data_dir) else { return Ok(()) };
    if euid() != 0 || meta.uid() == 0 {
        return Ok(());
    }
    let owner = user_name(meta.uid());
    if meta.uid() >= FIRST_LOGIN_UID {
        tracing::warn!(
            "running as root on {}, which belongs to {owner}: files written now belong to root",
            config.data_dir.display()
        );
        return Ok(());
    }
    let unit = if command == "worker" { "reelbox-worker" } else { "reelbox" };
    Err(OwnerError::RootInOthersDir {
        dir: config.data_dir.clone(),
        owner,
        command: command.to_string(),
        unit: unit.to_string(),
    })
}

/// The user the packaged units run the service as (`User=` in systemd/reelbox.service).
const SERVICE_USER: &str = "reelbox";

/// Said after a dir's owner when that owner is the packaged service's user.
fn service_note(owner: &str) -> &'static str {
    if owner == SERVICE_USER { " (the reelbox service's data)" } else { "" }
}

/// Refuses, naming the owner and the `sudo` command to run, when `dir` exists and belongs
/// to another user and this one cannot write there (a user's `reelbox pull` against the
/// packaged service's models dir). `command` is the subcommand with its arguments.
pub fn check_writable(dir: &Path, command: &str) -> Result<(), OwnerError> {
    match foreign_owner(dir) {
        None => Ok(()),
        Some(owner) => Err(OwnerError::NotYours { dir: dir.to_path_buf(), owner, command: command.to_string() }),
    }
}

/// As [`check_writable`] for `reelbox serve` by a login user on the service's data dir: the
/// way out is the service (or a data dir of one's own), not `sudo reelbox serve`, which
/// [`check_not_root_over`] refuses.
pub fn check_servable(dir: &Path) -> Result<(), OwnerError> {
    match foreign_owner(dir) {
        None => Ok(()),
        Some(owner) if owner == SERVICE_USER => Err(OwnerError::ServiceData { dir: dir.to_path_buf(), owner }),
        Some(owner) => Err(OwnerError::OthersData { dir: dir.to_path_buf(), owner }),
    }
}

/// The name of the user `dir` belongs to, when that is another user and this one cannot
/// write there; `None` when the dir is writable, absent, or this is root.
fn foreign_owner(dir: &Path) -> Option<String> {
    // A dir inside one this user may not enter (the service's 0750 data dir) is judged by
    // that one: its owner is the one to name.
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            dir.ancestors().skip(1).find_map(|a| std::fs::metadata(a).ok())?
        }
        Err(_) => return None,
    };
    if [0, meta.uid()].contains(&euid()) || tempfile::tempfile_in(dir).is_ok() {
        return None;
    }
    Some(user_name(meta.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_the_user_database() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
    }

    #[test]
    fn a_dir_of_ones_own_is_writable() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(dir.path(), "pull x").unwrap();
        check_writable(&dir.path().join("absent"), "pull x").unwrap();
    }
}
